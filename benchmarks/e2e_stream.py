"""End to end: what the gateway adds to a streamed answer, against calling the
upstream directly, in the same run.

    python -m benchmarks.e2e_stream            # full run, two to three minutes
    python -m benchmarks.e2e_stream --quick    # smoke run, seconds

One simulator (vLLM protocol, ``--tokens`` tokens per answer) and one gateway
(a temporary YAML config: one ``vllm`` provider at the simulator, a chat route
per scenario, one key from an environment variable, no metrics endpoint, state
in a temporary directory) run as subprocesses; the load client runs in this
process, on uvloop. With two or more CPUs the gateway is pinned alone to CPU 1
and this process and the simulator to CPU 0, so the gateway's CPU time is its
own. Readiness is polled, bounded: the simulator's stdout line, the gateway's
stderr line, then gRPC health SERVING.

Two clients send the same chat and time each request from sending it:

- direct: aiohttp, one keep-alive session, POST ``/v1/chat/completions`` with
  ``stream: true`` (the body the gateway's adapter sends upstream), read the
  SSE stream to its end; time to first token at the first event whose
  ``content`` is non-empty.
- gateway: ``grpc.aio``, one channel, ``Gateway.Chat`` with
  ``authorization: Bearer <key>``; time to first token at the first
  ``ChatChunk`` with non-empty text.

Scenarios: ``burst`` (the simulator sends the whole answer at once, no delays)
at each ``--concurrency``, and ``paced`` (``--paced-itl-ms`` between tokens, so
nearly every token becomes its own message), whose CPU per request against the
burst one's gives the gateway's CPU per streamed message.

For each implementation of the native module (``--implementations``; the
gateway reports the one it loaded) and each scenario: a warm-up of each path,
then ``--phases`` measured phases of each path, alternating direct, gateway,
direct, gateway... CPU time (utime + stime, every thread) of the gateway, the
simulator and this process is read from ``/proc/PID/stat`` before and after
each phase. Added time is the gateway's percentile minus the direct percentile
(the samples are not paired). Then (``--profile-s``) py-spy samples the gateway
under load, and where its CPU time goes is summarised.

Output: a table on stdout and ``benchmarks/results/gateway_vs_direct.json``.
Figures to compare, never pass/fail: a failed request is counted by its
status, and the run goes on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import platform
import re
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import grpc.aio
import orjson
from grpc_health.v1 import health_pb2, health_pb2_grpc

from router._proto.meshgate.v1 import gateway_pb2, gateway_pb2_grpc

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "results"
DEFAULT_OUT = RESULTS / "gateway_vs_direct.json"

MODEL = "sim-llama"
ROUTE = "chat"
KEY_ENV = "MESHGATE_BENCH_KEY"
PROMPT = "Tell me about gRPC streaming in one paragraph."
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 15.0
REQUEST_TIMEOUT_S = 30.0
PHASE_LIMIT_S = 300.0
CLK_TCK = os.sysconf("SC_CLK_TCK")

# Runs the gateway exactly as ``meshgate serve --config FILE`` does, after
# saying on stderr which implementation of the native module this process
# loaded (the gateway's own log line is emitted before logging is configured).
_GATEWAY_MAIN = (
    "import sys\n"
    "import router.native as native\n"
    "print(f'meshgate-bench native={native.IMPLEMENTATION} ({native.REASON})', file=sys.stderr, flush=True)\n"
    "from router.cli import main\n"
    "sys.exit(main(['serve', '--config', sys.argv[1]]))\n"
)
_LISTENING_SIM = re.compile(r"meshgate-sim listening on (http://\S+)")
_LISTENING_GW = re.compile(r"meshgate listening on (\S+)")
_NATIVE_GW = re.compile(r"meshgate-bench native=(\w+) \((.*)\)")


# ----------------------------------------------------------------------------- measuring


def cpu_seconds(pid: int) -> float:
    """utime + stime of a whole process (every thread), in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    fields = stat[stat.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def thread_cpus(pid: int) -> list[int]:
    """The union of the CPUs every thread of ``pid`` may run on."""
    cpus: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            cpus |= os.sched_getaffinity(int(task.name))
    return sorted(cpus)


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * q
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def distribution(values: list[float], scale: float = 1.0) -> dict[str, float]:
    xs = sorted(v * scale for v in values)
    if not xs:
        return {}
    return {
        "p50": percentile(xs, 0.50),
        "p90": percentile(xs, 0.90),
        "p99": percentile(xs, 0.99),
        "mean": sum(xs) / len(xs),
        "min": xs[0],
        "max": xs[-1],
    }


@dataclass(slots=True)
class Sample:
    ttft_s: float
    e2e_s: float
    messages: int


class Incomplete(Exception):
    """A stream that ended without its terminator (``[DONE]``, or a finish reason)."""


def error_kind(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"grpc {exc.code().name}"
    if isinstance(exc, aiohttp.ClientResponseError):
        return f"http {exc.status}"
    if isinstance(exc, TimeoutError):
        return "timeout"
    return type(exc).__name__


def error_detail(exc: BaseException) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name}: {exc.details()}"
    return f"{type(exc).__name__}: {exc}"


# ----------------------------------------------------------------------------- clients

_CONTENT = b'"content":"'
_DONE = b"data: [DONE]"


def _first_text(buf: bytes) -> bool:
    """Whether ``buf`` holds an event whose ``content`` is a non-empty string."""
    at = buf.find(_CONTENT)
    while at >= 0:
        after = at + len(_CONTENT)
        if after >= len(buf):
            return False
        if buf[after] != 0x22:  # not the closing quote of ""
            return True
        at = buf.find(_CONTENT, after)
    return False


class DirectClient:
    """aiohttp straight to the simulator, the body the gateway's adapter sends."""

    name = "direct"

    def __init__(self, base_url: str, model: str, tokens: int) -> None:
        self._url = base_url.rstrip("/") + "/chat/completions"
        self._body = orjson.dumps(
            {
                "model": model,
                "messages": [{"role": "user", "content": PROMPT}],
                "max_tokens": tokens,
                "stream": True,
                "stream_options": {"include_usage": True},
            }
        )
        self._headers = {"Content-Type": "application/json", "Accept": "text/event-stream"}
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=60),
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def one(self) -> Sample:
        assert self._session is not None
        started = time.perf_counter()
        ttft = 0.0
        events = 0
        head = b""
        tail = b""
        async with self._session.post(self._url, data=self._body, headers=self._headers) as resp:
            if resp.status != 200:
                await resp.read()
                resp.raise_for_status()
            async for data in resp.content.iter_any():
                if not ttft:
                    head += data
                    if _first_text(head):
                        ttft = time.perf_counter() - started
                events += (tail[-1:] + data).count(b"\n\n")
                tail = (tail + data)[-32:]
        ended = time.perf_counter()
        if _DONE not in tail or not ttft:
            raise Incomplete("the SSE stream ended without [DONE] or without text")
        return Sample(ttft, ended - started, events)

    async def answer(self) -> str:
        """One whole answer, parsed properly (a check, not timed)."""
        assert self._session is not None
        text: list[str] = []
        async with self._session.post(self._url, data=self._body, headers=self._headers) as resp:
            resp.raise_for_status()
            body = await resp.read()
        for event in body.split(b"\n\n"):
            if event.startswith(b"data: {"):
                for choice in orjson.loads(event[6:]).get("choices") or ():
                    text.append((choice.get("delta") or {}).get("content") or "")
        return "".join(text)


