"""The ``meshgate`` command as a user runs it: a separate process against the
real gateway, judged by its exit status, stdout and stderr.

Each run starts a Python process (about half a second), so independent runs
go concurrently.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from router.client import AdminClient
from router.domain import BackendLoad

from .conftest import ADMIN_KEY, ALICE_KEY, BOB_KEY, PROVIDER_KEY, ROUTES, Stack
from .test_client import WAIT_S, alices_routes, hosted
from .test_streaming import digest

ROOT = Path(__file__).resolve().parents[2]
RUN_S = 60  # an upper bound on one command's run, never a pause
POLL_S = 0.1  # between ListBackends calls while waiting for another process
SUMMARY = re.compile(
    r"model=(?P<model>\S+) backend=(?P<backend>\S+) finish=(?P<finish>\S+) "
    r"prompt_tokens=(?P<prompt>\d+) completion_tokens=(?P<completion>\d+) "
    r"ttft=\d+\.\d{3}s total=\d+\.\d{3}s request_id=(?P<request_id>\S+)"
)


@dataclass(frozen=True)
class Run:
    status: int
    out: str
    err: str


def environment(stack: Stack, key: str | None, admin_key: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHGATE_")}
    env["MESHGATE_GATEWAY"] = stack.gateway.address
    if key is not None:
        env["MESHGATE_KEY"] = key
    if admin_key is not None:
        env["MESHGATE_ADMIN_KEY"] = admin_key
    return env


async def start(
    stack: Stack, *args: str, key: str | None = None, admin_key: str | None = None, stdin: bool = False
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "router", *args,
        cwd=ROOT, env=environment(stack, key, admin_key),
        stdin=asyncio.subprocess.PIPE if stdin else asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip


async def meshgate(
    stack: Stack, *args: str, key: str | None = None, admin_key: str | None = None, stdin: str | None = None
) -> Run:
    """Run ``meshgate ARGS`` to its end."""
    process = await start(stack, *args, key=key, admin_key=admin_key, stdin=stdin is not None)
    try:
        out, err = await asyncio.wait_for(process.communicate(stdin.encode() if stdin else None), RUN_S)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())


def summary(run: Run) -> dict[str, str]:
    """The summary line, which must be all of stderr."""
    match = SUMMARY.fullmatch(run.err.strip())
    assert match, run.err
    return match.groupdict()


async def until(check: Callable[[], Awaitable[bool]]) -> None:
    """Poll ``check`` until it holds (bounded by ``WAIT_S``): for a change made by another process."""

    async def poll() -> None:
        while not await check():
            await asyncio.sleep(POLL_S)

    await asyncio.wait_for(poll(), WAIT_S)


async def registered_ids(stack: Stack, url: str) -> list[str]:
    async with AdminClient(stack.gateway.address, ADMIN_KEY) as control:
        return [b.id for b in await control.list_backends() if b.url == url]


# --------------------------------------------------------------------------- data plane


WITH_OPTIONS = (
    "chat", "--route", "chat", "--system", "Be brief.", "--max-tokens", "5",
    "--request-id", "cli-req-1", "--tag", "project=demo", "Say hello",
)  # fmt: skip


async def test_chat_complete_and_embed_print_their_answers(stack: Stack) -> None:
    prompt = "Where is my parcel?"
    plain, options, piped, completion, embedded, embedded_json = await asyncio.gather(
        meshgate(stack, "chat", "--route", "chat", prompt, key=ALICE_KEY),
        meshgate(stack, *WITH_OPTIONS, key=ALICE_KEY),
        meshgate(stack, "chat", "--route", "chat", "-", key=ALICE_KEY, stdin="from stdin\n"),
        meshgate(stack, "complete", "--route", "complete", "Once upon a time", key=ALICE_KEY),
        meshgate(stack, "embed", "--route", "embed", "one text", "another", key=ALICE_KEY),
        meshgate(stack, "embed", "--route", "embed", "--json", "one text", key=ALICE_KEY),
    )

    assert plain.status == 0, plain.err
    assert plain.out.startswith(digest(prompt)) and plain.out.endswith("\n")
    assert plain.out.count("\n") == 1  # only the answer on stdout
    first = summary(plain)
    assert (first["model"], first["backend"], first["finish"], first["completion"]) == (
        "sim-llama",
        "vllm-a",
        "stop",
        "12",
    )
    assert int(first["prompt"]) > 0

    assert options.status == 0, options.err
    assert options.out.startswith(digest("Say hello"))
    second = summary(options)
    assert (second["finish"], second["completion"], second["request_id"]) == ("length", "5", "cli-req-1")

    assert piped.status == 0, piped.err
    assert piped.out.startswith(digest("from stdin"))  # the prompt without its newline

    assert completion.status == 0, completion.err
    assert completion.out.startswith(digest("Once upon a time"))
    assert summary(completion)["finish"] == "stop"

    assert embedded.status == 0, embedded.err
    lines = embedded.out.splitlines()
    assert [line.split(" [")[0] for line in lines] == ["'one text': 384 dims", "'another': 384 dims"]
    assert re.fullmatch(
        r"model=sim-llama backend=vllm-a prompt_tokens=\d+ request_id=\S+", embedded.err.strip()
    )

    assert embedded_json.status == 0, embedded_json.err
    result = json.loads(embedded_json.out)
    assert [len(v) for v in result["vectors"]] == [384]
    assert (result["model"], result["backend"]) == ("sim-llama", "vllm-a")
    assert result["usage"]["prompt_tokens"] > 0


REFUSALS: list[tuple[list[str], dict[str, str], str, str]] = [
    (["chat", "--route", "chat", "hi"], {"key": "mg-not-a-real-key"}, "UNAUTHENTICATED", "key"),
    (["chat", "--route", "chat", "hi"], {}, "UNAUTHENTICATED", "MESHGATE_KEY"),
    (["chat", "--route", "no-such-route", "hi"], {"key": ALICE_KEY}, "NOT_FOUND", "no-such-route"),
    (["chat", "--route", "chat", "hi"], {"key": BOB_KEY}, "PERMISSION_DENIED", "chat"),
    (
        ["chat", "--route", "chat", "--max-tokens", "-1", "hi"],
        {"key": ALICE_KEY},
        "INVALID_ARGUMENT",
        "max_tokens",
    ),
    (["chat", "--route", "dead", "hi"], {"key": ALICE_KEY}, "UNAVAILABLE", "nowhere"),
    (["embed", "--route", "chat", "x"], {"key": ALICE_KEY}, "INVALID_ARGUMENT", "Chat"),
    (["backends", "list"], {"key": ALICE_KEY}, "UNAUTHENTICATED", "MESHGATE_ADMIN_KEY"),
    (["keys", "list"], {"admin_key": ALICE_KEY}, "PERMISSION_DENIED", ""),
    (
        ["register", "--url", "http://127.0.0.1:9/v1", "--model", "hosted-model"],
        {"admin_key": ALICE_KEY},
        "PERMISSION_DENIED",
        "",
    ),
]


async def test_a_refused_call_prints_one_line_and_exits_1(stack: Stack) -> None:
    runs = await asyncio.gather(*(meshgate(stack, *args, **keys) for args, keys, _, _ in REFUSALS))
    for run, (args, _, status, hint) in zip(runs, REFUSALS, strict=True):
        assert run.status == 1, (args, run)
        assert run.out == "", (args, run)
        assert run.err.startswith(f"meshgate: {status}: "), (args, run.err)
        assert hint in run.err, (args, run.err)
        assert len(run.err.splitlines()) == 1, (args, run.err)  # no traceback


async def test_an_error_mid_stream_comes_after_the_text_on_its_own_line(stack: Stack) -> None:
    prompt = "tell me a story"
    run = await meshgate(stack, "chat", "--route", "cut", prompt, key=ALICE_KEY)
    assert run.status == 1
    assert run.out.startswith(digest(prompt)) and run.out.endswith("\n")
    assert run.err.startswith("meshgate: UNAVAILABLE: ")
    assert len(run.err.splitlines()) == 1  # no summary: the answer did not finish


async def test_ctrl_c_exits_130_and_the_gateway_stops_the_upstream(stack: Stack) -> None:
    before = stack.vllm.stats.streams_aborted
    prompt = "wait for it"
    process = await start(stack, "chat", "--route", "stall", prompt, key=ALICE_KEY)
    try:
        assert process.stdout is not None
        first = await asyncio.wait_for(process.stdout.readexactly(8), RUN_S)
        assert first.decode() == digest(prompt)  # the answer is streaming
        process.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(process.wait(), RUN_S) == 130
        await stack.vllm.wait_for(lambda s: s.streams_aborted > before, timeout_s=WAIT_S)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


# --------------------------------------------------------------------------- control plane


async def test_keys_create_list_and_revoke(stack: Stack) -> None:
    created, created_json = await asyncio.gather(
        meshgate(stack, "keys", "create", "--name", "cli-erin", "--team", "eng", admin_key=ADMIN_KEY),
        meshgate(
            stack, "keys", "create", "--name", "cli-frank", "--team", "ops", "--json", admin_key=ADMIN_KEY
        ),
    )
    assert created.status == 0, created.err
    secret = created.out.strip()
    assert created.out == secret + "\n" and secret.startswith("mg-")  # the secret alone, for $(...)
    made = re.search(r"created (key_\w+) \(name cli-erin, team eng\)", created.err)
    assert made, created.err
    key_id = made.group(1)
    assert "shown only once" in created.err

    assert created_json.status == 0, created_json.err
    frank = json.loads(created_json.out)
    assert (frank["key"]["name"], frank["key"]["team"]) == ("cli-frank", "ops")
    assert frank["secret"].startswith(frank["key"]["prefix"])

    chat, listed_json, listed_table, ops_only = await asyncio.gather(
        meshgate(stack, "chat", "--route", "chat", "hi", key=secret),
        meshgate(stack, "keys", "list", "--json", admin_key=ADMIN_KEY),
        meshgate(stack, "keys", "list", admin_key=ADMIN_KEY),
        meshgate(stack, "keys", "list", "--team", "ops", "--json", admin_key=ADMIN_KEY),
    )
    assert chat.status == 0, chat.err
    assert chat.out.startswith(digest("hi"))

    assert listed_json.status == 0, listed_json.err
    keys = {k["id"]: k for k in json.loads(listed_json.out)}
    assert (keys[key_id]["name"], keys[key_id]["team"], keys[key_id]["revoked_unix_ms"]) == (
        "cli-erin",
        "eng",
        0,
    )
    assert {"alice", "bob"} <= {k["name"] for k in keys.values()}  # the keys from the config file
    for run in (listed_json, listed_table, ops_only):
        assert secret not in run.out and frank["secret"] not in run.out

    assert listed_table.status == 0, listed_table.err
    header, *rows = listed_table.out.splitlines()
    assert header.split() == ["ID", "NAME", "TEAM", "PREFIX", "CREATED", "REVOKED", "SOURCE"]
    row = next(r for r in rows if r.startswith(key_id))
    assert row.split()[1:4] == ["cli-erin", "eng", keys[key_id]["prefix"]]
    assert row.split()[-1] == "admin"

    assert {k["name"] for k in json.loads(ops_only.out)} >= {"cli-frank", "bob"}
    assert "cli-erin" not in {k["name"] for k in json.loads(ops_only.out)}

    revoked = await meshgate(stack, "keys", "revoke", key_id, admin_key=ADMIN_KEY)
    assert revoked.status == 0, revoked.err
    assert revoked.out == f"revoked {key_id} (name cli-erin, team eng)\n"

    refused, live, every = await asyncio.gather(
        meshgate(stack, "chat", "--route", "chat", "hi", key=secret),
        meshgate(stack, "keys", "list", "--json", admin_key=ADMIN_KEY),
        meshgate(stack, "keys", "list", "--all", "--json", admin_key=ADMIN_KEY),
    )
    assert refused.status == 1
    assert refused.err.startswith("meshgate: UNAUTHENTICATED: ")
    assert key_id not in {k["id"] for k in json.loads(live.out)}
    assert {k["id"]: k for k in json.loads(every.out)}[key_id]["revoked_unix_ms"] > 0


async def test_routes_list_shows_every_route_to_an_admin_and_a_consumer_only_theirs(stack: Stack) -> None:
    admin_json, admin_table, alice_json, alice_table = await asyncio.gather(
        meshgate(stack, "routes", "list", "--json", admin_key=ADMIN_KEY),
        meshgate(stack, "routes", "list", admin_key=ADMIN_KEY),
        meshgate(stack, "routes", "list", "--json", key=ALICE_KEY),
        meshgate(stack, "routes", "list", key=ALICE_KEY),
    )
    for run in (admin_json, admin_table, alice_json, alice_table):
        assert run.status == 0, run.err

    every = {r["name"]: r for r in json.loads(admin_json.out)}
    assert set(ROUTES) <= set(every)
    assert every["chat"] == {
        "name": "chat",
        "type": "chat",
        "targets": [{"model": "sim-llama", "provider": "vllm-a", "weight": 1}],
        "allow": ["eng"],
        "configured": True,
    }
    assert every["registered"]["targets"] == [{"model": "hosted-model", "provider": "", "weight": 1}]

    header, *rows = admin_table.out.splitlines()
    assert header.split() == ["NAME", "TYPE", "TARGETS", "ALLOW", "SOURCE"]
    table = {row.split()[0]: row.split()[1:] for row in rows}
    assert table["chat"] == ["chat", "vllm-a/sim-llama", "eng", "config"]
    assert table["registered"] == ["chat", "(registered)/hosted-model", "eng", "config"]
    assert table["failover"][1:4] == ["vllm-a/error-503", "x1000,", "vllm-b/sim-llama"]
    assert "ops-only" in table

    mine = json.loads(alice_json.out)
    names = [r["name"] for r in mine]
    assert names == sorted(names)
    assert alices_routes() <= set(names)
    assert "ops-only" not in names
    assert next(r for r in mine if r["name"] == "embed") == {
        "name": "embed",
        "type": "embedding",
        "models": ["sim-llama"],
    }

    header, *rows = alice_table.out.splitlines()
    assert header.split() == ["NAME", "TYPE", "MODELS"]
    assert {row.split()[0] for row in rows} == set(names)


async def test_backends_list_shows_providers_and_registered_hosts_with_their_load(stack: Stack) -> None:
    async with hosted(stack) as host:
        async with AdminClient(stack.gateway.address, ADMIN_KEY) as control:
            backend = await control.register_backend(host.url, ["hosted-model"], labels={"gpu": "h100"})
            await control.heartbeat(backend.id, BackendLoad(1, 2, 0.25))
        as_json, as_table = await asyncio.gather(
            meshgate(stack, "backends", "list", "--json", admin_key=ADMIN_KEY),
            meshgate(stack, "backends", "list", admin_key=ADMIN_KEY),
        )
    for run in (as_json, as_table):
        assert run.status == 0, run.err
        assert PROVIDER_KEY not in run.out

    backends: dict[str, Any] = {b["id"]: b for b in json.loads(as_json.out)}
    assert {"vllm-a", "vllm-b", "openai", "azure", "anthropic", "cohere", "nowhere"} <= set(backends)
    assert (backends["vllm-a"]["configured"], backends["vllm-a"]["url"]) == (True, stack.vllm.url)
    mine = backends[backend.id]
    assert (mine["url"], mine["models"], mine["labels"], mine["configured"]) == (
        host.url,
        ["hosted-model"],
        {"gpu": "h100"},
        False,
    )
    assert mine["load"] == {"running_requests": 1, "waiting_requests": 2, "kv_cache_usage": 0.25}
    assert mine["lease_expires_unix_ms"] > 0

    header, *rows = as_table.out.splitlines()
    assert header.split() == ["ID", "PROTOCOL", "URL", "MODELS", "STATE", "LOAD", "IN-FLIGHT", "LEASE"]
    row = next(re.split(r"\s{2,}", r) for r in rows if r.startswith(backend.id))
    assert row[:-1] == [backend.id, "vllm", host.url, "hosted-model", "healthy", "run 1 wait 2 kv 25%", "0"]
    assert re.fullmatch(r"in \d+s", row[-1])  # the lease, in whole seconds from now


async def test_register_keeps_a_host_in_the_pool_until_sigterm(stack: Stack) -> None:
    async with hosted(stack, answer="digest", tokens=4) as host:
        process = await start(
            stack, "register", "--url", host.url, "--model", "hosted-model", "--labels", "gpu=h100",
            admin_key=ADMIN_KEY,
        )  # fmt: skip
        try:

            async def is_listed() -> bool:
                return bool(await registered_ids(stack, host.url))

            await until(is_listed)
            (backend_id,) = await registered_ids(stack, host.url)
            chat = await meshgate(stack, "chat", "--route", "registered", "hi", key=ALICE_KEY)
            assert chat.status == 0, chat.err
            assert chat.out.startswith(digest("hi"))
            assert summary(chat)["backend"] == backend_id

            process.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(process.wait(), RUN_S) == 0
            # It deregistered on the way out: gone at once, not when the lease lapses.
            assert await registered_ids(stack, host.url) == []
            assert process.stderr is not None
            err = (await process.stderr.read()).decode()
            assert f"registered {backend_id} ({host.url}: hosted-model)" in err
            assert f"deregistered {backend_id}" in err
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()


async def test_connection_options_work_before_or_after_the_command(stack: Stack) -> None:
    options = ["--gateway", stack.gateway.address, "--key", ALICE_KEY]
    command = ["chat", "--route", "chat", "hi"]
    # No MESHGATE_* variables at all: the options alone say where and who.
    before, after = await asyncio.gather(
        meshgate_bare(stack, *options, *command), meshgate_bare(stack, *command, *options)
    )
    for run in (before, after):
        assert run.status == 0, run.err
        assert run.out.startswith(digest("hi"))


async def meshgate_bare(stack: Stack, *args: str) -> Run:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHGATE_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "router", *args, cwd=ROOT, env=env,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(process.communicate(), RUN_S)
    assert process.returncode is not None
    return Run(process.returncode, out.decode(), err.decode())
