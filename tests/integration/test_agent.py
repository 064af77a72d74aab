"""The registration agent against the real gateway and a real vLLM simulator,
and the simulator's ``--register`` flag as a separate process.

Heartbeats are driven through the agent's ``sleep`` hook: the test lets each
wait end when it chooses, so no test waits out a real heartbeat interval.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from router.agent import RegistrationAgent
from router.client import AdminClient, BackendInfo, GatewayClient
from router.domain import BackendLoad
from router.errors import PermissionDenied, Unauthenticated, Unavailable

from .conftest import ADMIN_KEY, ALICE_KEY, Stack
from .test_client import WAIT_S, hosted
from .test_streaming import digest

ROOT = Path(__file__).resolve().parents[2]
LISTENING = re.compile(rb"meshgate-sim listening on (http://\S+) protocol=vllm")
POLL_S = 0.1  # between ListBackends calls while waiting for another process


class Clock:
    """The agent's ``sleep``: each wait lasts until the test ends it with ``step``."""

    def __init__(self) -> None:
        self.asleep: asyncio.Queue[float] = asyncio.Queue()
        self._ticks: asyncio.Queue[None] = asyncio.Queue()

    async def sleep(self, delay_s: float) -> None:
        await self.asleep.put(delay_s)
        await self._ticks.get()

    async def first(self) -> float:
        """The delay of the agent's first wait, once it waits."""
        return await asyncio.wait_for(self.asleep.get(), WAIT_S)

    async def step(self) -> float:
        """End the current wait; return the delay of the next one, which the
        agent asks for only after the heartbeat in between has finished."""
        self._ticks.put_nowait(None)
        return await asyncio.wait_for(self.asleep.get(), WAIT_S)


def admin(stack: Stack) -> AdminClient:
    return AdminClient(stack.gateway.address, ADMIN_KEY)


async def listed(stack: Stack, url: str) -> BackendInfo | None:
    async with admin(stack) as control:
        return next((b for b in await control.list_backends() if b.url == url), None)


async def until(check: Callable[[], Awaitable[bool]]) -> None:
    """Poll ``check`` until it holds (bounded by ``WAIT_S``): for a change made by another process."""

    async def poll() -> None:
        while not await check():
            await asyncio.sleep(POLL_S)

    await asyncio.wait_for(poll(), WAIT_S)


async def chat_registered(stack: Stack, prompt: str) -> tuple[str, str]:
    async with GatewayClient(stack.gateway.address, ALICE_KEY) as client:
        answer = await client.chat_text("registered", [("user", prompt)])
    return answer.text, answer.backend


async def test_the_agent_registers_reports_load_serves_and_deregisters(stack: Stack) -> None:
    clock = Clock()
    async with hosted(stack, answer="digest", tokens=4, waiting_requests=2, kv_cache_usage=0.3) as host:
        agent = RegistrationAgent(
            stack.gateway.address,
            ADMIN_KEY,
            host.url,
            ["hosted-model"],
            labels={"gpu": "h100"},
            lease_ttl_s=30,
            sleep=clock.sleep,
        )
        try:
            await agent.start()
            backend_id = agent.backend_id
            assert backend_id is not None and backend_id.startswith("reg-")
            mine = await listed(stack, host.url)
            assert mine is not None
            assert (mine.id, mine.models, mine.protocol, dict(mine.labels)) == (
                backend_id,
                ("hosted-model",),
                "vllm",
                {"gpu": "h100"},
            )
            assert mine.load == BackendLoad()  # nothing reported before the first heartbeat

            assert await clock.first() == 10.0  # a third of the lease
            assert await clock.step() == 10.0
            mine = await listed(stack, host.url)
            assert mine is not None and mine.load is not None
            assert (mine.load.running_requests, mine.load.waiting_requests) == (0, 2)
            assert mine.load.kv_cache_usage == pytest.approx(0.3)

            text, backend = await chat_registered(stack, "hello host")
            assert (text.split()[0], backend) == (digest("hello host"), backend_id)

            # The load is read live: a generation in progress on the host shows as running.
            host.set(stall_after=1)
            async with (
                GatewayClient(stack.gateway.address, ALICE_KEY) as client,
                client.chat("registered", [("user", "stay")]) as stream,
            ):
                assert (await anext(stream)).text
                await clock.step()
                mine = await listed(stack, host.url)
                assert mine is not None and mine.load is not None
                assert mine.load.running_requests == 1
            host.set(stall_after=None)

            await agent.stop()
            assert await listed(stack, host.url) is None
            with pytest.raises(Unavailable):
                await chat_registered(stack, "anyone there?")
            await agent.stop()  # idempotent
            await agent.wait()  # heartbeats have ended
        finally:
            await agent.stop()