class GatewayClient:
    """grpc.aio on one channel, ``Gateway.Chat``."""

    name = "gateway"

    def __init__(self, address: str, key: str, route: str, tokens: int) -> None:
        self._address = address
        self._request = gateway_pb2.ChatRequest(
            route=route, messages=[gateway_pb2.Message(role="user", content=PROMPT)], max_tokens=tokens
        )
        self._metadata = (("authorization", f"Bearer {key}"),)
        self._channel: grpc.aio.Channel | None = None
        self._stub: gateway_pb2_grpc.GatewayStub | None = None

    async def open(self) -> None:
        self._channel = grpc.aio.insecure_channel(self._address)
        self._stub = gateway_pb2_grpc.GatewayStub(self._channel)  # type: ignore[no-untyped-call]

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()

    async def one(self) -> Sample:
        assert self._stub is not None
        started = time.perf_counter()
        ttft = 0.0
        messages = 0
        finish = 0
        async for chunk in self._stub.Chat(self._request, metadata=self._metadata, timeout=REQUEST_TIMEOUT_S):
            messages += 1
            if not ttft and chunk.text:
                ttft = time.perf_counter() - started
            finish = chunk.finish_reason
        ended = time.perf_counter()
        if not finish or not ttft:
            raise Incomplete("the gRPC stream ended without a finish reason or without text")
        return Sample(ttft, ended - started, messages)

    async def answer(self) -> str:
        assert self._stub is not None
        call = self._stub.Chat(self._request, metadata=self._metadata, timeout=REQUEST_TIMEOUT_S)
        return "".join([chunk.text async for chunk in call])


Client = DirectClient | GatewayClient


# ----------------------------------------------------------------------------- processes


@dataclass
class Proc:
    name: str
    process: asyncio.subprocess.Process
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.returncode is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    async def stop(self) -> int | None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.process.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
        return self.process.returncode


async def start_sim(tmp: Path, tokens: int, env: dict[str, str]) -> tuple[Proc, str]:
    """The simulator, on this process's CPUs; returns it and its SDK base URL."""
    log_path = tmp / "sim.log"
    with open(log_path, "wb") as log:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "backends.sim",
            "--protocol",
            "vllm",
            "--port",
            "0",
            "--model",
            MODEL,
            "--tokens",
            str(tokens),
            stdout=asyncio.subprocess.PIPE,
            stderr=log,
            cwd=REPO,
            env=env,
        )
    proc = Proc("sim", process, log_path)
    assert process.stdout is not None
    try:
        line = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT_S)
    except TimeoutError:
        await proc.stop()
        raise RuntimeError(
            f"the simulator did not start in {START_TIMEOUT_S:g} s:\n{proc.log_tail()}"
        ) from None
    found = _LISTENING_SIM.search(line.decode(errors="replace"))
    if found is None:
        await proc.stop()
        raise RuntimeError(f"the simulator printed {line!r}, not its address:\n{proc.log_tail()}")
    return proc, found.group(1) + "/v1"


def gateway_config(tmp: Path, sim_url: str, routes: dict[str, str]) -> Path:
    """The gateway's YAML: one vllm provider at the simulator, ``routes`` (name → model)."""
    config = {
        "listen": "127.0.0.1:0",
        "metrics_listen": None,
        "state": f"sqlite:///{tmp / 'meshgate.db'}",
        "providers": {"sim": {"kind": "vllm", "base_url": sim_url}},
        "routes": {
            name: {"type": "chat", "targets": [{"provider": "sim", "model": model}], "allow": ["bench"]}
            for name, model in routes.items()
        },
        "teams": {"bench": {"groups": ["bench"]}},
        "keys": [{"name": "bench", "team": "bench", "secret": f"${{env:{KEY_ENV}}}"}],
        "server": {"grace_s": 2},
    }
    path = tmp / "meshgate.yaml"
    path.write_bytes(orjson.dumps(config, option=orjson.OPT_INDENT_2))  # JSON is YAML
    return path


@dataclass
class Gateway:
    proc: Proc
    address: str
    implementation: str
    reason: str


