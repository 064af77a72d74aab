"""Faults, cancellation and concurrency, observed through the simulator's own counters.

No sleeps: every wait is ``Simulator.wait_for`` (woken by counter changes)
or a read of the stream itself.
"""

from __future__ import annotations

import asyncio
import json
import random
from typing import Any

import aiohttp
import pytest

from backends.sim import LOREM, SimStats, Simulator, digest
from tests.sim.simtools import StartSim, parse

USER = [{"role": "user", "content": "hello there"}]


def chat(model: str = "sim-model", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": USER, **extra}


def balanced(s: SimStats) -> bool:
    return s.streams_started == (
        s.streams_completed + s.streams_aborted + s.streams_cut + s.streams_failed + s.active_streams
    )


async def read_events(response: aiohttp.ClientResponse, count: int) -> list[bytes]:
    """Read ``count`` SSE events off a live response."""
    events: list[bytes] = []
    buffer = b""
    while len(events) < count:
        line = await response.content.readline()
        assert line, "stream ended early"
        buffer += line
        if line == b"\n":
            events.append(buffer)
            buffer = b""
    return events


@pytest.mark.parametrize("how", ["config", "model"])
async def test_cut_after_breaks_the_stream(
    start_sim: StartSim, http: aiohttp.ClientSession, how: str
) -> None:
    sim = await start_sim(protocol="vllm", cut_after=2 if how == "config" else None)
    model = "sim-model" if how == "config" else "cut-2"
    received = b""
    with pytest.raises(aiohttp.ClientPayloadError):
        async with http.post(sim.url + "/chat/completions", json=chat(model, stream=True)) as response:
            assert response.status == 200
            async for piece in response.content.iter_any():
                received += piece
    chunks = [e.json() for e in parse(received)]
    assert [c["choices"][0]["delta"]["content"] for c in chunks] == ["", LOREM[0], " " + LOREM[1]]
    assert b"[DONE]" not in received
    stats = await sim.wait_for(lambda s: s.streams_cut == 1)
    assert stats.streams_aborted == 0 and stats.streams_completed == 0 and balanced(stats)


async def test_stalled_stream_then_client_disconnect_counts_an_abort(
    start_sim: StartSim, http: aiohttp.ClientSession
) -> None:
    sim = await start_sim(protocol="openai")
    async with http.post(sim.url + "/chat/completions", json=chat("stall-2", stream=True)) as response:
        events = await read_events(response, 3)  # role chunk + 2 tokens, then nothing
        assert b'"content":" ipsum"' in events[-1]
        assert sim.stats.active_streams == 1
        response.close()
    stats = await sim.wait_for(lambda s: s.streams_aborted == 1 and s.active_streams == 0)
    assert stats.streams_completed == 0 and balanced(stats)


async def test_disconnect_while_sleeping_between_tokens(
    start_sim: StartSim, http: aiohttp.ClientSession
) -> None:
    sim = await start_sim(protocol="anthropic", tokens=50)
    body = {"model": "slow-60000", "max_tokens": 100, "messages": USER, "stream": True}
    async with http.post(
        sim.origin + "/v1/messages", json=body, headers={"anthropic-version": "1"}
    ) as response:
        await read_events(response, 4)  # message_start, block start, ping, first token; next is a minute away
        response.close()
    stats = await sim.wait_for(lambda s: s.streams_aborted == 1 and s.active_streams == 0)
    assert balanced(stats)


async def test_disconnect_during_a_non_streamed_generation(
    start_sim: StartSim, http: aiohttp.ClientSession
) -> None:
    sim = await start_sim(protocol="cohere")

    async def call() -> None:
        async with http.post(sim.origin + "/v2/chat", json=chat("ttft-60000")) as response:
            await response.read()

    task = asyncio.create_task(call())
    await sim.wait_for(lambda s: s.active_streams == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    stats = await sim.wait_for(lambda s: s.streams_aborted == 1 and s.active_streams == 0)
    assert balanced(stats)


async def test_stop_ends_stalled_streams(start_sim: StartSim, http: aiohttp.ClientSession) -> None:
    sim = await start_sim(protocol="vllm", stall_after=0)
    with pytest.raises(aiohttp.ClientPayloadError):
        async with http.post(sim.url + "/chat/completions", json=chat(stream=True)) as response:
            await read_events(response, 1)  # the role chunk, then the stall
            await sim.stop()
            await response.read()
    assert sim.stats.streams_cut == 1 and sim.stats.active_streams == 0


async def test_fail_after_sends_an_in_band_error(start_sim: StartSim, http: aiohttp.ClientSession) -> None:
    sim = await start_sim(protocol="openai", fail_after=1)
    async with http.post(sim.url + "/chat/completions", json=chat(stream=True)) as response:
        events = parse(await response.read())
    assert "error" in events[-1].json()
    async with http.post(sim.url + "/chat/completions", json=chat()) as response:
        assert response.status == 500
    assert sim.stats.streams_failed == 2 and balanced(sim.stats)


async def test_concurrent_streams_are_counted_and_reported(
    start_sim: StartSim, http: aiohttp.ClientSession
) -> None:
    sim = await start_sim(protocol="vllm", models=["sim-llama"])
    responses = [
        await http.post(sim.url + "/chat/completions", json=chat("stall-1", stream=True)) for _ in range(8)
    ]
    await sim.wait_for(lambda s: s.active_streams == 8)
    async with http.get(sim.origin + "/metrics") as metrics:
        assert 'vllm:num_requests_running{model_name="sim-llama"} 8.0' in await metrics.text()
    async with http.get(sim.origin + "/load") as load:
        assert await load.json() == {"server_load": 8}
    for response in responses:
        response.close()
    stats = await sim.wait_for(lambda s: s.streams_aborted == 8 and s.active_streams == 0)
    assert balanced(stats)
    async with http.get(sim.origin + "/metrics") as metrics:
        text = await metrics.text()
    assert 'vllm:request_success_total{finished_reason="abort",model_name="sim-llama"} 8.0' in text


async def test_concurrent_streams_each_get_their_own_answer(
    start_sim: StartSim, http: aiohttp.ClientSession
) -> None:
    sim = await start_sim(protocol="vllm", answer="digest", tokens=4, itl_ms=1)

    async def one(i: int) -> tuple[str, str]:
        body = {"messages": [{"role": "user", "content": f"question {i}"}], "stream": True}
        async with http.post(sim.url + "/chat/completions", json=body) as response:
            chunks = [e.json() for e in parse(await response.read())[:-1]]
        return f"question {i}", "".join(c["choices"][0]["delta"]["content"] for c in chunks)

    answers = await asyncio.gather(*(one(i) for i in range(40)))
    for prompt, text in answers:
        assert text == digest(prompt) + " " + " ".join(LOREM[:3])
    stats = sim.stats
    assert stats.streams_completed == 40 and stats.active_streams == 0 and balanced(stats)


async def test_error_rate_is_seeded_and_changes_at_run_time(
    start_sim: StartSim, http: aiohttp.ClientSession
) -> None:
    sim = await start_sim(protocol="openai", error_status=503, error_rate=0.5, seed=7)
    statuses = []
    for _ in range(20):
        async with http.post(sim.url + "/chat/completions", json=chat()) as response:
            statuses.append(response.status)
    rng = random.Random(7)
    assert statuses == [503 if rng.random() < 0.5 else 200 for _ in range(20)]
    assert 0 < statuses.count(503) < 20
    sim.config.error_rate = 0.0
    async with http.post(sim.url + "/chat/completions", json=chat()) as response:
        assert response.status == 200
    sim.set(error_rate=1.0, error_status=429)
    async with http.post(sim.url + "/chat/completions", json=chat()) as response:
        assert response.status == 429
    with pytest.raises(ValueError, match="error_rate"):
        sim.set(error_rate=2.0)
    with pytest.raises(ValueError, match="unknown"):
        sim.set(colour="red")
    with pytest.raises(ValueError, match="protocol"):
        sim.set(protocol="cohere")
    assert sim.config.error_rate == 1.0


async def test_model_name_behaviours_override_the_flags(
    start_sim: StartSim, http: aiohttp.ClientSession
) -> None:
    sim = await start_sim(protocol="vllm", error_rate=1.0, error_status=500, models=["sim-llama"])
    async with http.post(sim.url + "/chat/completions", json=chat("sim-llama")) as response:
        assert response.status == 500
    async with http.post(sim.url + "/chat/completions", json=chat("error-404")) as response:
        assert response.status == 404
    sim.set(error_rate=0.0)
    async with http.post(sim.url + "/chat/completions", json=chat("tokens-3+slow-1")) as response:
        body = await response.json()
    assert body["choices"][0]["message"]["content"] == " ".join(LOREM[:3])
    assert body["model"] == "tokens-3+slow-1"


async def test_last_request_and_reset(start_sim: StartSim, http: aiohttp.ClientSession) -> None:
    sim = await start_sim(protocol="vllm", api_key="secret")
    headers = {"Authorization": "Bearer secret", "X-Trace": "t-1"}
    async with http.post(sim.url + "/chat/completions", json=chat(max_tokens=1), headers=headers) as response:
        assert response.status == 200
    async with http.get(sim.origin + "/sim/stats") as response:
        served = await response.json()
    assert served == json.loads(json.dumps(sim.stats.to_json()))
    last = served["last_request"]
    assert last["method"] == "POST" and last["path"] == "/v1/chat/completions"
    assert last["body"] == chat(max_tokens=1)
    assert last["headers"]["x-trace"] == "t-1" and "authorization" not in last["headers"]
    assert "secret" not in json.dumps(served)
    async with http.get(sim.origin + "/health"), http.get(sim.origin + "/metrics"):
        pass
    assert sim.stats.requests == 1  # health and metrics are not API requests
    sim.reset_stats()
    assert sim.stats == SimStats()


async def test_wait_for_times_out_with_the_counters(start_sim: StartSim) -> None:
    sim = await start_sim()
    with pytest.raises(TimeoutError, match="streams_aborted=0"):
        await sim.wait_for(lambda s: s.streams_aborted > 0, timeout_s=0.01)


async def test_start_stop_are_idempotent_and_report_the_url(start_sim: StartSim) -> None:
    sim = Simulator()
    await sim.stop()
    async with sim:
        assert sim.port > 0 and sim.url == f"http://127.0.0.1:{sim.port}/v1"
        with pytest.raises(RuntimeError):
            await sim.start()
    await sim.stop()
    for protocol in ("azure", "anthropic", "cohere"):
        other = await start_sim(protocol=protocol)
        assert other.url == other.origin == f"http://127.0.0.1:{other.port}"
