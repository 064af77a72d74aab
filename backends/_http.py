"""The shared HTTP layer of the upstream adapters.

One ``HttpClient`` per ``Backend``: an aiohttp keep-alive pool, the request
headers (credential included, resolved here and nowhere else), orjson bodies,
the streaming skeleton every wire protocol shares, and THE seam where transport
failures and provider error answers become ``router.errors`` classes.

The error seam
==============

=====================================  ==========================  ==========================
what happened                          before the first Chunk      after a Chunk was yielded
=====================================  ==========================  ==========================
connect refused, DNS, TLS failure      UpstreamUnavailable         (cannot happen)
connect or pool wait over connect_s    UpstreamTimeout             (cannot happen)
HTTP 3xx (redirects are not followed)  UpstreamUnavailable         (cannot happen)
HTTP status >= 400                     ``for_http_status(status)``  (cannot happen)
connection closed/reset in the body    UpstreamUnavailable         UpstreamStreamBroken
silence over read_timeout_s            UpstreamTimeout             UpstreamStreamBroken
the call's ``timeout_s`` ran out       UpstreamTimeout             UpstreamStreamBroken
malformed event                        UpstreamUnavailable         UpstreamStreamBroken
in-band error event                    class of its status/type    UpstreamStreamBroken, unless
                                                                   the class is final (400s)
stream ends without a finish reason    UpstreamUnavailable         UpstreamStreamBroken
=====================================  ==========================  ==========================

Why: before the first chunk nothing has reached the client, so an error keeps
the class of its cause and another target may be tried (``retryable``). Once a
chunk was yielded the dispatcher must not retry (tokens would repeat), so every
failure becomes ``UpstreamStreamBroken`` (final); a final class such as
``UpstreamBadRequest`` keeps its class, since it is final already and tells the
caller more. A host that dies during prefill (connection closed, or the body
ending, before any text) is ``UpstreamUnavailable``: nothing reached the
client, so another target may serve the request.

Messages name the provider and say what to do. The provider's own error text
is quoted from its error body (OpenAI/vLLM/Azure ``{"error":{"message"}}``,
vLLM's ``{"error":"Unauthorized"}``, Anthropic ``{"type":"error","error":{…}}``,
Cohere ``{"message"}``), and every message passes through ``_Redactor`` which
replaces the resolved credential should a provider ever echo it. Exceptions are
chained (``raise … from exc``) to aiohttp errors that never carry headers.

Closing
=======

A stream that the consumer abandons (``aclose``, task cancelled) or that fails
closes the response *and its connection* (``resp.close()``): the upstream sees
the socket close and stops generating, and no half-read connection returns to
the pool. A stream that finished returns its connection to the pool; if the
terminator arrived before the end of the HTTP body, the rest of the body is
drained in a small background task so the final chunk is never delayed.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import errno
import sys
import time
from collections.abc import AsyncGenerator, Mapping
from typing import Any, Protocol

import aiohttp
import orjson
from yarl import URL

from backends.base import ProviderSettings
from router.domain import Chunk, Usage
from router.errors import (
    UpstreamAuthFailed,
    UpstreamBadRequest,
    UpstreamError,
    UpstreamModelNotFound,
    UpstreamRateLimited,
    UpstreamStreamBroken,
    UpstreamTimeout,
    UpstreamUnavailable,
    for_http_status,
)
from router.secrets import SecretError

__all__ = [
    "HttpClient",
    "ProviderFault",
    "StreamDecoder",
    "fault_from_error_body",
    "provider_error_text",
    "retry_after_s",
]

MAX_ERROR_BODY_BYTES = 64 * 1024
"""An error body is read up to this size; the rest is dropped with the connection."""
MAX_DETAIL_CHARS = 400
"""The provider's error text is quoted up to this length."""
DRAIN_TIMEOUT_S = 5.0
"""How long a finished stream may take to deliver the end of its HTTP body."""
DRAIN_MAX_BYTES = 64 * 1024
"""Bytes after the terminator beyond which the connection is closed, not pooled."""
MAX_EVENT_BYTES = 4 * 1024 * 1024
"""An upstream that sends more than this without ending an event is malformed."""
DNS_CACHE_TTL_S = 300