async def start_gateway(tmp: Path, config: Path, env: dict[str, str], cpus: list[int] | None) -> Gateway:
    """The gateway, alone on ``cpus`` when given; waits for its line and for
    gRPC health SERVING (both bounded)."""
    command = [sys.executable, "-c", _GATEWAY_MAIN, str(config)]
    taskset = shutil.which("taskset")
    if cpus and taskset:
        command = [taskset, "-c", ",".join(map(str, cpus)), *command]
    log_path = tmp / "gateway.log"
    with open(log_path, "wb") as log:
        process = await asyncio.create_subprocess_exec(
            *command, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=log, cwd=REPO, env=env
        )
    if cpus and not taskset:
        os.sched_setaffinity(process.pid, cpus)  # before the interpreter has started its threads
    proc = Proc("gateway", process, log_path)
    deadline = time.monotonic() + START_TIMEOUT_S
    address = implementation = reason = ""
    while not address:
        if not proc.alive() or time.monotonic() > deadline:
            await proc.stop()
            raise RuntimeError(
                f"the gateway did not start (exit status {process.returncode}):\n{proc.log_tail()}"
            )
        text = log_path.read_text(errors="replace")
        if found := _NATIVE_GW.search(text):
            implementation, reason = found.group(1), found.group(2)
        if found := _LISTENING_GW.search(text):
            address = found.group(1)
        else:
            await asyncio.sleep(0.02)
    async with grpc.aio.insecure_channel(address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        service = gateway_pb2.DESCRIPTOR.services_by_name["Gateway"].full_name
        while True:
            with contextlib.suppress(grpc.aio.AioRpcError):
                reply = await health.Check(health_pb2.HealthCheckRequest(service=service), timeout=1.0)
                if reply.status == health_pb2.HealthCheckResponse.SERVING:
                    break
            if not proc.alive() or time.monotonic() > deadline:
                await proc.stop()
                raise RuntimeError(f"the gateway never reported SERVING:\n{proc.log_tail()}")
            await asyncio.sleep(0.02)
    return Gateway(proc, address, implementation, reason)


def log_summary(path: Path) -> dict[str, Any]:
    """Gateway log lines by level, and the first few warnings or errors."""
    levels: Counter[str] = Counter()
    notable: list[str] = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            entry = orjson.loads(line)
            level = str(entry.get("level", "?")) if isinstance(entry, dict) else "plain"
        except orjson.JSONDecodeError:
            level = "plain"
        levels[level] += 1
        if level in ("warning", "error", "critical") and len(notable) < 10:
            notable.append(line[:500])
    return {"lines_by_level": dict(levels), "warnings_and_errors": notable}


# ----------------------------------------------------------------------------- phases


@dataclass
class Phase:
    path: str
    index: int  # -1: warm-up
    concurrency: int
    requests: int
    samples: list[Sample] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    error_details: list[str] = field(default_factory=list)
    wall_s: float = 0.0
    cpu_s: dict[str, float] = field(default_factory=dict)  # gateway, sim, client
    cut_short: bool = False  # PHASE_LIMIT_S passed: no new requests after it


async def drive(
    one: Callable[[], Awaitable[Sample]], phase: Phase, stop: asyncio.Event | None = None
) -> None:
    """``phase.requests`` requests (or until ``stop``), ``phase.concurrency`` at a time."""
    issued = 0

    async def worker() -> None:
        nonlocal issued
        while issued < phase.requests and not (stop is not None and stop.is_set()):
            issued += 1
            try:
                phase.samples.append(await one())
            except Exception as exc:
                phase.errors[error_kind(exc)] += 1
                if len(phase.error_details) < 5:
                    phase.error_details.append(error_detail(exc))

    await asyncio.gather(*(worker() for _ in range(phase.concurrency)))
    phase.requests = issued


async def run_phase(client: Client, phase: Phase, pids: dict[str, int]) -> Phase:
    """One measured phase; a stalling path is cut short after ``PHASE_LIMIT_S``
    (the requests in flight then end or time out) and reported as such."""
    stop = asyncio.Event()
    timer = asyncio.get_running_loop().call_later(PHASE_LIMIT_S, stop.set)
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    started = time.perf_counter()
    try:
        await drive(client.one, phase, stop)
    finally:
        timer.cancel()
    phase.wall_s = time.perf_counter() - started
    phase.cut_short = stop.is_set()
    phase.cpu_s = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
    return phase


def summarise(phases: list[Phase]) -> dict[str, Any]:
    """One path's figures over ``phases`` (one phase, or all of them combined)."""
    samples = [s for p in phases for s in p.samples]
    requests = sum(p.requests for p in phases)
    wall = sum(p.wall_s for p in phases)
    errors: Counter[str] = Counter()
    for p in phases:
        errors.update(p.errors)
    cpu = {name: sum(p.cpu_s.get(name, 0.0) for p in phases) for name in phases[0].cpu_s}
    return {
        "requests": requests,
        "ok": len(samples),
        "errors": dict(errors),
        "error_details": [d for p in phases for d in p.error_details][:5],
        "phases_cut_short": sum(p.cut_short for p in phases),
        "wall_s": wall,
        "throughput_rps": len(samples) / wall if wall else math.nan,
        "ttft_ms": distribution([s.ttft_s for s in samples], 1e3),
        "e2e_ms": distribution([s.e2e_s for s in samples], 1e3),
        "messages_per_request": distribution([float(s.messages) for s in samples]),
        "cpu_s": cpu,
        "cpu_ms_per_request": {name: 1e3 * v / requests for name, v in cpu.items()} if requests else {},
        "cpu_utilisation": {name: v / wall for name, v in cpu.items()} if wall else {},
    }


def compare(direct: dict[str, Any], gateway: dict[str, Any]) -> dict[str, Any]:
    """What the gateway adds, from the two paths' summaries."""

    def added(metric: str) -> dict[str, float]:
        d, g = direct[metric], gateway[metric]
        return {q: g[q] - d[q] for q in ("p50", "p90", "p99", "mean") if q in g and q in d}

    cpu = gateway["cpu_s"].get("gateway", math.nan)
    per_request = 1e3 * cpu / gateway["requests"] if gateway["requests"] else math.nan
    return {
        "added_ttft_ms": added("ttft_ms"),
        "added_e2e_ms": added("e2e_ms"),
        "throughput_ratio_gateway_over_direct": (
            gateway["throughput_rps"] / direct["throughput_rps"] if direct["throughput_rps"] else math.nan
        ),
        "gateway_cpu_s_per_1000_requests": per_request,  # s per 1,000 requests = ms per request
        "gateway_cpu_ms_per_request": per_request,
        "gateway_cpu_utilisation": cpu / gateway["wall_s"] if gateway["wall_s"] else math.nan,
        "gateway_messages_per_request": gateway["messages_per_request"].get("mean", math.nan),
        "direct_sse_events_per_request": direct["messages_per_request"].get("mean", math.nan),
    }


# ----------------------------------------------------------------------------- profile

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<where>.*?)(?::\d+)?\)$")
_IDLE_LEAVES = frozenset(
    {"epoll_wait", "epoll_pwait", "poll", "ppoll", "select", "pselect", "nanosleep", "clock_nanosleep"}
)
_LOOP_ENTRY = frozenset({"Runner.run", "run_until_complete", "run_forever", "<module>"})
_ENTRY_FILES = frozenset({"router/cli.py", "router/server.py"})
_IDLE_ANYWHERE = ("PyThread_acquire_lock_timed", "pthread_cond_wait", "pthread_cond_timedwait", "sem_wait")
# Where a sample's own time goes: the first frame from the leaf up that names
# one of these (a libc syscall or CPython's own machinery belongs to its caller).
_AREAS = (
    ("native module", ("meshgate::", "router/native")),
    ("router", ("router/",)),
    ("backends", ("backends/",)),
    ("grpc", ("cygrpc", "grpc/")),
    ("protobuf", ("google/protobuf", "upb", "_message.")),
    ("aiohttp", ("aiohttp/", "_http_parser", "llhttp", "multidict", "yarl/")),
    ("prometheus_client", ("prometheus_client/",)),
    ("asyncio", ("asyncio/", "_asynciomodule")),
    ("uvloop / libuv", ("uvloop", "loop.c", "stream.c", "core.c", "linux.c", "uv__", "uv_")),
    ("gc", ("gc_collect", "gcmodule")),
)


