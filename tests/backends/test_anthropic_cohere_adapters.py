"""The Anthropic Messages and Cohere v2 chat adapters against scripted upstreams."""

from __future__ import annotations

from typing import Any

import pytest

from backends.anthropic import DEFAULT_MAX_TOKENS, AnthropicBackend
from backends.cohere import CohereBackend
from backends.registry import create_backend
from router.domain import ChatRequest, Chunk, CompletionRequest, Message, Sampling, Usage
from router.errors import (
    FailedPrecondition,
    UpstreamBadRequest,
    UpstreamRateLimited,
    UpstreamStreamBroken,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from tests.backends.support import CUT, KEY, FakeUpstream, Wait, collect, settings_for, sse, stream

REQUEST = ChatRequest(
    route="chat",
    messages=(
        Message("system", "Be brief."),
        Message("developer", "Answer in English."),
        Message("user", "Say hello."),
        Message("assistant", "Hello."),
        Message("user", "Again."),
    ),
    sampling=Sampling(temperature=0.2, top_p=0.8, stop=("END",), seed=3),
)

# -- Anthropic (wire-protocols.md §4.3) ----------------------------------------------------------

A_START = {
    "type": "message_start",
    "message": {
        "id": "msg_01XFD",
        "type": "message",
        "role": "assistant",
        "content": [],
        "model": "claude-sonnet-4-5",
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {
            "input_tokens": 25,
            "cache_creation_input_tokens": 5,
            "cache_read_input_tokens": 10,
            "output_tokens": 1,
        },
    },
}
A_BLOCK = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
A_PING = {"type": "ping"}


def a_text(text: str) -> dict[str, Any]:
    return {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}


def a_end(reason: str, output_tokens: int = 15) -> list[dict[str, Any]]:
    return [
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": reason, "stop_sequence": None},
            "usage": {"output_tokens": output_tokens},
        },
        {"type": "message_stop"},
    ]


def claude(url: str, **overrides: Any) -> AnthropicBackend:
    return AnthropicBackend("claude", settings_for("anthropic", url + "/v1", **overrides))


async def test_anthropic_stream_text_finish_usage_and_model(upstream: FakeUpstream) -> None:
    go = Wait()
    thinking = {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "thinking_delta", "thinking": "hm"},
    }
    first = sse(A_START, A_BLOCK, A_PING, a_text("Hel"), thinking, a_text("lo"), named=True)
    upstream.handler = stream(first, go, sse({"type": "future_event"}, *a_end("end_turn"), named=True))
    backend = claude(upstream.url)
    chunks = backend.stream_chat("claude-sonnet-4-5", REQUEST)
    assert await anext(chunks) == Chunk("Hello")  # one read, one chunk
    go.set()
    final = Chunk("", "stop", Usage(prompt_tokens=40, completion_tokens=15, cached_prompt_tokens=10))
    final.model = "claude-sonnet-4-5"
    assert await collect(chunks) == [final]
    await backend.aclose()


async def test_anthropic_request_mapping(upstream: FakeUpstream) -> None:
    upstream.handler = stream(sse(A_START, a_text("Hi"), *a_end("end_turn"), named=True))
    backend = claude(upstream.url, api_version="2024-01-01")
    await collect(backend.stream_chat("claude-sonnet-4-5", REQUEST))
    seen = upstream.last
    assert seen.path == "/v1/messages"
    assert seen.headers["x-api-key"] == KEY and "authorization" not in seen.headers
    assert seen.headers["anthropic-version"] == "2024-01-01"
    assert seen.body == {
        "model": "claude-sonnet-4-5",
        "system": "Be brief.\n\nAnswer in English.",
        "messages": [
            {"role": "user", "content": "Say hello."},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "Again."},
        ],
        "max_tokens": DEFAULT_MAX_TOKENS,
        "stream": True,
        "temperature": 0.2,
        "top_p": 0.8,
        "stop_sequences": ["END"],
    }
    await backend.aclose()


