"""Every adapter against the simulator playing its protocol on loopback: the
answer, finish and usage; each HTTP error status; a cut; closing a stalled
stream (the simulator sees the abort); embeddings, health and load."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from backends.base import PROTOCOLS, Backend, ProviderSettings
from backends.registry import create_backend
from backends.sim import LOREM, SimConfig, Simulator
from router.domain import BackendLoad, ChatRequest, CompletionRequest, Message, Sampling
from router.errors import (
    UpstreamAuthFailed,
    UpstreamBadRequest,
    UpstreamError,
    UpstreamModelNotFound,
    UpstreamRateLimited,
    UpstreamStreamBroken,
    UpstreamUnavailable,
)
from router.secrets import SecretRef
from tests.backends.support import KEY, collect

REQUEST = ChatRequest(
    route="chat",
    messages=(Message("system", "Be brief."), Message("user", "Say hello to the world.")),
)
PROMPT_TOKENS = 2 + 5 + 2  # the simulator counts words, plus one per message
ANSWER_16 = " ".join(LOREM[:16])
EMBEDDERS = ("vllm", "openai", "azure")


@pytest.fixture(params=PROTOCOLS)
async def sim(request: pytest.FixtureRequest) -> AsyncIterator[Simulator]:
    simulator = Simulator(SimConfig(protocol=request.param, models=("m",), tokens=16, api_key=KEY))
    await simulator.start()
    yield simulator
    await simulator.stop()


@pytest.fixture
async def backend(sim: Simulator) -> AsyncIterator[Backend]:
    made = create_backend("sim-" + sim.config.protocol, settings(sim))
    yield made
    await made.aclose()


def settings(sim: Simulator, **overrides: Any) -> ProviderSettings:
    values: dict[str, Any] = {"kind": sim.config.protocol, "base_url": sim.url, "api_key": SecretRef(KEY)}
    values.update(overrides)
    return ProviderSettings(**values)


async def test_streamed_answer_finish_and_usage(sim: Simulator, backend: Backend) -> None:
    chunks = await collect(backend.stream_chat("m", REQUEST))
    assert "".join(c.text for c in chunks) == ANSWER_16
    assert all(c.text and c.finish_reason is None for c in chunks[:-1])
    final = chunks[-1]
    assert final.finish_reason == "stop"
    assert final.usage is not None
    assert (final.usage.prompt_tokens, final.usage.completion_tokens) == (PROMPT_TOKENS, 16)
    assert sim.stats.streams_completed == 1


async def test_max_tokens_and_completion(backend: Backend) -> None:
    request = CompletionRequest(route="c", prompt="Once upon a time", sampling=Sampling(max_tokens=4))
    chunks = await collect(backend.stream_completion("m", request))
    assert "".join(c.text for c in chunks) == " ".join(LOREM[:4])
    assert chunks[-1].finish_reason == "length"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4


async def test_stop_sequence_is_a_stop_finish(backend: Backend) -> None:
    request = ChatRequest(route="c", messages=REQUEST.messages, sampling=Sampling(stop=(" sit",)))
    chunks = await collect(backend.stream_chat("m", request))
    assert "".join(c.text for c in chunks) == "Lorem ipsum dolor"
    assert chunks[-1].finish_reason == "stop"


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, UpstreamBadRequest),
        (401, UpstreamAuthFailed),
        (403, UpstreamAuthFailed),
        (404, UpstreamModelNotFound),
        (429, UpstreamRateLimited),
        (500, UpstreamUnavailable),
        (503, UpstreamUnavailable),
        (529, UpstreamUnavailable),
    ],
)
async def test_error_statuses(backend: Backend, status: int, cls: type[UpstreamError]) -> None:
    with pytest.raises(UpstreamError) as caught:
        await collect(backend.stream_chat(f"error-{status}", REQUEST))
    error = caught.value
    assert type(error) is cls and error.http_status == status
    assert error.message.startswith(f'provider "{backend.name}" ') and KEY not in error.message
    if status == 429:
        assert error.retry_after_s == 1.0


async def test_wrong_key_is_auth_failed_without_the_key(sim: Simulator) -> None:
    backend = create_backend("p", settings(sim, api_key=SecretRef("sk-wrong-key-123456")))
    with pytest.raises(UpstreamAuthFailed, match="check the api_key configured for it") as caught:
        await collect(backend.stream_chat("m", REQUEST))
    assert "sk-wrong-key-123456" not in str(caught.value)
    await backend.aclose()


async def test_unknown_model_is_model_not_found(backend: Backend) -> None:
    with pytest.raises(UpstreamModelNotFound, match="check the route's model"):
        await collect(backend.stream_chat("no-such-model", REQUEST))


async def test_cut_mid_stream_is_stream_broken(sim: Simulator, backend: Backend) -> None:
    with pytest.raises(UpstreamStreamBroken, match="broke"):
        await collect(backend.stream_chat("cut-3", REQUEST))
    await sim.wait_for(lambda s: s.streams_cut == 1, timeout_s=10)


async def test_in_band_error_before_text_is_retryable(backend: Backend) -> None:
    with pytest.raises(UpstreamError) as caught:
        await collect(backend.stream_chat("fail-0", REQUEST))
    assert caught.value.retryable and "in its stream" in caught.value.message


async def test_aclose_of_a_stalled_stream_aborts_it_upstream(sim: Simulator, backend: Backend) -> None:
    chunks = backend.stream_chat("stall-2", REQUEST)
    first = await anext(chunks)
    assert first.text and first.finish_reason is None
    await sim.wait_for(lambda s: s.active_streams == 1, timeout_s=10)
    await chunks.aclose()  # type: ignore[attr-defined]
    stats = await sim.wait_for(lambda s: s.streams_aborted == 1, timeout_s=10)
    assert stats.active_streams == 0


async def test_cancel_of_a_stalled_stream_aborts_it_upstream(sim: Simulator, backend: Backend) -> None:
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in backend.stream_chat("stall-2", REQUEST):
            first.set()

    task = asyncio.create_task(consume())
    await first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await sim.wait_for(lambda s: s.streams_aborted == 1 and s.active_streams == 0, timeout_s=10)


@pytest.mark.parametrize("protocol", EMBEDDERS)
async def test_embeddings(protocol: str) -> None:
    async with Simulator(SimConfig(protocol=protocol, models=("m",), api_key=KEY)) as sim:
        backend = create_backend("emb", settings(sim))
        result = await backend.embed("m", ["hello world", "bye"])
        assert len(result.vectors) == 2 and all(len(v) == sim.config.embedding_dim for v in result.vectors)
        assert result.usage.prompt_tokens > 0
        again = await backend.embed("m", ["bye"])
        assert again.vectors[0] == result.vectors[1]  # the simulator's vectors depend on the text only
        await backend.aclose()


async def test_health(sim: Simulator, backend: Backend) -> None:
    if sim.config.protocol == "vllm":
        sim.set(waiting_requests=3, kv_cache_usage=0.5)
    health = await backend.health()
    assert health.ok, health.detail
    if sim.config.protocol == "vllm":
        assert health.load == BackendLoad(running_requests=0, waiting_requests=3, kv_cache_usage=0.5)
    await sim.stop()
    down = await backend.health()
    assert not down.ok and "unreachable" in down.detail


async def test_azure_url_api_version_and_key() -> None:
    async with Simulator(SimConfig(protocol="azure", models=("deploy",), api_key=KEY)) as sim:
        backend = create_backend("azure", settings(sim, api_version="2025-01-01-preview"))
        await collect(backend.stream_chat("deploy", REQUEST))  # the simulator checks the api-key header
        seen = sim.stats.last_request
        assert seen is not None
        assert seen["path"] == "/openai/deployments/deploy/chat/completions"
        assert seen["query"] == {"api-version": "2025-01-01-preview"}
        await backend.aclose()