def _frame(raw: str) -> tuple[str, str]:
    """(function, where) from a py-spy frame, where without line and with
    unresolved addresses folded into their library."""
    found = _FRAME.match(raw)
    if found is None:
        return raw, ""
    func, where = found.group("func"), found.group("where")
    where = where.rsplit("/site-packages/", 1)[-1].replace(str(REPO) + "/", "")
    if func.startswith("0x"):
        func = "[unresolved]"
        where = where.split(".cpython-")[0].split("/")[-1] if "cygrpc" in where else where
    return func, where


def _area(frames: list[tuple[str, str]]) -> str:
    for func, where in reversed(frames):
        text = f"{func} {where}"
        for area, marks in _AREAS:
            if any(mark in text for mark in marks):
                return area
    return "other"


def analyse_profile(raw: str, limit: int = 15) -> dict[str, Any]:
    """From py-spy's collapsed stacks (``--native``): per thread, samples busy
    and idle; over busy samples, the functions with the most own time (the
    leaf), the Python functions with the most own time (with the native code
    they call), project functions with the most total time, and own time by
    area."""
    threads: dict[str, Counter[str]] = {}
    own: Counter[str] = Counter()
    own_python: Counter[str] = Counter()
    total_project: Counter[str] = Counter()
    areas: Counter[str] = Counter()
    busy = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        names = stack.split(";")
        frames = [_frame(f) for f in names]
        if any("Runner.run" in n or "uv_run" in n for n in names):
            thread = "event loop (main)"
        elif any("concurrent/futures" in n for n in names):
            thread = "executor"
        elif any("cygrpc" in n for n in names):
            thread = "grpc poller"
        else:
            thread = "other"
        idle = frames[-1][0] in _IDLE_LEAVES or any(m in n for m in _IDLE_ANYWHERE for n in names)
        threads.setdefault(thread, Counter())["idle" if idle else "busy"] += count
        if idle:
            continue
        busy += count
        func, where = frames[-1]
        own[f"{func[:100]} ({where})"] += count
        python = next((f for f in reversed(frames) if f[1].endswith(".py")), None)
        if python is None or python[0] in _LOOP_ENTRY:
            own_python["[no Python frame above the event loop: uvloop, grpc core, syscalls]"] += count
        else:
            own_python[f"{python[0]} ({python[1]})"] += count
        areas[_area(frames)] += count
        for name in {f"{f[:100]} ({w})" for f, w in frames if w.startswith(("router/", "backends/"))}:
            if name.rpartition("(")[2][:-1] not in _ENTRY_FILES:
                total_project[name] += count

    def rows(counter: Counter[str], n: int = limit) -> list[dict[str, Any]]:
        return [
            {"function": name, "samples": k, "percent_of_busy": 100.0 * k / busy if busy else math.nan}
            for name, k in counter.most_common(n)
        ]

    return {
        "busy_samples": busy,
        "threads": {name: dict(c) for name, c in threads.items()},
        "top_own": rows(own),
        "top_own_python": rows(own_python),
        "top_total_project": rows(total_project),
        "own_by_area": rows(areas, len(areas)),
    }