async def test_anthropic_completion_is_one_user_message_with_its_max_tokens(upstream: FakeUpstream) -> None:
    upstream.handler = stream(sse(A_START, a_text("Hi"), *a_end("max_tokens", 7), named=True))
    backend = claude(upstream.url)
    request = CompletionRequest(route="c", prompt="Once", sampling=Sampling(max_tokens=7))
    chunks = await collect(backend.stream_completion("claude", request))
    assert chunks[-1].finish_reason == "length" and chunks[-1].usage == Usage(40, 7, 10)
    assert upstream.last.body["messages"] == [{"role": "user", "content": "Once"}]
    assert upstream.last.body["max_tokens"] == 7 and "system" not in upstream.last.body
    assert upstream.last.headers["anthropic-version"] == "2023-06-01"
    await backend.aclose()


@pytest.mark.parametrize(
    ("reason", "finish"),
    [("stop_sequence", "stop"), ("refusal", "content_filter"), ("tool_use", "tool_calls"), ("new", "stop")],
)
async def test_anthropic_finish_reasons(upstream: FakeUpstream, reason: str, finish: str) -> None:
    upstream.handler = stream(sse(A_START, a_text("x"), *a_end(reason), named=True))
    backend = claude(upstream.url)
    assert (await collect(backend.stream_chat("c", REQUEST)))[-1].finish_reason == finish
    await backend.aclose()


def a_error(kind: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": kind, "message": message}}


@pytest.mark.parametrize(
    ("kind", "cls"),
    [
        ("overloaded_error", UpstreamUnavailable),
        ("api_error", UpstreamUnavailable),
        ("rate_limit_error", UpstreamRateLimited),
        ("invalid_request_error", UpstreamBadRequest),
        ("something_new", UpstreamUnavailable),
    ],
)
async def test_anthropic_error_event_before_text(
    upstream: FakeUpstream, kind: str, cls: type[Exception]
) -> None:
    upstream.handler = stream(sse(A_START, A_PING, a_error(kind, "Overloaded"), named=True))
    backend = claude(upstream.url)
    with pytest.raises(cls, match=r'provider "claude" .*Overloaded') as caught:
        await collect(backend.stream_chat("c", REQUEST))
    assert type(caught.value) is cls
    await backend.aclose()


async def test_anthropic_error_event_after_text_is_stream_broken(upstream: FakeUpstream) -> None:
    go = Wait()
    upstream.handler = stream(
        sse(A_START, a_text("Hi"), named=True), go, sse(a_error("overloaded_error", "Overloaded"), named=True)
    )
    backend = claude(upstream.url)
    chunks = backend.stream_chat("c", REQUEST)
    assert await anext(chunks) == Chunk("Hi")
    go.set()
    with pytest.raises(UpstreamStreamBroken, match="Overloaded"):
        await anext(chunks)
    await backend.aclose()


async def test_anthropic_cut_and_embeddings_and_health(upstream: FakeUpstream) -> None:
    go = Wait()
    upstream.handler = stream(sse(A_START, a_text("Hi"), named=True), go, CUT)
    backend = claude(upstream.url)
    chunks = backend.stream_chat("c", REQUEST)
    assert await anext(chunks) == Chunk("Hi")
    go.set()
    with pytest.raises(UpstreamStreamBroken):
        await anext(chunks)
    with pytest.raises(FailedPrecondition, match=r'provider "claude" \(anthropic\) has no embeddings API'):
        await backend.embed("c", ["x"])
    assert (await backend.health()).ok
    assert not [s for s in upstream.seen if s.method == "GET"]  # a TCP connect, no paid call
    await backend.aclose()
    assert not (await claude("http://127.0.0.1:9").health()).ok


# -- Cohere (wire-protocols.md §4.4) -------------------------------------------------------------

C_START = {
    "id": "5b9c",
    "type": "message-start",
    "delta": {
        "message": {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}
    },
}
C_CONTENT = {
    "type": "content-start",
    "index": 0,
    "delta": {"message": {"content": {"type": "text", "text": ""}}},
}


def c_text(text: str) -> dict[str, Any]:
    return {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": text}}}}


def c_end(reason: str, usage: dict[str, Any] | None = None, error: str | None = None) -> list[dict[str, Any]]:
    delta: dict[str, Any] = {"finish_reason": reason}
    delta["usage"] = usage or {
        "billed_units": {"input_tokens": 5, "output_tokens": 2},
        "tokens": {"input_tokens": 71, "output_tokens": 2},
    }
    if error:
        delta["error"] = error
    return [{"type": "content-end", "index": 0}, {"type": "message-end", "delta": delta}]


def cohere(url: str) -> CohereBackend:
    return CohereBackend("cohere", settings_for("cohere", url + "/v2"))


async def test_cohere_stream_and_request_mapping(upstream: FakeUpstream) -> None:
    go = Wait()
    upstream.handler = stream(
        sse(C_START, C_CONTENT, c_text("Hel"), c_text("lo"), named=True),
        go,
        sse(*c_end("COMPLETE"), named=True),
    )
    backend = cohere(upstream.url)
    chunks = backend.stream_chat("command-r", REQUEST)
    assert await anext(chunks) == Chunk("Hello")
    go.set()
    assert await collect(chunks) == [Chunk("", "stop", Usage(71, 2, 0))]
    seen = upstream.last
    assert seen.path == "/v2/chat" and seen.headers["authorization"] == f"Bearer {KEY}"
    assert seen.body == {
        "model": "command-r",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "system", "content": "Answer in English."},
            {"role": "user", "content": "Say hello."},
            {"role": "assistant", "content": "Hello."},
            {"role": "user", "content": "Again."},
        ],
        "stream": True,
        "temperature": 0.2,
        "p": 0.8,
        "stop_sequences": ["END"],
        "seed": 3,
    }
    await backend.aclose()