# aiohttp warns that the option is useless on interpreters with the fix for
# cpython#118960; pass it only where it still matters (same test as aiohttp's).
_NEEDS_CLEANUP_CLOSED = sys.version_info < (3, 12, 8) or (3, 13, 0) <= sys.version_info < (3, 13, 1)


class ProviderFault(Exception):
    """Raised by a ``StreamDecoder`` for an error the provider reported in band.

    The transport turns it into an ``UpstreamError`` at the seam: ``cls`` when
    given, else ``for_http_status(http_status)`` (500 when there is none).
    ``detail`` is the provider's own text; the seam redacts it.
    """

    def __init__(
        self, detail: str, *, http_status: int | None = None, cls: type[UpstreamError] | None = None
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.http_status = http_status
        self.cls = cls


class StreamDecoder(Protocol):
    """Turns a provider's byte stream into text and a final state; one per stream.

    ``feed`` takes one network read (any split of the stream) and returns the
    text of every event it completed, joined; it updates ``finish_reason``
    (normalised), ``usage`` and ``model`` as they arrive and sets ``done`` once
    the protocol's terminator was seen. It raises ``ProviderFault`` for an
    in-band error and ``ValueError`` for a malformed event.
    """

    finish_reason: str | None
    usage: Usage | None
    model: str | None
    done: bool

    def feed(self, data: bytes) -> str: ...

    @property
    def buffered(self) -> int:
        """Bytes held of an incomplete event (the skeleton caps it)."""
        ...


def provider_error_text(body: bytes) -> str:
    """The provider's own explanation from an error body, in one short line."""
    text = ""
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError:
        text = body.decode("utf-8", "replace")
    else:
        text = _error_text_of(doc)
    text = " ".join(text.split())
    if len(text) > MAX_DETAIL_CHARS:
        text = text[: MAX_DETAIL_CHARS - 1] + "…"
    return text or "no error text"


def _error_text_of(doc: Any) -> str:
    if not isinstance(doc, dict):
        return orjson.dumps(doc).decode()
    error = doc.get("error")
    if isinstance(error, str):  # vLLM's auth middleware: {"error":"Unauthorized"}
        return error
    if isinstance(error, dict):  # OpenAI, vLLM, Azure, Anthropic
        message = error.get("message")
        text = message if isinstance(message, str) else orjson.dumps(error).decode()
        label = error.get("code")
        inner = error.get("innererror")
        if isinstance(inner, dict) and isinstance(inner.get("code"), str):
            label = inner["code"]  # Azure: ResponsibleAIPolicyViolation
        if not isinstance(label, str):
            label = error.get("type")
        return f"{text} ({label})" if isinstance(label, str) and label and label not in text else text
    for key in ("message", "detail"):  # Cohere; FastAPI-style servers
        value = doc.get(key)
        if isinstance(value, str):
            return value
    return orjson.dumps(doc).decode()


ERROR_TYPE_STATUS: dict[str, int] = {
    # OpenAI / Anthropic ``error.type`` values, and vLLM's exception names.
    "invalid_request_error": 400,
    "BadRequestError": 400,
    "authentication_error": 401,
    "AuthenticationError": 401,
    "permission_error": 403,
    "PermissionDeniedError": 403,
    "not_found_error": 404,
    "NotFoundError": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "rate_limit_exceeded": 429,
    "insufficient_quota": 429,
    "api_error": 500,
    "server_error": 500,
    "InternalServerError": 500,
    "overloaded_error": 529,
}
"""The HTTP status an in-band error stands for, by its type, when it carries no status."""


def fault_from_error_body(payload: bytes) -> ProviderFault:
    """The ``ProviderFault`` for an in-band error event (OpenAI, vLLM, Azure, Anthropic shapes)."""
    status: int | None = None
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError:
        doc = None
    error = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(error, dict):
        code, kind = error.get("code"), error.get("type")
        if isinstance(code, int) and 400 <= code <= 599:
            status = code
        elif isinstance(kind, str):
            status = ERROR_TYPE_STATUS.get(kind)
    return ProviderFault(provider_error_text(payload), http_status=status)


def retry_after_s(headers: Mapping[str, str]) -> float | None:
    """The provider's retry hint: ``retry-after-ms``, else ``retry-after`` (seconds or HTTP date)."""
    millis = headers.get("retry-after-ms")
    if millis:
        with contextlib.suppress(ValueError):
            return max(0.0, float(millis) / 1000.0)
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    return max(0.0, when.timestamp() - time.time())


class _Redactor:
    """Replaces the credential wherever a message might carry it."""

    __slots__ = ("secret",)

    def __init__(self) -> None:
        self.secret: str | None = None

    def __call__(self, text: str) -> str:
        if self.secret and self.secret in text:
            return text.replace(self.secret, "***")
        return text


class HttpClient:
    """The HTTP side of one backend. Not thread-safe; one event loop.

    ``credential_header`` names the header that carries the credential
    (``Authorization``, ``api-key``, ``x-api-key``) and ``credential_prefix``
    what precedes it (``"Bearer "``); without ``settings.api_key`` no
    credential is sent. ``headers`` are protocol headers (``anthropic-version``);
    ``settings.headers`` are added to them. The credential is resolved once,
    when the pool opens on the first call (a new ``Backend`` picks up a rotated
    key); while it cannot be resolved every call fails with ``UpstreamAuthFailed``.
    """

    def __init__(
        self,
        provider: str,
        settings: ProviderSettings,
        *,
        credential_header: str = "Authorization",
        credential_prefix: str = "Bearer ",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        self.provider = provider
        self.settings = settings
        self._credential_header = credential_header
        self._credential_prefix = credential_prefix
        self._protocol_headers = dict(headers or {})
        self._headers: dict[str, str] = {}
        self._stream_headers: dict[str, str] = {}
        self._default_timeout = self._timeout(None)
        self._redact = _Redactor()
        self._session: aiohttp.ClientSession | None = None
        self._closed = False
        self._drains: set[asyncio.Task[None]] = set()
        url = URL(settings.base_url)
        self.origin = str(url.origin()) if url.absolute else settings.base_url
        """``scheme://host:port`` of the base URL: safe to show (no path, no userinfo)."""

    # -- the pool ---------------------------------------------------------------------------

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is not None:
            return self._session
        if self._closed:
            raise UpstreamUnavailable(
                f'provider "{self.provider}" was closed (deregistered or shutting down): use another target',
                provider=self.provider,
            )
        self._headers = self._build_headers()
        self._stream_headers = {**self._headers, "Accept": "text/event-stream"}
        connector = aiohttp.TCPConnector(
            limit=self.settings.max_connections,
            limit_per_host=0,
            ttl_dns_cache=DNS_CACHE_TTL_S,
            enable_cleanup_closed=_NEEDS_CLEANUP_CLOSED,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=self._default_timeout,
            auto_decompress=True,
            trust_env=False,
        )
        return self._session

    def _build_headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        headers.update(self._protocol_headers)
        headers.update(self.settings.headers)
        ref = self.settings.api_key
        if ref is not None:
            try:
                secret = ref.resolve()
            except SecretError as exc:  # its message names the reference, never the value
                raise UpstreamAuthFailed(
                    f'provider "{self.provider}" has no usable api_key: {exc}', provider=self.provider
                ) from None
            self._redact.secret = secret
            headers[self._credential_header] = self._credential_prefix + secret
        return headers

    def _timeout(self, timeout_s: float | None) -> aiohttp.ClientTimeout:
        connect_s = self.settings.connect_timeout_s
        return aiohttp.ClientTimeout(
            total=timeout_s, connect=connect_s, sock_connect=connect_s, sock_read=self.settings.read_timeout_s
        )

    async def aclose(self) -> None:
        """Close the pool (and any connection still draining). Idempotent."""
        self._closed = True
        for task in list(self._drains):
            task.cancel()
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    # -- calls --------------------------------------------------------------------------------

    async def _send(
        self, method: str, url: str, body: Any, timeout_s: float | None, *, stream: bool = False
    ) -> aiohttp.ClientResponse:
        """Send one request; a response with status >= 300 raises its ``UpstreamError``."""
        if timeout_s is not None and timeout_s <= 0:  # aiohttp would read 0 as "no limit"
            raise UpstreamTimeout(
                f'no time was left to call provider "{self.provider}": the deadline had passed',
                provider=self.provider,
            )
        session = self._ensure_session()
        try:
            resp = await session.request(
                method,
                url,
                data=None if body is None else orjson.dumps(body),
                headers=self._stream_headers if stream else self._headers,
                timeout=self._default_timeout if timeout_s is None else self._timeout(timeout_s),
                allow_redirects=False,  # a redirect would carry the credential elsewhere
            )
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            raise self._transport_error(exc, timeout_s) from _safe_cause(exc)
        if resp.status < 300:
            return resp
        raise await self._status_error(resp)

    async def _status_error(self, resp: aiohttp.ClientResponse) -> UpstreamError:
        body = b""
        try:
            while len(body) < MAX_ERROR_BODY_BYTES:
                data = await resp.content.read(MAX_ERROR_BODY_BYTES - len(body))
                if not data:
                    break
                body += data
        except (aiohttp.ClientError, OSError, TimeoutError):
            pass  # the status says enough
        finally:
            if resp.content.at_eof():
                resp.release()
            else:
                resp.close()
        if 300 <= resp.status < 400:
            where = self._redact(resp.headers.get("Location", "elsewhere"))
            return UpstreamUnavailable(
                f'provider "{self.provider}" redirected the gateway (HTTP {resp.status} to {where}): '
                "set its base_url to the final address",
                provider=self.provider,
                http_status=resp.status,
            )
        detail = self._redact(provider_error_text(body))
        return self.error_for_status(
            resp.status, f"HTTP {resp.status}: {detail}", retry_after_s(resp.headers)
        )

    def error_for_status(self, status: int, what: str, retry_after: float | None = None) -> UpstreamError:
        """The error for a provider's status; ``what`` quotes the status and the provider's text."""
        cls = for_http_status(status)
        p = f'provider "{self.provider}"'
        if cls is UpstreamAuthFailed:
            msg = f"{p} rejected the gateway's credentials ({what}): check the api_key configured for it"
        elif cls is UpstreamModelNotFound:
            msg = f"{p} does not know this model or path ({what}): check the route's model and its base_url"
        elif cls is UpstreamRateLimited:
            hint = f"retry after {retry_after:g}s" if retry_after is not None else "retry later"
            msg = f"{p} is rate limiting the gateway ({what}): {hint} or raise the provider's quota"
        elif cls is UpstreamBadRequest:
            msg = f"{p} rejected the request ({what}): change the request as the provider says"
        elif status < 500 and status not in (408, 409, 429):
            msg = f"{p} refused the call ({what}): check its kind and base_url in the config"
        else:
            msg = f"{p} failed ({what}): another target or a later retry may succeed"
        return cls(msg, provider=self.provider, http_status=status, retry_after_s=retry_after)

    def _transport_error(self, exc: BaseException, timeout_s: float | None) -> UpstreamError:
        """A failure before the response headers arrived."""
        p, at = f'provider "{self.provider}"', self.origin
        cls: type[UpstreamError] = UpstreamUnavailable
        if isinstance(exc, aiohttp.ConnectionTimeoutError):
            cls = UpstreamTimeout
            msg = (
                f"{p} did not accept a connection at {at} within {self.settings.connect_timeout_s:g}s "
                f"(connect_timeout_s), or all {self.settings.max_connections} pooled connections stayed busy"
            )
        elif isinstance(exc, aiohttp.SocketTimeoutError):
            cls = UpstreamTimeout
            msg = f"{p} at {at} sent no answer for {self.settings.read_timeout_s:g}s (read_timeout_s)"
        elif isinstance(exc, TimeoutError):
            cls = UpstreamTimeout
            msg = f"{p} at {at} did not answer within the call's time limit of {timeout_s or 0:g}s"
        elif isinstance(exc, aiohttp.ClientConnectorError):
            msg = f"{p} is unreachable at {at}: {_connect_reason(exc)}"
        elif isinstance(exc, aiohttp.InvalidURL):
            msg = f"{p} has an unusable base_url ({exc}): fix it in the config"
        else:
            msg = f"{p} at {at} closed the connection before answering: {_describe(exc)}"
        return cls(self._redact(msg), provider=self.provider)

    def _stream_error(self, exc: BaseException, sent: bool, timeout_s: float | None) -> UpstreamError:
        """A failure while reading a stream; ``sent`` says a Chunk was already yielded."""
        p = f'provider "{self.provider}"'
        if isinstance(exc, ProviderFault):
            detail = self._redact(exc.detail)
            if exc.cls is not None:
                error = exc.cls(f"{p} {detail}", provider=self.provider, http_status=exc.http_status)
            else:
                status = f" {exc.http_status}" if exc.http_status else ""
                error = self.error_for_status(
                    exc.http_status or 500, f"error{status} in its stream: {detail}"
                )
        elif isinstance(exc, aiohttp.SocketTimeoutError):
            error = UpstreamTimeout(
                f"{p} stalled: nothing for {self.settings.read_timeout_s:g}s (read_timeout_s)",
                provider=self.provider,
            )
        elif isinstance(exc, TimeoutError):
            error = UpstreamTimeout(
                f"{p} did not finish within the call's time limit of {timeout_s or 0:g}s",
                provider=self.provider,
            )
        elif isinstance(exc, ValueError):
            error = UpstreamUnavailable(
                f"{p} sent a malformed event ({self._redact(str(exc))[:MAX_DETAIL_CHARS]})",
                provider=self.provider,
            )
        elif not sent:
            error = UpstreamUnavailable(
                f"the stream from {p} broke before any text: {_describe(exc)}", provider=self.provider
            )
        else:
            return UpstreamStreamBroken(
                f"the stream from {p} broke: {_describe(exc)}, after part of the answer was sent",
                provider=self.provider,
            )
        if sent and error.retryable:
            return UpstreamStreamBroken(
                f"{error.message}, after part of the answer was sent",
                provider=self.provider,
                http_status=error.http_status,
            )
        return error

    async def call_json(self, method: str, url: str, body: Any, *, timeout_s: float | None) -> Any:
        """One request whose answer is a JSON document (embeddings)."""
        resp = await self._send(method, url, body, timeout_s)
        data = await self._read_body(resp, timeout_s)
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass  # its args hold the body: not chained
        raise UpstreamUnavailable(
            f'provider "{self.provider}" answered with something that is not JSON: check its base_url',
            provider=self.provider,
            http_status=resp.status,
        )

    async def probe(self, url: str, *, timeout_s: float) -> bytes:
        """GET ``url`` (with the credential) for a health check: the body on 2xx, else raises."""
        resp = await self._send("GET", url, None, timeout_s)
        return await self._read_body(resp, timeout_s)

    async def _read_body(self, resp: aiohttp.ClientResponse, timeout_s: float | None) -> bytes:
        try:
            data = await resp.read()
        except (aiohttp.ClientError, OSError, TimeoutError) as exc:
            resp.close()
            raise self._stream_error(exc, False, timeout_s) from _safe_cause(exc)
        resp.release()
        return data

    async def probe_tcp(self, *, timeout_s: float) -> None:
        """Open and close a TCP connection to the base URL's host: a probe that costs nothing."""
        url = URL(self.settings.base_url)
        if url.host is None or url.port is None:
            raise UpstreamUnavailable(
                f'provider "{self.provider}" has an unusable base_url: fix it in the config',
                provider=self.provider,
            )
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(url.host, url.port), timeout_s)
        except (OSError, TimeoutError) as exc:
            reason = "no answer in time" if isinstance(exc, TimeoutError) else _os_reason(exc)
            raise UpstreamUnavailable(
                f'provider "{self.provider}" is unreachable at {self.origin}: {reason}',
                provider=self.provider,
            ) from exc
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()

    # -- the streaming skeleton ----------------------------------------------------------------

    async def stream(
        self, url: str, body: Any, decoder: StreamDecoder, *, timeout_s: float | None
    ) -> AsyncGenerator[Chunk, None]:
        """POST ``body`` to ``url`` and yield Chunks as the ``Backend`` contract says.

        One Chunk per network read, joining all the text that read completed;
        the finish is held back and sent with the usage in the last Chunk, once
        the terminator (or EOF) arrived, since providers send usage after the
        finish reason.
        """
        resp = await self._send("POST", url, body, timeout_s, stream=True)
        sent = False
        # What ``finally`` does with the connection: "close" (failed or abandoned
        # mid-answer), "drain" (answer complete, body maybe not), "release".
        after = "close"
        tail: list[str] = []
        content = resp.content
        try:
            while True:
                failure: BaseException | None = None
                try:
                    data = await content.readany()
                    if not data:
                        break
                    text = decoder.feed(data)
                    if decoder.buffered > MAX_EVENT_BYTES:
                        raise ValueError(f"an event longer than {MAX_EVENT_BYTES} bytes")
                except (ProviderFault, ValueError, aiohttp.ClientError, OSError, TimeoutError) as exc:
                    failure = exc
                if failure is not None:  # raised outside the handler: no implicit __context__
                    raise self._stream_error(failure, sent, timeout_s) from _safe_cause(failure)
                if text:
                    if decoder.finish_reason is None:
                        sent = True
                        yield Chunk(text)
                    else:
                        tail.append(text)
                if decoder.done:
                    break
            if decoder.finish_reason is None:
                ending = "sent its terminator" if decoder.done else "closed the stream"
                if not sent:  # nothing reached the client: another target may serve it
                    raise UpstreamUnavailable(
                        f'provider "{self.provider}" {ending} without any text or finish reason',
                        provider=self.provider,
                    )
                raise UpstreamStreamBroken(
                    f'provider "{self.provider}" {ending} without a finish reason, '
                    "after part of the answer was sent",
                    provider=self.provider,
                )
            after = "drain"  # closed at this yield: drain in the background, final chunk undelayed
            yield Chunk("".join(tail), decoder.finish_reason, decoder.usage, decoder.model)
            # The consumer asked for more: it waits for the end anyway, so finish the body here.
            after = "close"
            if content.at_eof() or await _read_to_end(resp):
                after = "release"
        finally:
            if after == "release" or (after == "drain" and content.at_eof()):
                resp.release()  # the body ended: the connection goes back to the pool
            elif after == "drain":
                self._drain_later(resp)
            else:
                resp.close()  # the socket closes: the provider stops generating

    def _drain_later(self, resp: aiohttp.ClientResponse) -> None:
        try:
            task = asyncio.get_running_loop().create_task(_drain(resp))
        except RuntimeError:  # no running loop (finalised at shutdown): just close
            resp.close()
            return
        self._drains.add(task)
        task.add_done_callback(self._drains.discard)


async def _read_to_end(resp: aiohttp.ClientResponse) -> bool:
    """Read the rest of a finished stream's body; True when the body ended in
    time and in size (DRAIN_TIMEOUT_S, DRAIN_MAX_BYTES), so the connection can be pooled."""
    try:
        async with asyncio.timeout(DRAIN_TIMEOUT_S):
            left = DRAIN_MAX_BYTES
            while left > 0:
                data = await resp.content.readany()
                if not data:
                    return True
                left -= len(data)
    except (aiohttp.ClientError, OSError, TimeoutError):
        pass
    return False


async def _drain(resp: aiohttp.ClientResponse) -> None:
    ended = False
    try:
        ended = await _read_to_end(resp)
    finally:
        if ended:
            resp.release()
        else:
            resp.close()


def _safe_cause(exc: BaseException) -> BaseException | None:
    """The exception to chain from: never one that may hold a credential, that is
    aiohttp's response errors (request headers) and the decoders' own errors
    (provider text, already quoted redacted in the message)."""
    if isinstance(exc, aiohttp.ClientResponseError | ProviderFault | ValueError):
        return None
    return exc


def _os_reason(exc: OSError) -> str:
    if exc.errno == errno.ECONNREFUSED:
        return "connection refused"
    if exc.errno == errno.ECONNRESET:
        return "connection reset"
    if exc.errno in (errno.EHOSTUNREACH, errno.ENETUNREACH):
        return "no route to host"
    return exc.strerror or type(exc).__name__


def _connect_reason(exc: aiohttp.ClientConnectorError) -> str:
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return f"cannot resolve host {exc.host!r}"
    if isinstance(exc, aiohttp.ClientSSLError):
        return f"TLS handshake failed ({exc.os_error})"
    return _os_reason(exc.os_error)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, aiohttp.ClientPayloadError | aiohttp.ServerDisconnectedError):
        return "the connection closed before the response was complete"
    if isinstance(exc, ConnectionResetError):
        return "connection reset"
    if isinstance(exc, OSError):
        return _os_reason(exc)
    return str(exc) or type(exc).__name__