async def profile(
    gateway: Gateway, client: GatewayClient, concurrency: int, seconds: float, raw_path: Path
) -> dict[str, Any]:
    """py-spy on the gateway while ``client`` (not yet open; closed by the
    caller) keeps it busy."""
    pyspy = shutil.which("py-spy") or shutil.which("py-spy", path=str(Path(sys.executable).parent))
    if pyspy is None:
        return {"skipped": "py-spy is not installed (pip install py-spy)"}
    command = [pyspy, "record", "--pid", str(gateway.proc.pid), "--duration", f"{max(1, round(seconds))}",
               "--rate", "200", "--format", "raw", "--native", "-o", str(raw_path)]  # fmt: skip
    spy = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    # Opened only now: forking while a channel is open makes gRPC warn on stderr.
    await client.open()
    stop = asyncio.Event()
    phase = Phase("gateway", -2, concurrency, requests=sys.maxsize)
    before = cpu_seconds(gateway.proc.pid)
    started = time.perf_counter()
    load = asyncio.create_task(drive(client.one, phase, stop))
    _, stderr = await spy.communicate()
    stop.set()
    await load
    wall = time.perf_counter() - started
    if spy.returncode != 0 or not raw_path.exists():
        return {"skipped": f"py-spy exited {spy.returncode}: {stderr.decode(errors='replace')[-500:]}"}
    return {
        "tool": " ".join(["py-spy", *command[1:3], "PID", *command[4:-2]]),
        "seconds": seconds,
        "concurrency": concurrency,
        "requests_during_profile": len(phase.samples),
        "errors_during_profile": dict(phase.errors),
        "gateway_cpu_utilisation_during_profile": (cpu_seconds(gateway.proc.pid) - before) / wall,
        "note": "py-spy pauses the gateway to sample it (slower meanwhile); read shares, not speed. "
        "Idle samples (epoll waits, lock waits) are left out; grpc's Cython/C core is unresolved "
        "(no symbols) and counted as cygrpc",
        **analyse_profile(raw_path.read_text(errors="replace")),
    }


# ----------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class Scenario:
    """What one column of the table measures."""

    name: str  # "burst", or "paced-<ms>ms"
    concurrency: int
    requests: int
    model: str  # as the simulator knows it
    route: str


@dataclass
class Plan:
    tokens: int
    scenarios: list[Scenario]
    warmup: int
    phases: int
    implementations: list[str]
    pin: bool
    profile_s: float
    profile_concurrency: int
    out: Path
    quick: bool
    profile_raw: Path | None = None

    def routes(self) -> dict[str, str]:
        return {s.route: s.model for s in self.scenarios}


def pinning(plan: Plan) -> dict[str, list[int]] | None:
    """CPU sets: the gateway alone on CPU 1, everything else on CPU 0."""
    if not plan.pin or not {0, 1} <= os.sched_getaffinity(0):
        return None
    return {"gateway": [1], "sim": [0], "client": [0]}


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for dist in ("meshgate", "grpcio", "protobuf", "aiohttp", "uvloop", "orjson", "py-spy"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            found[dist] = metadata.version(dist)
    return found


def host() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cpus": os.cpu_count(),
        "cpus_allowed": sorted(os.sched_getaffinity(0)),
        "cpu_model": model,
        "platform": platform.platform(),
        "clock_ticks_per_s": CLK_TCK,
    }


def git() -> dict[str, Any]:
    def out(*args: str) -> str:
        try:
            return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"commit": out("rev-parse", "HEAD").strip(), "dirty": bool(out("status", "--porcelain").strip())}


def implementation_env(base: dict[str, str], implementation: str) -> dict[str, str]:
    env = dict(base)
    if implementation == "python":
        env["MESHGATE_NATIVE"] = "0"
    elif implementation == "native":
        env["MESHGATE_NATIVE"] = "1"  # anything but "0": the compiled module, if it loads
    return env


def conditions(plan: Plan, cpus: dict[str, list[int]] | None) -> dict[str, Any]:
    return {
        "scenario": "stream one chat answer from the simulator (vLLM protocol), directly (aiohttp, SSE) and "
        "through the gateway (grpc.aio, Gateway.Chat); same prompt, model and max_tokens",
        "tokens_per_answer": plan.tokens,
        "scenarios": [
            {
                "name": s.name,
                "concurrency": s.concurrency,
                "requests_per_path": s.requests,
                "sim_model": s.model,
                "warmup_requests_per_path": max(plan.warmup, 2 * s.concurrency),
                "sim_delays": "no delays" if s.name == "burst" else f"model {s.model}: ms between tokens",
            }
            for s in plan.scenarios
        ],
        "phases_per_path": plan.phases,
        "phase_order": "per scenario: warm-up direct, warm-up gateway, then direct, gateway, direct, gateway "
        "... (requests split evenly between phases)",
        "pinning": cpus or "none (fewer than 2 CPUs allowed, or --no-pin)",
        "client": "this process, uvloop; direct: one aiohttp session per scenario (keep-alive); gateway: one "
        "grpc.aio channel",
        "gateway_config": "one vllm provider (the simulator), one chat route per scenario, one key from an "
        "env var, metrics_listen null, SQLite state in a temporary directory, server.grace_s 2; one process",
        "definitions": {
            "ttft": "client-side, from sending the request to the first non-empty text (direct: the first "
            "SSE event with non-empty delta content; gateway: the first ChatChunk with text)",
            "e2e": "client-side, from sending the request to the end of the stream",
            "added": "gateway percentile minus direct percentile (unpaired samples)",
            "throughput": "successful requests / phase wall time (at c>1 bounded by CPU 0, which the client "
            "and the simulator share: see cpu_utilisation)",
            "cpu": f"utime + stime from /proc/PID/stat before and after each phase ({1000 / CLK_TCK:g} ms "
            "resolution), over every request of the phase",
            "messages": "gateway: ChatChunks per request; direct: SSE events per request ([DONE] included)",
            "gateway_cpu_us_per_message": "(gateway CPU per request, paced − burst) / (ChatChunks per "
            "request, paced − burst), the burst scenario at the concurrency nearest the paced one's",
        },
    }