@pytest.mark.parametrize(
    ("reason", "finish"),
    [("STOP_SEQUENCE", "stop"), ("MAX_TOKENS", "length"), ("TOOL_CALL", "tool_calls")],
)
async def test_cohere_finish_reasons_and_billed_units(
    upstream: FakeUpstream, reason: str, finish: str
) -> None:
    billed = {"billed_units": {"input_tokens": 5.0, "output_tokens": 3.0}}
    upstream.handler = stream(sse(C_START, c_text("x"), *c_end(reason, billed), named=True))
    backend = cohere(upstream.url)
    chunks = await collect(backend.stream_completion("c", CompletionRequest(route="c", prompt="p")))
    assert chunks == [Chunk("x", finish, Usage(5, 3, 0))]
    assert upstream.last.body["messages"] == [{"role": "user", "content": "p"}]
    await backend.aclose()


@pytest.mark.parametrize(("reason", "cls"), [("ERROR", UpstreamUnavailable), ("TIMEOUT", UpstreamTimeout)])
async def test_cohere_error_finish(upstream: FakeUpstream, reason: str, cls: type[Exception]) -> None:
    upstream.handler = stream(sse(C_START, *c_end(reason, error="model crashed"), named=True))
    backend = cohere(upstream.url)
    with pytest.raises(cls, match='provider "cohere" reported an error in its stream: model crashed'):
        await collect(backend.stream_chat("c", REQUEST))

    go = Wait()
    upstream.handler = stream(sse(C_START, c_text("Hi"), named=True), go, sse(*c_end(reason), named=True))
    chunks = backend.stream_chat("c", REQUEST)
    assert await anext(chunks) == Chunk("Hi")
    go.set()
    with pytest.raises(UpstreamStreamBroken, match=f"ended with {reason}, after part of the answer"):
        await anext(chunks)
    await backend.aclose()


async def test_cohere_embeddings_out_of_scope() -> None:
    backend = create_backend("cohere", settings_for("cohere", "http://127.0.0.1:9/v2"))
    with pytest.raises(FailedPrecondition, match="has no embeddings API"):
        await backend.embed("embed-v4", ["x"])
    await backend.aclose()
