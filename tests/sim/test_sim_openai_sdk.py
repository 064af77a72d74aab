"""The OpenAI family (vllm, openai, azure) with the official ``openai`` SDK as the client."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator

import openai
import pytest

from backends.sim import LOREM, Simulator, digest
from tests.sim.simtools import StartSim

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello to the world"}]
PROMPT_TOKENS = 2 + 5 + 2  # words + one per message


def client(sim: Simulator, api_key: str = "sk-test") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=sim.url, api_key=api_key, max_retries=0)


def azure_client(sim: Simulator, api_key: str = "az-test") -> openai.AsyncAzureOpenAI:
    return openai.AsyncAzureOpenAI(
        azure_endpoint=sim.url, api_version="2024-10-21", api_key=api_key, max_retries=0
    )


@pytest.fixture(params=["vllm", "openai"])
async def oai(request: pytest.FixtureRequest, start_sim: StartSim) -> AsyncIterator[Simulator]:
    yield await start_sim(protocol=request.param, models=["sim-llama"], tokens=5)


async def test_streaming_chat_with_usage(oai: Simulator) -> None:
    async with client(oai) as c:
        stream = await c.chat.completions.create(
            model="sim-llama", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        text, finish, usage, model = "", None, None, None
        async for chunk in stream:
            model = chunk.model
            for choice in chunk.choices:
                text += choice.delta.content or ""
                finish = choice.finish_reason or finish
            if chunk.usage is not None:
                usage = chunk.usage
    assert text == " ".join(LOREM[:5])
    assert finish == "stop"
    assert model == "sim-llama"
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (
        PROMPT_TOKENS,
        5,
        PROMPT_TOKENS + 5,
    )
    assert oai.stats.streams_completed == 1


async def test_non_streaming_chat_and_max_tokens(oai: Simulator) -> None:
    async with client(oai) as c:
        done = await c.chat.completions.create(model="sim-llama", messages=MESSAGES)
        capped = await c.chat.completions.create(model="sim-llama", messages=MESSAGES, max_tokens=2)
    assert done.choices[0].message.content == " ".join(LOREM[:5])
    assert done.choices[0].finish_reason == "stop"
    assert done.usage is not None and done.usage.completion_tokens == 5
    assert capped.choices[0].message.content == " ".join(LOREM[:2])
    assert capped.choices[0].finish_reason == "length"


async def test_completions_stream_and_whole(oai: Simulator) -> None:
    async with client(oai) as c:
        stream = await c.completions.create(
            model="sim-llama", prompt="Once upon a time", max_tokens=3, stream=True
        )
        pieces = [chunk.choices[0] async for chunk in stream if chunk.choices]
        whole = await c.completions.create(model="sim-llama", prompt="Once upon a time")
    assert "".join(p.text for p in pieces) == " ".join(LOREM[:3])
    assert pieces[-1].finish_reason == "length"
    assert whole.choices[0].text == " ".join(LOREM[:5])
    assert whole.usage is not None and whole.usage.prompt_tokens == 4 + 1


async def test_embeddings_float_and_base64(oai: Simulator) -> None:
    async with client(oai) as c:
        default = await c.embeddings.create(model="sim-llama", input=["alpha", "beta"])
        floats = await c.embeddings.create(model="sim-llama", input="alpha", encoding_format="float")
    assert [d.index for d in default.data] == [0, 1]
    first = default.data[0].embedding
    assert len(first) == 384
    assert math.isclose(sum(x * x for x in first), 1.0, rel_tol=1e-4)
    assert first == pytest.approx(floats.data[0].embedding, rel=1e-6)  # base64 is float32
    assert default.data[1].embedding != first
    assert default.usage.prompt_tokens == 4


async def test_digest_answer_tells_prompts_apart(start_sim: StartSim) -> None:
    sim = await start_sim(protocol="openai", answer="digest", tokens=3)
    async with client(sim) as c:
        one = await c.chat.completions.create(
            model="sim-model", messages=[{"role": "user", "content": "one"}]
        )
        two = await c.chat.completions.create(
            model="sim-model", messages=[{"role": "user", "content": "two"}]
        )
    assert one.choices[0].message.content == f"{digest('one')} {LOREM[0]} {LOREM[1]}"
    assert two.choices[0].message.content.startswith(digest("two"))


async def test_wrong_key_raises_authentication_error(start_sim: StartSim) -> None:
    for protocol in ("vllm", "openai"):
        sim = await start_sim(protocol=protocol, api_key="right")
        async with client(sim, api_key="wrong") as c:
            with pytest.raises(openai.AuthenticationError):
                await c.chat.completions.create(model="sim-model", messages=MESSAGES)
        async with client(sim, api_key="right") as c:
            await c.chat.completions.create(model="sim-model", messages=MESSAGES)
        assert sim.stats.errors == 1


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (429, openai.RateLimitError),
        (500, openai.InternalServerError),
        (503, openai.InternalServerError),
        (400, openai.BadRequestError),
    ],
)
async def test_injected_errors_raise_the_sdk_class(
    start_sim: StartSim, status: int, error: type[Exception]
) -> None:
    sim = await start_sim(protocol="openai", error_status=status, error_rate=1.0)
    async with client(sim) as c:
        with pytest.raises(error) as caught:
            await c.chat.completions.create(model="sim-model", messages=MESSAGES, stream=True)
    assert isinstance(caught.value, openai.APIStatusError)
    assert caught.value.status_code == status
    if status == 429:
        assert caught.value.response.headers["retry-after"] == "1"
    assert sim.stats.streams_started == 0 and sim.stats.errors == 1


async def test_error_model_names_and_unknown_models(oai: Simulator) -> None:
    async with client(oai) as c:
        with pytest.raises(openai.RateLimitError):
            await c.chat.completions.create(model="error-429", messages=MESSAGES)
        with pytest.raises(openai.InternalServerError):
            await c.embeddings.create(model="error-503", input="x")
        with pytest.raises(openai.NotFoundError):
            await c.chat.completions.create(model="no-such-model", messages=MESSAGES)


async def test_in_band_error_raises_api_error(oai: Simulator) -> None:
    async with client(oai) as c:
        stream = await c.chat.completions.create(model="fail-2", messages=MESSAGES, stream=True)
        received = ""
        with pytest.raises(openai.APIError):
            async for chunk in stream:
                received += "".join(ch.delta.content or "" for ch in chunk.choices)
    assert received == " ".join(LOREM[:2])
    assert oai.stats.streams_failed == 1


async def test_azure_chat_stream_non_stream_and_embeddings(start_sim: StartSim) -> None:
    sim = await start_sim(protocol="azure", models=["gpt-4o-prod"], api_key="az-key", tokens=4)
    async with azure_client(sim, api_key="az-key") as c:
        stream = await c.chat.completions.create(
            model="gpt-4o-prod", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
        )
        chunks = [chunk async for chunk in stream]
        whole = await c.chat.completions.create(model="gpt-4o-prod", messages=MESSAGES, max_tokens=2)
        vectors = await c.embeddings.create(model="gpt-4o-prod", input="hello")
    assert chunks[0].choices == []  # the prompt-filter chunk
    text = "".join(ch.delta.content or "" for chunk in chunks for ch in chunk.choices)
    assert text == " ".join(LOREM[:4])
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 4
    assert whole.choices[0].message.content == " ".join(LOREM[:2])
    assert whole.choices[0].finish_reason == "length"
    assert len(vectors.data[0].embedding) == 384
    last = sim.stats.last_request
    assert last is not None
    assert last["path"] == "/openai/deployments/gpt-4o-prod/embeddings"
    assert last["query"] == {"api-version": "2024-10-21"}
    assert "api-key" not in last["headers"]


async def test_azure_errors(start_sim: StartSim) -> None:
    sim = await start_sim(protocol="azure", models=["dep"], api_key="az-key")
    async with azure_client(sim, api_key="bad") as c:
        with pytest.raises(openai.AuthenticationError):
            await c.chat.completions.create(model="dep", messages=MESSAGES)
    async with azure_client(sim, api_key="az-key") as c:
        with pytest.raises(openai.NotFoundError) as missing:
            await c.chat.completions.create(model="other", messages=MESSAGES)
        with pytest.raises(openai.RateLimitError) as limited:
            await c.chat.completions.create(model="error-429", messages=MESSAGES)
    assert missing.value.code == "DeploymentNotFound"
    assert limited.value.response.headers["retry-after-ms"] == "1000"