async def measure(plan: Plan) -> dict[str, Any]:
    cpus = pinning(plan)
    if cpus is not None:
        os.sched_setaffinity(0, cpus["client"])  # before any thread starts: gRPC's inherit it
    key = "mg-bench-" + secrets.token_hex(16)
    base_env = {**os.environ, KEY_ENV: key, "MESHGATE_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1"}
    base_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    report: dict[str, Any] = {
        "benchmark": "gateway_vs_direct",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "mode": "quick" if plan.quick else "full",
        "conditions": conditions(plan, cpus),
        "host": host(),
        "versions": versions(),
        "git": git(),
        "results": [],
    }
    with tempfile.TemporaryDirectory(prefix="meshgate-bench-") as tmp_name:
        tmp = Path(tmp_name)
        sim, sim_url = await start_sim(tmp, plan.tokens, base_env)
        try:
            report["conditions"]["sim_cpus"] = thread_cpus(sim.pid)
            for index, implementation in enumerate(plan.implementations):
                block = await measure_gateway(
                    plan, tmp, sim, sim_url, implementation, base_env, cpus, profile=index == 0
                )
                report["results"].append(block)
        finally:
            await sim.stop()
    report["conditions"]["client_cpus"] = thread_cpus(os.getpid())
    return report


async def measure_gateway(
    plan: Plan,
    tmp: Path,
    sim: Proc,
    sim_url: str,
    implementation: str,
    base_env: dict[str, str],
    cpus: dict[str, list[int]] | None,
    *,
    profile: bool,
) -> dict[str, Any]:
    """Every scenario against one gateway process running ``implementation``."""
    tmp = tmp / implementation  # its own state, config and log
    tmp.mkdir()
    config = gateway_config(tmp, sim_url, plan.routes())
    gateway = await start_gateway(
        tmp, config, implementation_env(base_env, implementation), cpus["gateway"] if cpus else None
    )
    print(
        f"[{implementation}] gateway pid {gateway.proc.pid} on {gateway.address}, native module: "
        f"{gateway.implementation} ({gateway.reason})",
        file=sys.stderr,
    )
    block: dict[str, Any] = {
        "implementation_requested": implementation,
        "implementation": gateway.implementation,
        "implementation_reason": gateway.reason,
        "gateway_cpus": thread_cpus(gateway.proc.pid),
        "scenarios": [],
    }
    pids = {"gateway": gateway.proc.pid, "sim": sim.pid, "client": os.getpid()}
    try:
        for scenario in plan.scenarios:
            direct = DirectClient(sim_url, scenario.model, plan.tokens)
            client = GatewayClient(gateway.address, base_env[KEY_ENV], scenario.route, plan.tokens)
            await direct.open()
            await client.open()
            try:
                direct_text, gateway_text = await direct.answer(), await client.answer()
                result = await measure_scenario(plan, scenario, direct, client, pids)
                result["answers_match"] = direct_text == gateway_text
                result["answer_chars"] = len(direct_text)
                block["scenarios"].append(result)
            finally:
                await client.close()
                await direct.close()
        if profile and plan.profile_s > 0 and gateway.proc.alive():  # after measuring: py-spy slows it
            client = GatewayClient(gateway.address, base_env[KEY_ENV], ROUTE, plan.tokens)
            try:
                block["profile"] = await profile_gateway(plan, gateway, client, tmp, implementation)
            finally:
                await client.close()
        block["gateway_cpu_us_per_message"] = per_message(block["scenarios"])
        block["gateway_alive_at_end"] = gateway.proc.alive()
    finally:
        block["gateway_exit_status"] = await gateway.proc.stop()
        block["gateway_log"] = log_summary(gateway.proc.log_path)
    return block


async def profile_gateway(
    plan: Plan, gateway: Gateway, client: GatewayClient, tmp: Path, implementation: str
) -> dict[str, Any]:
    print(
        f"[{implementation}] profiling the gateway for {plan.profile_s:g} s at c={plan.profile_concurrency}",
        file=sys.stderr,
    )
    raw = tmp / f"profile-{implementation}.txt"
    result = await profile(gateway, client, plan.profile_concurrency, plan.profile_s, raw)
    if plan.profile_raw is not None and raw.exists():
        shutil.copyfile(raw, plan.profile_raw)
        result["raw"] = str(plan.profile_raw)
    return result


