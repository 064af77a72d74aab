"""The OpenAI-compatible adapter (openai, vllm, azure) against scripted upstreams:
exact wire bytes, request mapping, coalescing, finish/usage, mid-stream failures,
closing, keep-alive, embeddings and health."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from backends.openai import OpenAIBackend, parse_vllm_load
from router.domain import BackendLoad, ChatRequest, Chunk, CompletionRequest, Message, Sampling, Usage
from router.errors import (
    UpstreamBadRequest,
    UpstreamStreamBroken,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from tests.backends.support import (
    CUT,
    EOF,
    KEY,
    RESET,
    STALL,
    FakeUpstream,
    Wait,
    collect,
    reply,
    settings_for,
    sse,
    stream,
)

REQUEST = ChatRequest(
    route="chat",
    messages=(Message("developer", "Be brief."), Message("user", "Say hello.")),
    sampling=Sampling(max_tokens=32, temperature=0.5, top_p=0.9, stop=("\n\n",), seed=7),
)

# vLLM's exact framing (wire-protocols.md §1.3): compact JSON, role chunk, usage chunk, [DONE].
VLLM_ROLE = (
    b'data: {"id":"chatcmpl-8b1","object":"chat.completion.chunk","created":1767225600,'
    b'"model":"Qwen/Qwen3-0.6B","choices":[{"index":0,"delta":{"role":"assistant","content":"",'
    b'"reasoning_content":null},"logprobs":null,"finish_reason":null}],"prompt_token_ids":null}\n\n'
)


def vllm_token(text: str, finish: str | None = None) -> bytes:
    choice: dict[str, Any] = {"index": 0, "delta": {"content": text, "reasoning_content": None}}
    choice.update({"logprobs": None, "finish_reason": finish, "token_ids": None})
    if finish:
        choice["stop_reason"] = None
    return sse({"id": "chatcmpl-8b1", "object": "chat.completion.chunk", "created": 1, "choices": [choice]})


VLLM_USAGE = (
    b'data: {"id":"chatcmpl-8b1","object":"chat.completion.chunk","created":1767225600,'
    b'"model":"Qwen/Qwen3-0.6B","choices":[],"usage":{"prompt_tokens":9,"total_tokens":11,'
    b'"completion_tokens":2}}\n\n'
)
DONE = b"data: [DONE]\n\n"
FINAL = Chunk("", "stop", Usage(9, 2, 0), "Qwen/Qwen3-0.6B")


def vllm(url: str, **overrides: Any) -> OpenAIBackend:
    return OpenAIBackend("local-vllm", settings_for("vllm", url + "/v1", **overrides))


async def test_vllm_exact_stream_gives_text_then_final_chunk_with_finish_usage_and_model(
    upstream: FakeUpstream,
) -> None:
    go = Wait()
    upstream.handler = stream(VLLM_ROLE + vllm_token("Hello"), go, vllm_token("!", "stop"), VLLM_USAGE, DONE)
    backend = vllm(upstream.url)
    chunks = backend.stream_chat("Qwen/Qwen3-0.6B", REQUEST)
    assert await anext(chunks) == Chunk("Hello")
    go.set()
    assert await collect(chunks) == [Chunk("!", "stop", Usage(9, 2, 0), "Qwen/Qwen3-0.6B")]
    await backend.aclose()


async def test_vllm_request_mapping(upstream: FakeUpstream) -> None:
    upstream.handler = stream(VLLM_ROLE, vllm_token("Hi", "stop"), VLLM_USAGE, DONE)
    backend = vllm(upstream.url)
    await collect(backend.stream_chat("Qwen/Qwen3-0.6B", REQUEST))
    seen = upstream.last
    assert (seen.method, seen.path) == ("POST", "/v1/chat/completions")
    assert seen.headers["authorization"] == f"Bearer {KEY}"
    assert seen.headers["accept"] == "text/event-stream"
    assert seen.body == {
        "model": "Qwen/Qwen3-0.6B",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}],
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 32,
        "temperature": 0.5,
        "top_p": 0.9,
        "stop": ["\n\n"],
        "seed": 7,
    }
    await backend.aclose()


async def test_vllm_without_key_sends_no_authorization(upstream: FakeUpstream) -> None:
    upstream.handler = stream(vllm_token("Hi", "stop"), DONE)
    backend = vllm(upstream.url, api_key=None)
    await collect(backend.stream_chat("m", REQUEST))
    assert "authorization" not in upstream.last.headers
    await backend.aclose()


async def test_openai_kind_sends_max_completion_tokens_and_keeps_developer(upstream: FakeUpstream) -> None:
    upstream.handler = stream(vllm_token("Hi", "stop"), DONE)
    backend = OpenAIBackend("openai", settings_for("openai", upstream.url + "/v1"))
    await collect(backend.stream_chat("gpt-4o-mini", REQUEST))
    body = upstream.last.body
    assert body["max_completion_tokens"] == 32 and "max_tokens" not in body
    assert body["messages"][0]["role"] == "developer"
    assert body["stream_options"] == {"include_usage": True}
    assert upstream.last.headers["authorization"] == f"Bearer {KEY}"
    await backend.aclose()


async def test_reads_already_buffered_are_coalesced_into_one_chunk(upstream: FakeUpstream) -> None:
    go = Wait()
    three = vllm_token("a") + vllm_token("b") + vllm_token("c")  # one write: one network read
    upstream.handler = stream(VLLM_ROLE + three, go, vllm_token("", "stop") + VLLM_USAGE + DONE)
    backend = vllm(upstream.url)
    chunks = backend.stream_chat("m", REQUEST)
    assert await anext(chunks) == Chunk("abc")
    go.set()
    assert await collect(chunks) == [FINAL]
    await backend.aclose()


async def test_crlf_framing_and_data_without_space(upstream: FakeUpstream) -> None:
    body = (
        b'data:{"model":"m","choices":[{"index":0,"delta":{"content":"Hel"}}]}\r\n\r\n'
        b": keep-alive comment\r\n\r\n"
        b'data: {"choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"length"}]}\r\n\r\n'
        b"data: [DONE]\r\n\r\n"
    )
    upstream.handler = stream(body[:37], body[37:90], body[90:])  # split inside events and CRLFs
    backend = vllm(upstream.url)
    chunks = await collect(backend.stream_chat("m", REQUEST))
    assert "".join(c.text for c in chunks) == "Hello"
    assert chunks[-1].finish_reason == "length" and chunks[-1].model == "m"
    assert chunks[-1].usage is None  # the server reported none
    await backend.aclose()


async def test_completion_stream(upstream: FakeUpstream) -> None:
    events: list[Any] = [
        {"object": "text_completion", "model": "m", "choices": [{"index": 0, "text": "Once"}]},
        {"object": "text_completion", "choices": [{"index": 0, "text": " upon", "finish_reason": "length"}]},
        {"choices": [], "usage": {"prompt_tokens": 4, "completion_tokens": 2, "total_tokens": 6}},
        "[DONE]",
    ]
    upstream.handler = stream(sse(*events))
    backend = vllm(upstream.url)
    request = CompletionRequest(route="c", prompt="Tell me", sampling=Sampling(max_tokens=2))
    chunks = await collect(backend.stream_completion("m", request))
    assert chunks == [Chunk("Once upon", "length", Usage(4, 2, 0), "m")]
    assert upstream.last.path == "/v1/completions"
    assert upstream.last.body == {
        "model": "m",
        "prompt": "Tell me",
        "stream": True,
        "stream_options": {"include_usage": True},
        "max_tokens": 2,
    }
    await backend.aclose()


async def test_azure_url_api_key_empty_first_chunk_and_content_filter(upstream: FakeUpstream) -> None:
    filters = {"hate": {"filtered": False, "severity": "safe"}}
    events: list[Any] = [
        {"id": "", "model": "", "choices": [], "prompt_filter_results": [{"prompt_index": 0}]},
        {
            "model": "gpt-4o",
            "choices": [{"index": 0, "delta": {"content": "Hi"}, "content_filter_results": filters}],
        },
        {"model": "gpt-4o", "choices": [{"index": 0, "delta": {}, "finish_reason": "content_filter"}]},
        {"model": "gpt-4o", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 1}},
        "[DONE]",
    ]
    upstream.handler = stream(sse(*events))
    backend = OpenAIBackend("azure-east", settings_for("azure", upstream.url, api_version="2024-10-21"))
    chunks = await collect(backend.stream_chat("my-deployment", REQUEST))
    assert chunks == [Chunk("Hi", "content_filter", Usage(5, 1, 0), "gpt-4o")]
    seen = upstream.last
    assert seen.path == "/openai/deployments/my-deployment/chat/completions"
    assert seen.query == {"api-version": "2024-10-21"}
    assert seen.headers["api-key"] == KEY and "authorization" not in seen.headers
    assert seen.body["messages"][0]["role"] == "system" and seen.body["max_tokens"] == 32
    await backend.aclose()


async def test_cached_prompt_tokens_and_tool_calls_finish(upstream: FakeUpstream) -> None:
    usage = {"prompt_tokens": 100, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 64}}
    events: list[Any] = [
        {"model": "m", "choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": "tool_calls"}]},
        {"choices": [], "usage": usage},
        "[DONE]",
    ]
    upstream.handler = stream(sse(*events))
    backend = vllm(upstream.url)
    assert await collect(backend.stream_chat("m", REQUEST)) == [
        Chunk("ok", "tool_calls", Usage(100, 3, 64), "m")
    ]
    await backend.aclose()


async def test_end_after_finish_without_done_is_accepted(upstream: FakeUpstream) -> None:
    upstream.handler = stream(VLLM_ROLE, vllm_token("Hi", "stop"), VLLM_USAGE, EOF)
    backend = vllm(upstream.url)
    chunks = await collect(backend.stream_chat("m", REQUEST))
    assert chunks[-1] == Chunk("Hi", "stop", Usage(9, 2, 0), "Qwen/Qwen3-0.6B")
    await backend.aclose()


async def test_end_without_finish_fails_over_before_tokens_and_is_broken_after(
    upstream: FakeUpstream,
) -> None:
    backend = vllm(upstream.url)
    upstream.handler = stream(VLLM_ROLE, EOF)
    with pytest.raises(
        UpstreamUnavailable, match='provider "local-vllm" closed the stream without any text or finish'
    ):
        await collect(backend.stream_chat("m", REQUEST))

    go = Wait()
    upstream.handler = stream(VLLM_ROLE + vllm_token("Hi"), go, DONE)
    chunks = backend.stream_chat("m", REQUEST)
    assert await anext(chunks) == Chunk("Hi")
    go.set()
    with pytest.raises(UpstreamStreamBroken, match="sent its terminator without a finish reason, after part"):
        await anext(chunks)
    await backend.aclose()


async def test_vllm_abort_is_stream_broken(upstream: FakeUpstream) -> None:
    go = Wait()
    upstream.handler = stream(VLLM_ROLE + vllm_token("Hi"), go, vllm_token("", "abort"), DONE)
    backend = vllm(upstream.url)
    chunks = backend.stream_chat("m", REQUEST)
    assert await anext(chunks) == Chunk("Hi")
    go.set()
    with pytest.raises(UpstreamStreamBroken, match='"local-vllm" aborted the request'):
        await anext(chunks)
    await backend.aclose()


VLLM_ERROR_400 = (
    b'data: {"error": {"message": "This model\'s maximum context length is 8192 tokens.", '
    b'"type": "BadRequestError", "param": null, "code": 400}}\n\n'
)
VLLM_ERROR_500 = (
    b'data: {"error": {"message": "engine died", "type": "InternalServerError", "code": 500}}\n\n'
)


async def test_in_band_error_before_tokens_keeps_its_class(upstream: FakeUpstream) -> None:
    backend = vllm(upstream.url)
    upstream.handler = stream(VLLM_ROLE, VLLM_ERROR_400, DONE)
    with pytest.raises(UpstreamBadRequest, match="maximum context length") as caught:
        await collect(backend.stream_chat("m", REQUEST))
    assert caught.value.http_status == 400 and caught.value.provider == "local-vllm"

    upstream.handler = stream(VLLM_ROLE, VLLM_ERROR_500, DONE)
    with pytest.raises(UpstreamUnavailable, match="engine died") as failed:
        await collect(backend.stream_chat("m", REQUEST))
    assert failed.value.retryable
    await backend.aclose()


async def test_in_band_error_after_tokens_is_final(upstream: FakeUpstream) -> None:
    backend = vllm(upstream.url)
    for error, expected in ((VLLM_ERROR_500, UpstreamStreamBroken), (VLLM_ERROR_400, UpstreamBadRequest)):
        go = Wait()
        upstream.handler = stream(VLLM_ROLE + vllm_token("Hi"), go, error, DONE)
        chunks = backend.stream_chat("m", REQUEST)
        assert await anext(chunks) == Chunk("Hi")
        go.set()
        with pytest.raises(expected) as caught:
            await anext(chunks)
        assert not caught.value.retryable
    await backend.aclose()


async def test_malformed_event_before_tokens_is_unavailable(upstream: FakeUpstream) -> None:
    upstream.handler = stream(b"data: {not json}\n\n")
    backend = vllm(upstream.url)
    with pytest.raises(UpstreamUnavailable, match='"local-vllm" sent a malformed event'):
        await collect(backend.stream_chat("m", REQUEST))
    await backend.aclose()


@pytest.mark.parametrize("how", [CUT, RESET])
async def test_connection_lost_mid_stream_is_stream_broken(upstream: FakeUpstream, how: str) -> None:
    go = Wait()
    upstream.handler = stream(VLLM_ROLE + vllm_token("Hi"), go, how)
    backend = vllm(upstream.url)
    chunks = backend.stream_chat("m", REQUEST)
    assert await anext(chunks) == Chunk("Hi")
    go.set()
    with pytest.raises(UpstreamStreamBroken, match='the stream from provider "local-vllm" broke') as caught:
        await anext(chunks)
    assert KEY not in str(caught.value)
    await backend.aclose()


async def test_silence_past_read_timeout(upstream: FakeUpstream) -> None:
    backend = vllm(upstream.url, read_timeout_s=0.2)
    upstream.handler = stream(VLLM_ROLE, STALL)
    with pytest.raises(UpstreamTimeout, match=r"stalled: nothing for 0.2s \(read_timeout_s\)"):
        await collect(backend.stream_chat("m", REQUEST))

    upstream.handler = stream(VLLM_ROLE + vllm_token("Hi"), STALL)
    chunks = backend.stream_chat("m", REQUEST)
    assert await anext(chunks) == Chunk("Hi")
    with pytest.raises(UpstreamStreamBroken, match="after part of the answer was sent"):
        await anext(chunks)
    await backend.aclose()


async def test_call_time_limit(upstream: FakeUpstream) -> None:
    upstream.handler = stream(VLLM_ROLE, STALL)
    backend = vllm(upstream.url)
    with pytest.raises(UpstreamTimeout, match=r"within the call's time limit of 0\.2s"):
        await collect(backend.stream_chat("m", REQUEST, timeout_s=0.2))
    await backend.aclose()


async def test_aclose_of_a_stalled_stream_closes_the_connection(upstream: FakeUpstream) -> None:
    upstream.handler = stream(VLLM_ROLE + vllm_token("Hi"), STALL)
    backend = vllm(upstream.url)
    chunks = backend.stream_chat("m", REQUEST)
    assert await anext(chunks) == Chunk("Hi")
    await chunks.aclose()  # type: ignore[attr-defined]
    await asyncio.wait_for(upstream.disconnected.wait(), 10)
    await backend.aclose()


async def test_cancelling_the_consumer_closes_the_connection(upstream: FakeUpstream) -> None:
    upstream.handler = stream(VLLM_ROLE + vllm_token("Hi"), STALL)
    backend = vllm(upstream.url)
    got_first = asyncio.Event()

    async def consume() -> None:
        async for _ in backend.stream_chat("m", REQUEST):
            got_first.set()

    task = asyncio.create_task(consume())
    await got_first.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.wait_for(upstream.disconnected.wait(), 10)
    await backend.aclose()


async def test_finished_streams_reuse_one_connection(upstream: FakeUpstream) -> None:
    go = Wait()
    # [DONE] in one write and the end of the body in a later one: the adapter reads it.
    upstream.handler = stream(VLLM_ROLE, vllm_token("Hi", "stop") + VLLM_USAGE + DONE, go, EOF)
    backend = vllm(upstream.url)
    chunks = backend.stream_chat("m", REQUEST)
    assert (await anext(chunks)).finish_reason == "stop"
    go.set()
    assert await collect(chunks) == []
    upstream.handler = stream(VLLM_ROLE, vllm_token("Hi", "stop") + VLLM_USAGE + DONE)
    await collect(backend.stream_chat("m", REQUEST))
    await collect(backend.stream_chat("m", REQUEST))
    assert len({seen.port for seen in upstream.seen}) == 1
    await backend.aclose()


async def test_stream_closed_at_its_final_chunk_still_pools_its_connection(upstream: FakeUpstream) -> None:
    go = Wait()
    upstream.handler = stream(VLLM_ROLE, vllm_token("Hi", "stop") + VLLM_USAGE + DONE, go, EOF)
    backend = vllm(upstream.url)
    chunks = backend.stream_chat("m", REQUEST)
    assert (await anext(chunks)).finish_reason == "stop"
    await chunks.aclose()  # type: ignore[attr-defined]  # a consumer that stops at the final chunk
    go.set()
    await asyncio.gather(*backend._http._drains)  # the background drain reaches the end of the body
    upstream.handler = stream(VLLM_ROLE, vllm_token("Hi", "stop") + VLLM_USAGE + DONE)
    await collect(backend.stream_chat("m", REQUEST))
    assert upstream.seen[0].port == upstream.seen[1].port
    await backend.aclose()


async def test_abandoned_stream_does_not_return_its_connection(upstream: FakeUpstream) -> None:
    upstream.handler = stream(VLLM_ROLE + vllm_token("Hi"), STALL)
    backend = vllm(upstream.url)
    chunks = backend.stream_chat("m", REQUEST)
    await anext(chunks)
    await chunks.aclose()  # type: ignore[attr-defined]
    upstream.handler = stream(vllm_token("Hi", "stop"), DONE)
    await collect(backend.stream_chat("m", REQUEST))
    assert upstream.seen[0].port != upstream.seen[1].port
    await backend.aclose()


# -- embeddings -----------------------------------------------------------------------------------


async def test_embeddings_in_input_order_with_usage(upstream: FakeUpstream) -> None:
    answer = {
        "object": "list",
        "model": "bge-small",
        "data": [
            {"object": "embedding", "index": 1, "embedding": [0.0, 1.0]},
            {"object": "embedding", "index": 0, "embedding": [1.0, 0.5]},
        ],
        "usage": {"prompt_tokens": 6, "total_tokens": 6},
    }
    upstream.handler = reply(200, answer)
    backend = vllm(upstream.url)
    result = await backend.embed("bge", ["first", "second"])
    assert result.vectors == [[1.0, 0.5], [0.0, 1.0]]
    assert result.usage == Usage(prompt_tokens=6) and result.model == "bge-small"
    assert upstream.last.path == "/v1/embeddings"
    assert upstream.last.body == {"model": "bge", "input": ["first", "second"], "encoding_format": "float"}
    await backend.aclose()


async def test_embeddings_count_mismatch_and_azure_url(upstream: FakeUpstream) -> None:
    upstream.handler = reply(200, {"data": [{"index": 0, "embedding": [1.0]}], "usage": {"prompt_tokens": 1}})
    backend = OpenAIBackend("azure", settings_for("azure", upstream.url))
    with pytest.raises(UpstreamUnavailable, match="answered 1 embeddings for 2 inputs"):
        await backend.embed("emb-deploy", ["a", "b"])
    assert upstream.last.path == "/openai/deployments/emb-deploy/embeddings"
    assert upstream.last.query == {"api-version": "2024-10-21"}
    await backend.aclose()


# -- health and load ------------------------------------------------------------------------------

METRICS = b"""# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="Qwen/Qwen3 0.6B"} 3.0
vllm:num_requests_running{engine="1",model_name="Qwen/Qwen3 0.6B"} 2.0
vllm:num_requests_waiting{engine="0",model_name="Qwen/Qwen3 0.6B"} 7.0
vllm:num_requests_waiting{engine="1",model_name="Qwen/Qwen3 0.6B"} 1.0
vllm:kv_cache_usage_perc{engine="0",model_name="Qwen/Qwen3 0.6B"} 0.25
vllm:kv_cache_usage_perc{engine="1",model_name="Qwen/Qwen3 0.6B"} 0.5
vllm:gpu_cache_usage_perc{engine="0",model_name="Qwen/Qwen3 0.6B"} 0.9
vllm:time_to_first_token_seconds_bucket{le="0.1",model_name="x"} 12.0
"""


def test_parse_vllm_load() -> None:
    assert parse_vllm_load(METRICS) == BackendLoad(running_requests=5, waiting_requests=8, kv_cache_usage=0.5)
    old = b'vllm:gpu_cache_usage_perc{model_name="m"} 0.75 1700000000\nvllm:num_requests_waiting 2\n'
    assert parse_vllm_load(old) == BackendLoad(running_requests=0, waiting_requests=2, kv_cache_usage=0.75)
    assert parse_vllm_load(b"garbage\nvllm:num_requests_running{x} NaN\n") == BackendLoad()


async def test_vllm_health_reads_load(upstream: FakeUpstream) -> None:
    async def handle(request: Any) -> Any:
        from aiohttp import web

        if request.path == "/health":
            return web.Response(status=200)
        return web.Response(body=METRICS, content_type="text/plain")

    upstream.handler = handle
    backend = vllm(upstream.url)
    health = await backend.health()
    assert health.ok
    assert health.load == BackendLoad(running_requests=5, waiting_requests=8, kv_cache_usage=0.5)
    assert [s.path for s in upstream.seen] == ["/health", "/metrics"]
    await backend.aclose()


async def test_vllm_unhealthy_and_openai_models_probe(upstream: FakeUpstream) -> None:
    upstream.handler = reply(503, b"")
    backend = vllm(upstream.url)
    health = await backend.health()
    assert not health.ok and "HTTP 503" in health.detail and "local-vllm" in health.detail
    await backend.aclose()

    upstream.handler = reply(200, {"object": "list", "data": []})
    openai = OpenAIBackend("openai", settings_for("openai", upstream.url + "/v1"))
    assert (await openai.health()).ok
    assert upstream.last.path == "/v1/models"
    assert upstream.last.headers["authorization"] == f"Bearer {KEY}"
    upstream.handler = reply(401, {"error": {"message": f"Incorrect API key provided: {KEY}"}})
    health = await openai.health()
    assert not health.ok and "credentials" in health.detail and KEY not in health.detail
    await openai.aclose()


async def test_health_never_raises_when_unreachable() -> None:
    backend = vllm("http://127.0.0.1:9")  # discard port: nothing listens
    health = await backend.health()
    assert not health.ok and "unreachable" in health.detail
    await backend.aclose()
