"""The error seam: every provider status and transport failure becomes the right
``router.errors`` class, with a message that names the provider, quotes the
provider's own text, says what to do, and never holds the credential."""

from __future__ import annotations

import asyncio
import email.utils
import time
from typing import Any

import pytest

from backends._http import provider_error_text, retry_after_s
from backends.anthropic import AnthropicBackend
from backends.base import Backend
from backends.cohere import CohereBackend
from backends.openai import OpenAIBackend
from router.domain import ChatRequest, Message
from router.errors import (
    UpstreamAuthFailed,
    UpstreamBadRequest,
    UpstreamError,
    UpstreamModelNotFound,
    UpstreamRateLimited,
    UpstreamStreamBroken,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from router.secrets import SecretRef
from tests.backends.support import KEY, STALL, FakeUpstream, collect, reply, settings_for, sse, stream

REQUEST = ChatRequest(route="chat", messages=(Message("user", "Hi"),))

STATUSES: list[tuple[int, type[UpstreamError], str]] = [
    (400, UpstreamBadRequest, "rejected the request"),
    (401, UpstreamAuthFailed, "rejected the gateway's credentials (HTTP 401"),
    (403, UpstreamAuthFailed, "check the api_key configured for it"),
    (404, UpstreamModelNotFound, "check the route's model and its base_url"),
    (405, UpstreamUnavailable, "check its kind and base_url"),
    (408, UpstreamUnavailable, "another target or a later retry may succeed"),
    (413, UpstreamBadRequest, "rejected the request (HTTP 413"),
    (422, UpstreamBadRequest, "change the request as the provider says"),
    (429, UpstreamRateLimited, "is rate limiting the gateway"),
    (500, UpstreamUnavailable, "failed (HTTP 500"),
    (502, UpstreamUnavailable, "failed (HTTP 502"),
    (503, UpstreamUnavailable, "another target or a later retry may succeed"),
    (529, UpstreamUnavailable, "failed (HTTP 529"),
]

# Each provider's error body, every one echoing the key the way a careless proxy might.
BODIES: dict[str, Any] = {
    "openai": {"error": {"message": f"Incorrect API key provided: {KEY}.", "type": "invalid_request_error"}},
    "vllm": {
        "error": {"message": f"The model `{KEY}` does not exist.", "type": "NotFoundError", "code": 404}
    },
    "azure": {
        "error": {
            "message": f"Access denied for {KEY}",
            "code": "content_filter",
            "innererror": {"code": "ResponsibleAIPolicyViolation"},
        }
    },
    "anthropic": {"type": "error", "error": {"type": "overloaded_error", "message": f"Overloaded {KEY}"}},
    "cohere": {"id": "1b2c", "message": f"invalid api token {KEY}"},
}


def backend_for(kind: str, url: str, **overrides: Any) -> Backend:
    base = url if kind == "azure" else url + "/v1"
    settings = settings_for(kind, base, **overrides)
    if kind == "anthropic":
        return AnthropicBackend("claude", settings)
    if kind == "cohere":
        return CohereBackend("cohere", settings)
    return OpenAIBackend(kind, settings)


def assert_clean(error: BaseException) -> None:
    """No trace of the credential anywhere in the error or its causes."""
    seen: BaseException | None = error
    while seen is not None:
        assert KEY not in str(seen) and KEY not in repr(seen)
        assert all(KEY not in str(arg) for arg in seen.args)
        seen = seen.__cause__ or seen.__context__


@pytest.mark.parametrize(("status", "cls", "hint"), STATUSES)
@pytest.mark.parametrize("kind", sorted(BODIES))
async def test_http_error_status_maps_to_class_with_actionable_message(
    upstream: FakeUpstream, kind: str, status: int, cls: type[UpstreamError], hint: str
) -> None:
    upstream.handler = reply(status, BODIES[kind])
    backend = backend_for(kind, upstream.url)
    with pytest.raises(UpstreamError) as caught:
        await collect(backend.stream_chat("m", REQUEST))
    error = caught.value
    assert type(error) is cls
    assert error.http_status == status and error.provider == backend.name
    assert error.message.startswith(f'provider "{backend.name}" ')
    assert hint in error.message
    assert "***" in error.message  # the provider's text is quoted, the echoed key replaced
    assert_clean(error)
    await backend.aclose()


async def test_provider_text_is_quoted_from_each_shape(upstream: FakeUpstream) -> None:
    upstream.handler = reply(401, {"error": "Unauthorized"})  # vLLM's auth middleware
    backend = backend_for("vllm", upstream.url)
    with pytest.raises(UpstreamAuthFailed) as caught:
        await collect(backend.stream_chat("m", REQUEST))
    assert caught.value.message == (
        'provider "vllm" rejected the gateway\'s credentials (HTTP 401: Unauthorized): '
        "check the api_key configured for it"
    )
    await backend.aclose()


def test_provider_error_text_shapes() -> None:
    assert provider_error_text(b'{"error":"Unauthorized"}') == "Unauthorized"
    assert provider_error_text(b'{"error":{"message":"bad","type":"invalid_request_error"}}') == (
        "bad (invalid_request_error)"
    )
    azure = b'{"error":{"message":"filtered","code":"content_filter","innererror":{"code":"RAI"}}}'
    assert provider_error_text(azure) == "filtered (RAI)"
    anthropic = b'{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'
    assert provider_error_text(anthropic) == "Overloaded (overloaded_error)"
    assert provider_error_text(b'{"message":"invalid api token"}') == "invalid api token"
    assert provider_error_text(b'{"detail":"Not Found"}') == "Not Found"
    assert provider_error_text(b"<html>\n  Bad   Gateway\n</html>") == "<html> Bad Gateway </html>"
    assert provider_error_text(b"") == "no error text"
    assert len(provider_error_text(b"x" * 10_000)) == 400


def test_retry_after_headers() -> None:
    assert retry_after_s({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after_s({"retry-after": "7"}) == 7.0
    assert retry_after_s({}) is None
    assert retry_after_s({"retry-after": "soon"}) is None
    when = email.utils.formatdate(time.time() + 120, usegmt=True)
    hint = retry_after_s({"retry-after": when})
    assert hint is not None and 100 < hint <= 120


async def test_rate_limit_carries_retry_after(upstream: FakeUpstream) -> None:
    body = {"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}}
    upstream.handler = reply(429, body, headers={"retry-after": "20", "retry-after-ms": "2500"})
    backend = backend_for("azure", upstream.url)
    with pytest.raises(UpstreamRateLimited) as caught:
        await collect(backend.stream_chat("m", REQUEST))
    assert caught.value.retry_after_s == 2.5
    assert "retry after 2.5s" in caught.value.message
    await backend.aclose()


async def test_connect_refused_is_unavailable_naming_the_address() -> None:
    backend = OpenAIBackend("local-vllm", settings_for("vllm", "http://127.0.0.1:9/v1"))
    with pytest.raises(UpstreamUnavailable) as caught:
        await collect(backend.stream_chat("m", REQUEST))
    assert (
        caught.value.message
        == 'provider "local-vllm" is unreachable at http://127.0.0.1:9: connection refused'
    )
    assert caught.value.retryable
    with pytest.raises(UpstreamUnavailable, match="unreachable"):
        await backend.embed("m", ["x"])
    await backend.aclose()


async def test_full_pool_past_connect_timeout_is_timeout(upstream: FakeUpstream) -> None:
    upstream.handler = stream(sse({"choices": [{"index": 0, "delta": {"content": "Hi"}}]}), STALL)
    backend = backend_for("vllm", upstream.url, max_connections=1, connect_timeout_s=0.2)
    holder = backend.stream_chat("m", REQUEST)
    await anext(holder)  # the only pooled connection is busy
    with pytest.raises(UpstreamTimeout, match=r"did not accept a connection .* within 0.2s"):
        await collect(backend.stream_chat("m", REQUEST))
    await holder.aclose()  # type: ignore[attr-defined]
    await backend.aclose()


async def test_redirect_is_not_followed(upstream: FakeUpstream) -> None:
    upstream.handler = reply(307, b"", headers={"Location": "https://elsewhere.example/v1/chat/completions"})
    backend = backend_for("anthropic", upstream.url)
    with pytest.raises(UpstreamUnavailable, match=r"redirected the gateway .* set its base_url") as caught:
        await collect(backend.stream_chat("m", REQUEST))
    assert caught.value.http_status == 307
    assert len(upstream.seen) == 1  # the credential went nowhere else
    await backend.aclose()


async def test_unresolvable_credential_is_auth_failed_naming_the_reference(upstream: FakeUpstream) -> None:
    ref = SecretRef("${env:MESHGATE_TEST_UNSET_KEY}")
    backend = backend_for("openai", upstream.url, api_key=ref)
    with pytest.raises(UpstreamAuthFailed, match="environment variable MESHGATE_TEST_UNSET_KEY is not set"):
        await collect(backend.stream_chat("m", REQUEST))
    assert upstream.seen == []
    await backend.aclose()


async def test_in_band_error_echoing_the_key_is_redacted(upstream: FakeUpstream) -> None:
    event = {"error": {"message": f"bad key {KEY}", "type": "server_error", "code": None}}
    upstream.handler = stream(sse(event, "[DONE]"))
    backend = backend_for("openai", upstream.url)
    with pytest.raises(UpstreamUnavailable) as caught:
        await collect(backend.stream_chat("m", REQUEST))
    assert "bad key ***" in caught.value.message
    assert_clean(caught.value)
    await backend.aclose()


async def test_malformed_event_echoing_the_key_is_redacted(upstream: FakeUpstream) -> None:
    upstream.handler = stream(f"data: {{{KEY}\n\n".encode())
    backend = backend_for("vllm", upstream.url)
    with pytest.raises(UpstreamUnavailable, match="malformed") as caught:
        await collect(backend.stream_chat("m", REQUEST))
    assert_clean(caught.value)
    await backend.aclose()


async def test_no_time_left_is_timeout_without_a_call(upstream: FakeUpstream) -> None:
    backend = backend_for("vllm", upstream.url)
    with pytest.raises(UpstreamTimeout, match="the deadline had passed"):
        await collect(backend.stream_chat("m", REQUEST, timeout_s=0))
    assert upstream.seen == []
    await backend.aclose()


async def test_backend_repr_and_closed_backend() -> None:
    backend = backend_for("openai", "http://127.0.0.1:9")
    assert KEY not in repr(backend) and KEY not in repr(backend.settings)
    await backend.aclose()
    await backend.aclose()  # idempotent
    with pytest.raises(UpstreamUnavailable, match="was closed"):
        await collect(backend.stream_chat("m", REQUEST))


async def test_errors_keep_their_cause_chain_without_headers(upstream: FakeUpstream) -> None:
    upstream.handler = stream(sse({"choices": [{"index": 0, "delta": {"content": "Hi"}}]}), STALL)
    backend = backend_for("vllm", upstream.url, read_timeout_s=0.2)
    chunks = backend.stream_chat("m", REQUEST)
    await anext(chunks)
    with pytest.raises(UpstreamStreamBroken) as caught:
        await asyncio.wait_for(anext(chunks), 10)
    assert isinstance(caught.value.__cause__, TimeoutError)
    assert_clean(caught.value)
    await backend.aclose()