def per_message(scenarios: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Gateway CPU per streamed message: the slope between a burst scenario
    (few, coalesced messages) and the paced one (about one message per token),
    the burst one at the nearest concurrency."""
    paced = next((s for s in scenarios if s["scenario"].startswith("paced")), None)
    bursts = [s for s in scenarios if s["scenario"] == "burst"]
    if paced is None or not bursts:
        return None
    burst = min(bursts, key=lambda s: abs(s["concurrency"] - paced["concurrency"]))
    ends = {}
    for name, s in (("burst", burst), ("paced", paced)):
        c = s["combined"]
        ends[name] = {
            "concurrency": s["concurrency"],
            "messages": c["gateway_messages_per_request"],
            "cpu_ms_per_request": c["gateway_cpu_ms_per_request"],
        }
    extra_messages = ends["paced"]["messages"] - ends["burst"]["messages"]
    if extra_messages <= 0:
        return None
    extra_ms = ends["paced"]["cpu_ms_per_request"] - ends["burst"]["cpu_ms_per_request"]
    return {"us_per_message": 1e3 * extra_ms / extra_messages, **ends}


async def measure_scenario(
    plan: Plan, scenario: Scenario, direct: DirectClient, gateway: GatewayClient, pids: dict[str, int]
) -> dict[str, Any]:
    level = scenario.concurrency
    clients: dict[str, Client] = {"direct": direct, "gateway": gateway}
    warmups = {}
    for name, client in clients.items():
        warm = await run_phase(client, Phase(name, -1, level, max(plan.warmup, 2 * level)), pids)
        warmups[name] = {"requests": warm.requests, "ok": len(warm.samples), "errors": dict(warm.errors)}
    counts = [
        scenario.requests // plan.phases + (i < scenario.requests % plan.phases) for i in range(plan.phases)
    ]
    phases: dict[str, list[Phase]] = {"direct": [], "gateway": []}
    for index, count in enumerate(counts):
        for name, client in clients.items():
            phase = await run_phase(client, Phase(name, index, level, count), pids)
            phases[name].append(phase)
            print(
                f"  {scenario.name} c={level} {name:7s} phase {index}: "
                f"{len(phase.samples)}/{phase.requests} ok in {phase.wall_s:.2f} s",
                file=sys.stderr,
            )
    combined = {name: summarise(ps) for name, ps in phases.items()}
    per_phase = []
    for i in range(len(counts)):
        d, g = summarise([phases["direct"][i]]), summarise([phases["gateway"][i]])
        per_phase.append({"index": i, "direct": d, "gateway": g, **compare(d, g)})
    return {
        "scenario": scenario.name,
        "concurrency": level,
        "route": scenario.route,
        "sim_model": scenario.model,
        "warmup": warmups,
        "combined": {**combined, **compare(combined["direct"], combined["gateway"])},
        "phases": per_phase,
    }


# ----------------------------------------------------------------------------- the table


def _f(value: float | None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return f"{value:.{digits}f}"


def _p50_p99(d: dict[str, float]) -> str:
    return f"{_f(d.get('p50'), 3)} / {_f(d.get('p99'), 3)}"


def _errors(path: dict[str, Any]) -> str:
    text = str(sum(path["errors"].values()))
    return text + (f" ({path['phases_cut_short']} phases cut short)" if path["phases_cut_short"] else "")


def _cpu0(path: dict[str, Any]) -> float:
    use = path["cpu_utilisation"]
    return float(use.get("sim", math.nan) + use.get("client", math.nan))


_ROWS: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
    ("requests ok direct / gateway", lambda c: f"{c['direct']['ok']} / {c['gateway']['ok']}"),
    ("errors direct / gateway", lambda c: f"{_errors(c['direct'])} / {_errors(c['gateway'])}"),
    ("TTFT direct p50 / p99 ms", lambda c: _p50_p99(c["direct"]["ttft_ms"])),
    ("TTFT gateway p50 / p99 ms", lambda c: _p50_p99(c["gateway"]["ttft_ms"])),
    ("added TTFT p50 / p99 ms", lambda c: _p50_p99(c["added_ttft_ms"])),
    ("e2e direct p50 / p99 ms", lambda c: _p50_p99(c["direct"]["e2e_ms"])),
    ("e2e gateway p50 / p99 ms", lambda c: _p50_p99(c["gateway"]["e2e_ms"])),
    ("added e2e p50 / p99 ms", lambda c: _p50_p99(c["added_e2e_ms"])),
    ("throughput direct req/s", lambda c: _f(c["direct"]["throughput_rps"], 0)),
    ("throughput gateway req/s", lambda c: _f(c["gateway"]["throughput_rps"], 0)),
    ("throughput gateway / direct", lambda c: _f(c["throughput_ratio_gateway_over_direct"], 3)),
    ("gateway CPU s/1000 req (=ms/req)", lambda c: _f(c["gateway_cpu_ms_per_request"], 3)),
    ("gateway CPU use (of its core)", lambda c: _f(c["gateway_cpu_utilisation"], 2)),
    ("CPU0 use (sim+client) d / g", lambda c: f"{_f(_cpu0(c['direct']), 2)} / {_f(_cpu0(c['gateway']), 2)}"),
    ("gateway ChatChunks / req", lambda c: _f(c["gateway_messages_per_request"], 2)),
    ("direct SSE events / req", lambda c: _f(c["direct_sse_events_per_request"], 2)),
]  # fmt: skip


def table_cells(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The key figures as cells: a header row, then one row per figure and one
    column per (implementation, scenario, concurrency)."""
    columns = [
        (f"{block['implementation']} {s['scenario']} c={s['concurrency']}", s)
        for block in report["results"]
        for s in block["scenarios"]
    ]
    head = ["", *(name for name, _ in columns)]
    return head, [[label, *(fn(s["combined"]) for _, s in columns)] for label, fn in _ROWS]


def per_message_lines(report: dict[str, Any]) -> list[str]:
    lines = []
    for block in report["results"]:
        slope = block.get("gateway_cpu_us_per_message")
        if slope:
            burst, paced = slope["burst"], slope["paced"]
            lines.append(
                f"{block['implementation']}: gateway CPU per streamed message"
                f" ≈ {slope['us_per_message']:.1f} µs (burst c={burst['concurrency']}:"
                f" {burst['cpu_ms_per_request']:.3f} ms/req at {burst['messages']:.1f} msgs/req;"
                f" paced c={paced['concurrency']}: {paced['cpu_ms_per_request']:.3f} ms/req at"
                f" {paced['messages']:.1f})"
            )
    return lines


def table(report: dict[str, Any]) -> str:
    """The key figures as text, then the per-message estimate and each phase."""
    head, body = table_cells(report)
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)).rstrip() for r in [head, *body]]
    lines.extend(per_message_lines(report))
    lines.append("")
    lines.append("per phase, p50 ms direct→gateway (TTFT, e2e), req/s direct→gateway, gateway CPU ms/req:")
    for block in report["results"]:
        for s in block["scenarios"]:
            name = f"{block['implementation']} {s['scenario']} c={s['concurrency']}"
            for ph in s["phases"]:
                d, g = ph["direct"], ph["gateway"]
                lines.append(
                    f"  {name} #{ph['index']}:"
                    f" TTFT {_f(d['ttft_ms'].get('p50'), 3)}→{_f(g['ttft_ms'].get('p50'), 3)}"
                    f"  e2e {_f(d['e2e_ms'].get('p50'), 3)}→{_f(g['e2e_ms'].get('p50'), 3)}"
                    f"  {_f(d['throughput_rps'], 0)}→{_f(g['throughput_rps'], 0)} req/s"
                    f"  CPU {_f(ph['gateway_cpu_ms_per_request'], 3)}"
                )
    return "\n".join(lines)


