"""SIGTERM: stop accepting, let the stream in flight finish, exit 0."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import grpc
import yaml

from backends.sim import SimConfig, Simulator
from router._proto.meshgate.v1 import gateway_pb2 as pb
from router._proto.meshgate.v1 import gateway_pb2_grpc

from .conftest import ALICE_KEY, auth

READY = re.compile(rb"meshgate listening on (\S+)")


async def start_serve(config: Path, env: dict[str, str]) -> tuple[asyncio.subprocess.Process, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "router", "serve", "--config", str(config),
        env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert process.stderr is not None

    async def ready() -> str:
        assert process.stderr is not None
        while line := await process.stderr.readline():
            if match := READY.search(line):
                return match.group(1).decode()
        raise AssertionError(f"meshgate serve exited with {await process.wait()} before listening")

    return process, await asyncio.wait_for(ready(), timeout=60)


async def test_sigterm_lets_the_stream_in_flight_finish_then_exits_zero(tmp_path: Path) -> None:
    sim = Simulator(SimConfig(protocol="vllm", models=("sim-llama",), tokens=25, itl_ms=20))
    await sim.start()
    config = tmp_path / "meshgate.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "listen": "127.0.0.1:0",
                "metrics_listen": None,
                "state": f"sqlite:///{tmp_path}/state.db",
                "providers": {"sim": {"kind": "vllm", "base_url": sim.url}},
                "routes": {"chat": {"type": "chat", "targets": [{"provider": "sim", "model": "sim-llama"}],
                                    "allow": ["eng"]}},
                "teams": {"eng": {"groups": ["eng"]}},
                "keys": [{"name": "alice", "team": "eng", "secret": "${env:ALICE_KEY}"}],
                "server": {"grace_s": 30},
            }
        )
    )  # fmt: skip
    env = {**os.environ, "ALICE_KEY": ALICE_KEY, "MESHGATE_LOG_FORMAT": "json"}
    process, address = await start_serve(config, env)
    try:
        async with grpc.aio.insecure_channel(address) as channel:
            stub = gateway_pb2_grpc.GatewayStub(channel)
            call = stub.Chat(
                pb.ChatRequest(route="chat", messages=[pb.Message(role="user", content="a long answer")]),
                metadata=auth(ALICE_KEY),
            )
            first = await call.read()
            assert first.text
            process.send_signal(signal.SIGTERM)
            rest = []
            while (chunk := await call.read()) is not grpc.aio.EOF:
                rest.append(chunk)
        assert rest[-1].finish_reason == pb.FINISH_REASON_STOP
        assert rest[-1].usage.completion_tokens == 25
        assert await asyncio.wait_for(process.wait(), timeout=30) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await sim.stop()


async def test_an_invalid_config_lists_every_problem_and_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        "listen: nowhere\nproviders:\n  p: {kind: grpc-magic, base_url: ftp://x}\n"
        "routes:\n  r: {type: chat, targets: [{provider: missing, model: m}], allow: [eng]}\n"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "router", "serve", "--config", str(config),
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    _, stderr = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 2
    text = stderr.decode()
    for path in (
        "listen",
        "providers.p.kind",
        "providers.p.base_url",
        "routes.r.targets[0].provider",
        "routes.r.allow",
    ):
        assert path in text, text