async def test_a_lapsed_lease_is_renewed_by_registering_again(stack: Stack) -> None:
    clock = Clock()
    async with hosted(stack, waiting_requests=2, kv_cache_usage=0.3) as host:
        agent = RegistrationAgent(
            stack.gateway.address, ADMIN_KEY, host.url, ["hosted-model"], sleep=clock.sleep
        )
        try:
            await agent.start()
            await clock.first()
            async with admin(stack) as control:
                assert agent.backend_id is not None
                assert await control.deregister_backend(agent.backend_id)  # behind the agent's back
            assert await listed(stack, host.url) is None

            assert await clock.step() == 0.0  # the heartbeat found no lease: register at once
            assert await listed(stack, host.url) is None
            assert await clock.step() == 10.0  # registered again, back to the heartbeat interval
            again = await listed(stack, host.url)
            assert again is not None and again.id == agent.backend_id
            _, backend = await chat_registered(stack, "back again")
            assert backend == agent.backend_id

            await clock.step()
            again = await listed(stack, host.url)
            assert again is not None and again.load is not None
            assert again.load == BackendLoad(0, 2, again.load.kv_cache_usage)
            assert again.load.kv_cache_usage == pytest.approx(0.3)
        finally:
            await agent.stop()
        assert await listed(stack, host.url) is None


@pytest.mark.parametrize(
    ("key", "error"), [("mg-not-a-real-key", Unauthenticated), (ALICE_KEY, PermissionDenied)]
)
async def test_start_raises_the_refusal_and_registers_nothing(
    stack: Stack, key: str, error: type[Exception]
) -> None:
    async with hosted(stack) as host:
        agent = RegistrationAgent(stack.gateway.address, key, host.url, ["hosted-model"])
        with pytest.raises(error):
            await agent.start()
        assert await listed(stack, host.url) is None
        await agent.stop()  # harmless after a refused start


async def test_the_simulators_register_flag_joins_and_leaves_the_pool(stack: Stack) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHGATE_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "backends.sim", "--protocol", "vllm", "--port", "0",
        "--model", "hosted-model", "--answer", "digest", "--tokens", "4",
        "--register", stack.gateway.address, "--admin-key", ADMIN_KEY,
        cwd=ROOT, env=env, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        url = await asyncio.wait_for(sim_url(process), 60) + "/v1"
        await until(lambda: is_listed(stack, url))
        mine = await listed(stack, url)
        assert mine is not None and mine.models == ("hosted-model",)
        text, backend = await chat_registered(stack, "from another process")
        assert (text.split()[0], backend) == (digest("from another process"), mine.id)

        process.send_signal(signal.SIGTERM)
        await until(lambda: is_gone(stack, url))
        assert await asyncio.wait_for(process.wait(), WAIT_S) == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        if process.returncode != 0 and process.stderr is not None:
            print((await process.stderr.read()).decode(errors="replace"), file=sys.stderr)


async def sim_url(process: asyncio.subprocess.Process) -> str:
    assert process.stdout is not None
    async for line in lines(process.stdout):
        if match := LISTENING.search(line):
            return match.group(1).decode()
    raise AssertionError(f"the simulator exited with {await process.wait()} before listening")


async def lines(stream: asyncio.StreamReader) -> AsyncIterator[bytes]:
    while line := await stream.readline():
        yield line


async def is_listed(stack: Stack, url: str) -> bool:
    return await listed(stack, url) is not None


async def is_gone(stack: Stack, url: str) -> bool:
    return await listed(stack, url) is None