def profile_table(report: dict[str, Any], limit: int = 15) -> str:
    lines: list[str] = []
    for block in report["results"]:
        prof = block.get("profile")
        if not prof:
            continue
        if "skipped" in prof:
            lines.append(f"gateway profile ({block['implementation']}): skipped: {prof['skipped']}")
            continue
        threads = ", ".join(f"{t} {c.get('busy', 0)} busy / {c.get('idle', 0)} idle"
                            for t, c in prof["threads"].items())  # fmt: skip
        lines.append(
            f"gateway profile ({block['implementation']}, c={prof['concurrency']}, {prof['seconds']:g} s, "
            f"{prof['busy_samples']} busy samples; {threads})"
        )
        for title, key in (
            ("own time by area", "own_by_area"),
            ("top functions by own time (leaf frame)", "top_own"),
            ("top Python functions by own time (with the native code they call)", "top_own_python"),
            ("project functions by total time", "top_total_project"),
        ):
            lines.append(f"  {title}:")
            lines.extend(
                f"    {row['percent_of_busy']:5.1f}%  {row['function']}" for row in prof[key][:limit]
            )
    return "\n".join(lines)


# ----------------------------------------------------------------------------- CLI


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.e2e_stream",
        description=(__doc__ or "").split("\n\n")[0],
    )
    p.add_argument("--quick", action="store_true", help="smoke run: few requests, no profile (seconds)")
    p.add_argument("--tokens", type=int, default=64, help="tokens per answer (default %(default)s)")
    p.add_argument("--concurrency", default="1,32", help="comma-separated levels (default %(default)s)")
    p.add_argument(
        "--requests-c1",
        type=int,
        default=None,
        help="measured requests per path at concurrency 1 (default 2000; quick 100)",
    )
    p.add_argument(
        "--requests",
        type=int,
        default=None,
        help="measured requests per path at other levels (default 10000; quick 400)",
    )
    p.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="warm-up requests per path and scenario, at least 2 x concurrency (default 50)",
    )
    p.add_argument("--phases", type=int, default=None, help="measured phases per path (default 4; quick 2)")
    p.add_argument(
        "--paced-itl-ms",
        type=int,
        default=1,
        help="also a paced scenario, this many ms between tokens, so that every token is a "
        "message: gives the gateway's CPU per message; 0 = no (default %(default)s)",
    )
    p.add_argument("--paced-concurrency", type=int, default=8, help="paced scenario (default %(default)s)")
    p.add_argument(
        "--paced-requests", type=int, default=None, help="paced scenario, per path (default 1000; quick 200)"
    )
    p.add_argument(
        "--implementations",
        default=None,
        help="native module implementations to run the gateway with, comma-separated: native, "
        "python, inherit (MESHGATE_NATIVE as it is) (default native,python; quick native)",
    )
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    p.add_argument(
        "--profile-s",
        type=float,
        default=None,
        help="py-spy the gateway (first implementation) under load for this long; 0 = no "
        "(default 10; quick 0)",
    )
    p.add_argument("--profile-concurrency", type=int, default=32, help="load while profiling (default 32)")
    p.add_argument(
        "--profile-raw", type=Path, default=None, help="keep py-spy's collapsed stacks in this file"
    )
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON results (default %(default)s)")
    args = p.parse_args(argv)

    def default(value: Any, full: Any, quick: Any) -> Any:
        return value if value is not None else (quick if args.quick else full)

    args.requests_c1 = default(args.requests_c1, 2000, 100)
    args.requests = default(args.requests, 10000, 400)
    args.warmup = default(args.warmup, 50, 50)
    args.phases = default(args.phases, 4, 2)
    args.paced_requests = default(args.paced_requests, 1000, 200)
    args.implementations = default(args.implementations, "native,python", "native")
    args.profile_s = default(args.profile_s, 10.0, 0.0)
    return args


def plan_from(args: argparse.Namespace) -> Plan:
    try:
        levels = [int(c) for c in args.concurrency.split(",") if c.strip()]
    except ValueError:
        raise SystemExit(f"--concurrency: {args.concurrency!r} is not a list of numbers") from None
    implementations = list(dict.fromkeys(i.strip() for i in args.implementations.split(",") if i.strip()))
    for name in implementations:
        if name not in ("native", "python", "inherit"):
            raise SystemExit(f"--implementations: {name!r} is not native, python or inherit")
    if not levels or min(levels) < 1 or args.phases < 1 or args.tokens < 1 or args.paced_itl_ms < 0:
        raise SystemExit("--concurrency, --phases and --tokens must be positive, --paced-itl-ms not negative")
    scenarios = [
        Scenario("burst", c, args.requests_c1 if c == 1 else args.requests, MODEL, ROUTE) for c in levels
    ]
    if args.paced_itl_ms:
        scenarios.append(
            Scenario(f"paced-{args.paced_itl_ms}ms", args.paced_concurrency, args.paced_requests,
                     f"slow-{args.paced_itl_ms}", f"{ROUTE}-paced")
        )  # fmt: skip
    return Plan(
        tokens=args.tokens,
        scenarios=scenarios,
        warmup=args.warmup,
        phases=args.phases,
        implementations=implementations,
        pin=not args.no_pin,
        profile_s=args.profile_s,
        profile_concurrency=args.profile_concurrency,
        out=args.out,
        quick=args.quick,
        profile_raw=args.profile_raw,
    )


def run(plan: Plan) -> dict[str, Any]:
    """Measure, write the JSON, return the report."""
    try:
        import uvloop

        loop_factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a dependency
        loop_factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        report = runner.run(measure(plan))
    plan.out.parent.mkdir(parents=True, exist_ok=True)
    plan.out.write_bytes(orjson.dumps(report, option=orjson.OPT_INDENT_2))
    return report


def main(argv: list[str] | None = None) -> int:
    plan = plan_from(parse_args(argv))
    report = run(plan)
    print(table(report))
    prof = profile_table(report)
    if prof:
        print()
        print(prof)
    print(f"\nwritten: {plan.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
