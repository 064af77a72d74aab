"""The client for applications: the data plane and the control plane over gRPC.

    async with GatewayClient("gateway:50051", key) as client:
        async for chunk in client.chat("default", [("user", "Hello")]):
            print(chunk.text, end="", flush=True)

==========================  ===================================================================
``GatewayClient``           async (``grpc.aio``): ``chat``, ``complete`` (streams of
                            ``ChatChunk``), ``chat_text`` (a whole ``Answer``), ``embed``,
                            ``list_routes``. Key: ``key=`` or ``$MESHGATE_KEY``.
``SyncGatewayClient``       the same methods, blocking; streams are plain iterators.
``AdminClient``             async control plane: backends, keys, routes. Key: ``key=`` or
                            ``$MESHGATE_ADMIN_KEY``.
``SyncAdminClient``         the same, blocking.
==========================  ===================================================================

Contract shared by every method:

- Results are the plain frozen dataclasses below; no protobuf reaches the caller.
- Every failure raises the ``router.errors`` class of the gRPC status
  (``BY_STATUS``; ``MeshgateError`` for the others, with ``status`` set to the
  code's name), with the gateway's message and ``retry_after_s`` from the
  ``retry-after-s`` trailing metadata; the ``grpc.RpcError`` is its
  ``__cause__``. A missing key raises ``Unauthenticated`` before any call.
- ``timeout_s`` is the call's deadline in seconds (``None``: no deadline).
- A stream starts its RPC on the first ``__anext__``/``__next__``. Leaving the
  loop early, ``aclose()``/``close()``, leaving its ``with`` block, or
  cancelling the task that iterates it cancels the RPC, and the gateway stops
  the upstream generation. (``break`` drops the stream, which cancels the RPC
  when it is collected; hold no other reference to it, or close it.)
- A stream that ends without a chunk carrying a finish reason raises
  ``Unavailable``: the text already received is all there is.

Clients hold one channel each, opened on first use (the async ones on the
event loop that first uses them). Async clients belong to one event loop; sync
clients may be shared between threads. ``close()`` is idempotent.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeAlias

import grpc
import grpc.aio

from router._proto.meshgate.v1 import admin_pb2, admin_pb2_grpc, gateway_pb2, gateway_pb2_grpc
from router.domain import BackendLoad, Message, Usage
from router.errors import BY_STATUS, InvalidRequest, MeshgateError, Unauthenticated, Unavailable

__all__ = [
    "DEFAULT_TARGET",
    "AdminClient",
    "Answer",
    "BackendInfo",
    "ChatChunk",
    "ChatStream",
    "EmbedResult",
    "GatewayClient",
    "KeyInfo",
    "MessageLike",
    "RouteDef",
    "RouteInfo",
    "SyncAdminClient",
    "SyncChatStream",
    "SyncGatewayClient",
    "TargetDef",
    "from_rpc_error",
    "to_messages",
]

DEFAULT_TARGET = "127.0.0.1:50051"
KEY_ENV = "MESHGATE_KEY"
ADMIN_KEY_ENV = "MESHGATE_ADMIN_KEY"
RETRY_AFTER_KEY = "retry-after-s"

# Embedding answers can be tens of MiB (2,048 vectors of a few thousand floats);
# gRPC's default 4 MiB receive limit would refuse them. The caller's options win.
_DEFAULT_OPTIONS: tuple[tuple[str, Any], ...] = (("grpc.max_receive_message_length", 256 * 1024 * 1024),)

MessageLike: TypeAlias = Message | tuple[str, str] | Mapping[str, str]
"""A conversation turn: a ``Message``, a ``(role, content)`` tuple, or a
``{"role": ..., "content": ...}`` dict (other keys are ignored)."""


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class ChatChunk:
    """A piece of a streamed answer.

    ``text`` is the new text since the previous chunk. The last chunk alone
    has ``finish_reason`` ("stop", "length", "content_filter", "tool_calls"),
    ``usage``, ``model``, ``backend`` and ``request_id``; on the others they
    are ``None`` or empty.
    """

    text: str
    finish_reason: str | None = None
    usage: Usage | None = None
    model: str = ""
    backend: str = ""
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class Answer:
    """A whole answer, as ``chat_text`` collects it.

    ``ttft_s``: seconds from the call to the first chunk carrying text (to the
    last chunk for an empty answer); ``total_s``: to the end of the stream.
    """

    text: str
    finish_reason: str
    usage: Usage
    model: str
    backend: str
    request_id: str
    ttft_s: float
    total_s: float


@dataclass(frozen=True, slots=True)
class EmbedResult:
    """One vector per input, in the order of the inputs."""

    vectors: list[list[float]]
    usage: Usage
    model: str
    backend: str
    request_id: str


@dataclass(frozen=True, slots=True)
class RouteInfo:
    """A route the caller's key may use; ``type`` is "chat", "completion" or "embedding"."""

    name: str
    type: str
    models: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class BackendInfo:
    """A backend as the gateway sees it: a configured provider or a registered host.

    ``state`` is "healthy", "unhealthy", "draining" (or "unknown");
    ``lease_expires_unix_ms`` is 0 for configured providers; ``load`` is the
    last load the host reported: all zeros for configured providers and for a
    host before its first report (``None`` only if the gateway sent no load).
    """

    id: str
    url: str
    models: tuple[str, ...]
    protocol: str
    labels: Mapping[str, str]
    state: str
    lease_expires_unix_ms: int
    load: BackendLoad | None
    in_flight: int
    configured: bool


@dataclass(frozen=True, slots=True)
class KeyInfo:
    """A consumer key, without its secret. Times are Unix milliseconds (0: never)."""

    id: str
    name: str
    team: str
    prefix: str
    created_unix_ms: int
    revoked_unix_ms: int = 0
    configured: bool = False

    @property
    def revoked(self) -> bool:
        return self.revoked_unix_ms != 0


@dataclass(frozen=True, slots=True)
class TargetDef:
    """Where a route sends requests: ``model`` at ``provider`` (empty: only hosts
    registered for the model), with a relative ``weight`` of 1 to 1,000."""

    model: str
    provider: str = ""
    weight: int = 1


@dataclass(frozen=True, slots=True)
class RouteDef:
    """A route as the control plane sees it. ``allow`` lists the groups whose
    keys may call it ("*": every key); ``configured`` routes come from the
    config file and are read-only."""

    name: str
    type: str
    targets: tuple[TargetDef, ...]
    allow: tuple[str, ...]
    configured: bool = False


# --------------------------------------------------------------------------- conversions


def from_rpc_error(exc: grpc.RpcError) -> MeshgateError:
    """The ``router.errors`` exception for a failed call (raise it ``from exc``)."""
    code = exc.code() if callable(getattr(exc, "code", None)) else None
    name: str = getattr(code, "name", "UNKNOWN")
    details = exc.details() if callable(getattr(exc, "details", None)) else None
    cls = BY_STATUS.get(name, MeshgateError)
    error = cls(str(details or name), retry_after_s=_retry_after(exc))
    if cls is MeshgateError:
        error.status = name  # keep the real code (UNIMPLEMENTED, UNKNOWN, ...) for callers and logs
    return error


def _retry_after(exc: grpc.RpcError) -> float | None:
    trailing = exc.trailing_metadata() if callable(getattr(exc, "trailing_metadata", None)) else None
    for key, value in trailing or ():
        if key == RETRY_AFTER_KEY:
            try:
                seconds = float(value.decode() if isinstance(value, bytes) else value)
            except ValueError:
                return None
            return seconds if math.isfinite(seconds) and seconds >= 0 else None
    return None


def to_messages(messages: Iterable[MessageLike]) -> tuple[Message, ...]:
    """Normalise a conversation to ``Message`` objects (``InvalidRequest`` on a malformed turn)."""
    if isinstance(messages, str | bytes):
        raise InvalidRequest(
            "messages: expected a list of messages, got a string; for one prompt pass [('user', text)]"
        )
    return tuple(_to_message(i, m) for i, m in enumerate(messages))


def _to_message(index: int, message: object) -> Message:
    if isinstance(message, Message):
        return message
    if isinstance(message, tuple | list) and len(message) == 2:
        role, content = message
    elif isinstance(message, Mapping):
        role, content = message.get("role"), message.get("content")
    else:
        role = content = None
    if isinstance(role, str) and isinstance(content, str):
        return Message(role, content)
    raise InvalidRequest(
        f"messages[{index}]: expected a Message, a (role, content) tuple or a "
        f"{{'role': str, 'content': str}} dict, got {_short(message)}"
    )


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


_FINISH_REASONS = {
    gateway_pb2.FINISH_REASON_STOP: "stop",
    gateway_pb2.FINISH_REASON_LENGTH: "length",
    gateway_pb2.FINISH_REASON_CONTENT_FILTER: "content_filter",
    gateway_pb2.FINISH_REASON_TOOL_CALLS: "tool_calls",
}
_ROUTE_TYPES = {
    gateway_pb2.ROUTE_TYPE_CHAT: "chat",
    gateway_pb2.ROUTE_TYPE_COMPLETION: "completion",
    gateway_pb2.ROUTE_TYPE_EMBEDDING: "embedding",
}
_BACKEND_STATES = {
    admin_pb2.BACKEND_STATE_HEALTHY: "healthy",
    admin_pb2.BACKEND_STATE_UNHEALTHY: "unhealthy",
    admin_pb2.BACKEND_STATE_DRAINING: "draining",
}


def _sampled(
    request: gateway_pb2.ChatRequest | gateway_pb2.CompleteRequest,
    max_tokens: int | None,
    temperature: float | None,
    top_p: float | None,
    stop: Sequence[str],
    seed: int | None,
    tags: Mapping[str, str] | None,
) -> None:
    if isinstance(stop, str):
        stop = (stop,)
    request.stop.extend(stop)
    if tags:
        request.tags.update(tags)
    if max_tokens is not None:
        request.max_tokens = max_tokens
    if temperature is not None:
        request.temperature = temperature
    if top_p is not None:
        request.top_p = top_p
    if seed is not None:
        request.seed = seed


def _usage(usage: gateway_pb2.Usage) -> Usage:
    return Usage(usage.prompt_tokens, usage.completion_tokens, usage.cached_prompt_tokens, usage.estimated)


def _chunk(message: gateway_pb2.ChatChunk) -> ChatChunk:
    if message.finish_reason == gateway_pb2.FINISH_REASON_UNSPECIFIED:
        return ChatChunk(message.text)
    return ChatChunk(
        text=message.text,
        finish_reason=_FINISH_REASONS.get(message.finish_reason, "unknown"),
        usage=_usage(message.usage) if message.HasField("usage") else None,
        model=message.model,
        backend=message.backend,
        request_id=message.request_id,
    )


def _embed_result(response: gateway_pb2.EmbedResponse) -> EmbedResult:
    return EmbedResult(
        vectors=[list(e.values) for e in response.embeddings],
        usage=_usage(response.usage),
        model=response.model,
        backend=response.backend,
        request_id=response.request_id,
    )


def _embed_request(
    route: str, inputs: str | Sequence[str], tags: Mapping[str, str] | None, request_id: str
) -> gateway_pb2.EmbedRequest:
    texts = [inputs] if isinstance(inputs, str) else list(inputs)
    return gateway_pb2.EmbedRequest(route=route, inputs=texts, tags=dict(tags or {}), request_id=request_id)


def _route_infos(response: gateway_pb2.ListRoutesResponse) -> list[RouteInfo]:
    return [RouteInfo(r.name, _ROUTE_TYPES.get(r.type, "unknown"), tuple(r.models)) for r in response.routes]


def _backend(b: admin_pb2.Backend) -> BackendInfo:
    load = None
    if b.HasField("load"):
        load = BackendLoad(b.load.running_requests, b.load.waiting_requests, b.load.kv_cache_usage)
    return BackendInfo(
        id=b.id,
        url=b.url,
        models=tuple(b.models),
        protocol=b.protocol,
        labels=dict(b.labels),
        state=_BACKEND_STATES.get(b.state, "unknown"),
        lease_expires_unix_ms=b.lease_expires_unix_ms,
        load=load,
        in_flight=b.in_flight,
        configured=b.configured,
    )


def _key(k: admin_pb2.Key) -> KeyInfo:
    return KeyInfo(k.id, k.name, k.team, k.prefix, k.created_unix_ms, k.revoked_unix_ms, k.configured)


def _route_def(r: admin_pb2.Route) -> RouteDef:
    targets = tuple(TargetDef(t.model, t.provider, t.weight or 1) for t in r.targets)
    return RouteDef(r.name, r.type, targets, tuple(r.allow), r.configured)


def _route_pb(route: RouteDef) -> admin_pb2.Route:
    targets = [admin_pb2.Target(provider=t.provider, model=t.model, weight=t.weight) for t in route.targets]
    return admin_pb2.Route(name=route.name, type=route.type, targets=targets, allow=list(route.allow))


def _register_request(
    url: str, models: Sequence[str], protocol: str, labels: Mapping[str, str] | None, lease_ttl_s: int
) -> admin_pb2.RegisterBackendRequest:
    return admin_pb2.RegisterBackendRequest(
        url=url, models=list(models), protocol=protocol, labels=dict(labels or {}), lease_ttl_s=lease_ttl_s
    )


def _heartbeat_request(backend_id: str, load: BackendLoad | None) -> admin_pb2.HeartbeatRequest:
    request = admin_pb2.HeartbeatRequest(backend_id=backend_id)
    if load is not None:
        request.load.CopyFrom(
            admin_pb2.BackendLoad(
                running_requests=load.running_requests,
                waiting_requests=load.waiting_requests,
                kv_cache_usage=load.kv_cache_usage,
            )
        )
    return request


class _Collector:
    """Joins a stream's chunks into an ``Answer`` and times it."""

    def __init__(self) -> None:
        self._start = time.perf_counter()
        self._parts: list[str] = []
        self._ttft_s: float | None = None
        self._last: ChatChunk | None = None

    def add(self, chunk: ChatChunk) -> None:
        if chunk.text:
            self._parts.append(chunk.text)
            if self._ttft_s is None:
                self._ttft_s = time.perf_counter() - self._start
        if chunk.finish_reason is not None:
            self._last = chunk

    def answer(self) -> Answer:
        total_s = time.perf_counter() - self._start
        last = self._last
        if last is None or last.finish_reason is None:  # the streams never end this way without raising
            raise Unavailable("the answer ended without a finish reason")
        return Answer(
            text="".join(self._parts),
            finish_reason=last.finish_reason,
            usage=last.usage or Usage(),
            model=last.model,
            backend=last.backend,
            request_id=last.request_id,
            ttft_s=self._ttft_s if self._ttft_s is not None else total_s,
            total_s=total_s,
        )


_NO_FINISH = "the gateway ended the stream without a finish reason; the text received is all there is"


# --------------------------------------------------------------------------- streams


class ChatStream(AsyncIterator[ChatChunk]):
    """An async iterator of ``ChatChunk``; the RPC starts on the first ``__anext__``.

    ``aclose()`` (or leaving ``async with``) cancels the RPC; idempotent.
    """

    def __init__(self, start: Callable[[], Any]) -> None:
        self._start: Callable[[], Any] | None = start
        self._call: Any = None
        self._finished = False
        self._closed = False

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> ChatChunk:
        if self._closed:
            raise StopAsyncIteration
        if self._call is None:
            assert self._start is not None
            self._call, self._start = self._start(), None
        try:
            message = await self._call.read()
        except grpc.RpcError as exc:
            self._closed = True
            raise from_rpc_error(exc) from exc
        except BaseException:  # the consuming task was cancelled: stop the upstream too
            self._closed = True
            self._call.cancel()
            raise
        if message is grpc.aio.EOF:
            self._closed = True
            if not self._finished:
                raise Unavailable(_NO_FINISH)
            raise StopAsyncIteration
        chunk = _chunk(message)
        if chunk.finish_reason is not None:
            self._finished = True
        return chunk

    async def aclose(self) -> None:
        self._closed = True
        if self._call is not None:
            self._call.cancel()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    def __del__(self) -> None:
        # A stream dropped mid-answer (``break``) cancels its call here, so
        # the gateway stops the upstream without waiting for the loop's GC.
        call = getattr(self, "_call", None)
        if call is not None and not self._closed:
            call.cancel()


class SyncChatStream(Iterator[ChatChunk]):
    """An iterator of ``ChatChunk``; the RPC starts on the first ``__next__``.

    ``close()`` (or leaving ``with``) cancels the RPC; idempotent.
    """

    def __init__(self, start: Callable[[], Any]) -> None:
        self._start: Callable[[], Any] | None = start
        self._call: Any = None
        self._finished = False
        self._closed = False

    def __iter__(self) -> Self:
        return self

    def __next__(self) -> ChatChunk:
        if self._closed:
            raise StopIteration
        if self._call is None:
            assert self._start is not None
            self._call, self._start = self._start(), None
        try:
            message = next(self._call)
        except StopIteration:
            self._closed = True
            if not self._finished:
                raise Unavailable(_NO_FINISH) from None
            raise
        except grpc.RpcError as exc:
            self._closed = True
            raise from_rpc_error(exc) from exc
        except BaseException:  # KeyboardInterrupt and the like: stop the upstream too
            self._closed = True
            self._call.cancel()
            raise
        chunk = _chunk(message)
        if chunk.finish_reason is not None:
            self._finished = True
        return chunk

    def close(self) -> None:
        self._closed = True
        if self._call is not None:
            self._call.cancel()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __del__(self) -> None:
        call = getattr(self, "_call", None)
        if call is not None and not self._closed:
            call.cancel()


# --------------------------------------------------------------------------- channels


class _Connection:
    """Target, key and channel settings shared by the four clients."""

    _key_env = KEY_ENV
    _what = "Meshgate key"

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        key: str | None = None,
        *,
        tls: bool = False,
        root_certificates: bytes | None = None,
        options: Sequence[tuple[str, Any]] = (),
    ) -> None:
        self.target = target
        self._key = key if key is not None else os.environ.get(self._key_env)
        self._tls = tls or root_certificates is not None
        self._root_certificates = root_certificates
        given = {name for name, _ in options}
        self._options = [*(o for o in _DEFAULT_OPTIONS if o[0] not in given), *options]

    def __repr__(self) -> str:  # never shows the key
        return f"{type(self).__name__}({self.target!r}, tls={self._tls})"

    def _metadata(self) -> tuple[tuple[str, str], ...]:
        if not self._key:
            raise Unauthenticated(f"no {self._what}: pass key=... or set {self._key_env}")
        return (("authorization", f"Bearer {self._key}"),)

    def _credentials(self) -> Any:
        return grpc.ssl_channel_credentials(root_certificates=self._root_certificates)


class _AsyncConnection(_Connection):
    _stub_class: Callable[[Any], Any]
    _channel: Any = None
    _stub_obj: Any = None

    def _stub(self) -> Any:
        if self._stub_obj is None:
            if self._tls:
                self._channel = grpc.aio.secure_channel(self.target, self._credentials(), self._options)
            else:
                self._channel = grpc.aio.insecure_channel(self.target, self._options)
            self._stub_obj = self._stub_class(self._channel)
        return self._stub_obj

    async def _unary(self, method: str, request: Any, timeout_s: float | None) -> Any:
        metadata = self._metadata()
        try:
            return await getattr(self._stub(), method)(request, metadata=metadata, timeout=timeout_s)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc

    async def close(self) -> None:
        """Close the channel, cancelling calls in flight. Idempotent."""
        channel, self._channel, self._stub_obj = self._channel, None, None
        if channel is not None:
            await channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()


class _SyncConnection(_Connection):
    _stub_class: Callable[[Any], Any]
    _channel: Any = None
    _stub_obj: Any = None

    def _stub(self) -> Any:
        if self._stub_obj is None:
            if self._tls:
                self._channel = grpc.secure_channel(self.target, self._credentials(), self._options)
            else:
                self._channel = grpc.insecure_channel(self.target, self._options)
            self._stub_obj = self._stub_class(self._channel)
        return self._stub_obj

    def _unary(self, method: str, request: Any, timeout_s: float | None) -> Any:
        metadata = self._metadata()
        try:
            return getattr(self._stub(), method)(request, metadata=metadata, timeout=timeout_s)
        except grpc.RpcError as exc:
            raise from_rpc_error(exc) from exc

    def close(self) -> None:
        """Close the channel, cancelling calls in flight. Idempotent."""
        channel, self._channel, self._stub_obj = self._channel, None, None
        if channel is not None:
            channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _chat_request(
    route: str,
    messages: Iterable[MessageLike],
    max_tokens: int | None,
    temperature: float | None,
    top_p: float | None,
    stop: Sequence[str],
    seed: int | None,
    tags: Mapping[str, str] | None,
    request_id: str,
) -> gateway_pb2.ChatRequest:
    turns = [gateway_pb2.Message(role=m.role, content=m.content) for m in to_messages(messages)]
    request = gateway_pb2.ChatRequest(route=route, messages=turns, request_id=request_id)
    _sampled(request, max_tokens, temperature, top_p, stop, seed, tags)
    return request


def _complete_request(
    route: str,
    prompt: str,
    max_tokens: int | None,
    temperature: float | None,
    top_p: float | None,
    stop: Sequence[str],
    seed: int | None,
    tags: Mapping[str, str] | None,
    request_id: str,
) -> gateway_pb2.CompleteRequest:
    request = gateway_pb2.CompleteRequest(route=route, prompt=prompt, request_id=request_id)
    _sampled(request, max_tokens, temperature, top_p, stop, seed, tags)
    return request


# --------------------------------------------------------------------------- data plane


class GatewayClient(_AsyncConnection):
    """The data plane, async. ``GatewayClient(target, key=None, *, tls=False,
    root_certificates=None, options=())``; ``key`` defaults to ``$MESHGATE_KEY``;
    ``root_certificates`` (PEM) implies ``tls``; ``options`` are gRPC channel options."""

    _stub_class = gateway_pb2_grpc.GatewayStub

    def chat(
        self,
        route: str,
        messages: Iterable[MessageLike],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: Sequence[str] = (),
        seed: int | None = None,
        tags: Mapping[str, str] | None = None,
        request_id: str = "",
        timeout_s: float | None = None,
    ) -> ChatStream:
        """Stream a chat answer from ``route``. Raises at once on a malformed
        message or a missing key; the RPC starts when iteration does."""
        request = _chat_request(route, messages, max_tokens, temperature, top_p, stop, seed, tags, request_id)
        metadata = self._metadata()
        return ChatStream(lambda: self._stub().Chat(request, metadata=metadata, timeout=timeout_s))

    def complete(
        self,
        route: str,
        prompt: str,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: Sequence[str] = (),
        seed: int | None = None,
        tags: Mapping[str, str] | None = None,
        request_id: str = "",
        timeout_s: float | None = None,
    ) -> ChatStream:
        """Stream a plain-text completion of ``prompt``; as ``chat``."""
        request = _complete_request(
            route, prompt, max_tokens, temperature, top_p, stop, seed, tags, request_id
        )
        metadata = self._metadata()
        return ChatStream(lambda: self._stub().Complete(request, metadata=metadata, timeout=timeout_s))

    async def chat_text(
        self,
        route: str,
        messages: Iterable[MessageLike],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: Sequence[str] = (),
        seed: int | None = None,
        tags: Mapping[str, str] | None = None,
        request_id: str = "",
        timeout_s: float | None = None,
    ) -> Answer:
        """The whole chat answer, with its timings."""
        collector = _Collector()
        async with self.chat(
            route,
            messages,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            stop=stop,
            seed=seed,
            tags=tags,
            request_id=request_id,
            timeout_s=timeout_s,
        ) as stream:
            async for chunk in stream:
                collector.add(chunk)
        return collector.answer()

    async def embed(
        self,
        route: str,
        inputs: str | Sequence[str],
        *,
        tags: Mapping[str, str] | None = None,
        request_id: str = "",
        timeout_s: float | None = None,
    ) -> EmbedResult:
        """Embed ``inputs`` (one string is one input) with an embedding route."""
        request = _embed_request(route, inputs, tags, request_id)
        return _embed_result(await self._unary("Embed", request, timeout_s))

    async def list_routes(self, *, timeout_s: float | None = None) -> list[RouteInfo]:
        """The routes this key may use, sorted by name."""
        response = await self._unary("ListRoutes", gateway_pb2.ListRoutesRequest(), timeout_s)
        return _route_infos(response)


class SyncGatewayClient(_SyncConnection):
    """The data plane, blocking; the same constructor and methods as ``GatewayClient``."""

    _stub_class = gateway_pb2_grpc.GatewayStub

    def chat(
        self,
        route: str,
        messages: Iterable[MessageLike],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: Sequence[str] = (),
        seed: int | None = None,
        tags: Mapping[str, str] | None = None,
        request_id: str = "",
        timeout_s: float | None = None,
    ) -> SyncChatStream:
        """Stream a chat answer from ``route`` (see ``GatewayClient.chat``)."""
        request = _chat_request(route, messages, max_tokens, temperature, top_p, stop, seed, tags, request_id)
        metadata = self._metadata()
        return SyncChatStream(lambda: self._stub().Chat(request, metadata=metadata, timeout=timeout_s))

    def complete(
        self,
        route: str,
        prompt: str,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: Sequence[str] = (),
        seed: int | None = None,
        tags: Mapping[str, str] | None = None,
        request_id: str = "",
        timeout_s: float | None = None,
    ) -> SyncChatStream:
        """Stream a plain-text completion of ``prompt``."""
        request = _complete_request(
            route, prompt, max_tokens, temperature, top_p, stop, seed, tags, request_id
        )
        metadata = self._metadata()
        return SyncChatStream(lambda: self._stub().Complete(request, metadata=metadata, timeout=timeout_s))

    def chat_text(
        self,
        route: str,
        messages: Iterable[MessageLike],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        top_p: float | None = None,
        stop: Sequence[str] = (),
        seed: int | None = None,
        tags: Mapping[str, str] | None = None,
        request_id: str = "",
        timeout_s: float | None = None,
    ) -> Answer:
        """The whole chat answer, with its timings."""
        collector = _Collector()
        with self.chat(
            route,
            messages,
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            stop=stop,
            seed=seed,
            tags=tags,
            request_id=request_id,
            timeout_s=timeout_s,
        ) as stream:
            for chunk in stream:
                collector.add(chunk)
        return collector.answer()

    def embed(
        self,
        route: str,
        inputs: str | Sequence[str],
        *,
        tags: Mapping[str, str] | None = None,
        request_id: str = "",
        timeout_s: float | None = None,
    ) -> EmbedResult:
        """Embed ``inputs`` (one string is one input) with an embedding route."""
        request = _embed_request(route, inputs, tags, request_id)
        return _embed_result(self._unary("Embed", request, timeout_s))

    def list_routes(self, *, timeout_s: float | None = None) -> list[RouteInfo]:
        """The routes this key may use, sorted by name."""
        return _route_infos(self._unary("ListRoutes", gateway_pb2.ListRoutesRequest(), timeout_s))


# --------------------------------------------------------------------------- control plane


class AdminClient(_AsyncConnection):
    """The control plane, async; the constructor of ``GatewayClient`` with ``key``
    defaulting to ``$MESHGATE_ADMIN_KEY``. Every call needs an admin key."""

    _stub_class = admin_pb2_grpc.AdminStub

    _key_env = ADMIN_KEY_ENV
    _what = "Meshgate admin key"

    async def register_backend(
        self,
        url: str,
        models: Sequence[str],
        *,
        protocol: str = "vllm",
        labels: Mapping[str, str] | None = None,
        lease_ttl_s: int = 0,
        timeout_s: float | None = None,
    ) -> BackendInfo:
        """Register a model host (again: same url, same id). ``lease_ttl_s`` 0: 30 s."""
        request = _register_request(url, models, protocol, labels, lease_ttl_s)
        return _backend(await self._unary("RegisterBackend", request, timeout_s))

    async def heartbeat(
        self, backend_id: str, load: BackendLoad | None = None, *, timeout_s: float | None = None
    ) -> int:
        """Renew a lease, reporting load; returns the new expiry (Unix ms). ``NotFound``: register again."""
        response = await self._unary("Heartbeat", _heartbeat_request(backend_id, load), timeout_s)
        return int(response.lease_expires_unix_ms)

    async def deregister_backend(self, backend_id: str, *, timeout_s: float | None = None) -> bool:
        """Remove a registered backend; ``False`` if none had that id. Idempotent."""
        request = admin_pb2.DeregisterBackendRequest(backend_id=backend_id)
        return bool((await self._unary("DeregisterBackend", request, timeout_s)).removed)

    async def list_backends(self, *, timeout_s: float | None = None) -> list[BackendInfo]:
        response = await self._unary("ListBackends", admin_pb2.ListBackendsRequest(), timeout_s)
        return [_backend(b) for b in response.backends]

    async def create_key(
        self, name: str, team: str, *, timeout_s: float | None = None
    ) -> tuple[KeyInfo, str]:
        """Make a consumer key; returns it and its secret, which is shown nowhere else, ever."""
        request = admin_pb2.CreateKeyRequest(name=name, team=team)
        response = await self._unary("CreateKey", request, timeout_s)
        return _key(response.key), str(response.secret)

    async def revoke_key(self, key_id: str, *, timeout_s: float | None = None) -> KeyInfo:
        """Revoke a key at once. Idempotent."""
        request = admin_pb2.RevokeKeyRequest(key_id=key_id)
        return _key(await self._unary("RevokeKey", request, timeout_s))

    async def list_keys(
        self, *, team: str = "", include_revoked: bool = False, timeout_s: float | None = None
    ) -> list[KeyInfo]:
        request = admin_pb2.ListKeysRequest(team=team, include_revoked=include_revoked)
        return [_key(k) for k in (await self._unary("ListKeys", request, timeout_s)).keys]

    async def upsert_route(self, route: RouteDef, *, timeout_s: float | None = None) -> RouteDef:
        """Create or replace a route; returns it as stored."""
        request = admin_pb2.UpsertRouteRequest(route=_route_pb(route))
        return _route_def(await self._unary("UpsertRoute", request, timeout_s))

    async def delete_route(self, name: str, *, timeout_s: float | None = None) -> None:
        """Delete a route made with ``upsert_route`` (``NotFound`` if there is none)."""
        await self._unary("DeleteRoute", admin_pb2.DeleteRouteRequest(name=name), timeout_s)

    async def list_all_routes(self, *, timeout_s: float | None = None) -> list[RouteDef]:
        response = await self._unary("ListAllRoutes", admin_pb2.ListAllRoutesRequest(), timeout_s)
        return [_route_def(r) for r in response.routes]


class SyncAdminClient(_SyncConnection):
    """The control plane, blocking; the same constructor and methods as ``AdminClient``."""

    _stub_class = admin_pb2_grpc.AdminStub

    _key_env = ADMIN_KEY_ENV
    _what = "Meshgate admin key"

    def register_backend(
        self,
        url: str,
        models: Sequence[str],
        *,
        protocol: str = "vllm",
        labels: Mapping[str, str] | None = None,
        lease_ttl_s: int = 0,
        timeout_s: float | None = None,
    ) -> BackendInfo:
        request = _register_request(url, models, protocol, labels, lease_ttl_s)
        return _backend(self._unary("RegisterBackend", request, timeout_s))

    def heartbeat(
        self, backend_id: str, load: BackendLoad | None = None, *, timeout_s: float | None = None
    ) -> int:
        response = self._unary("Heartbeat", _heartbeat_request(backend_id, load), timeout_s)
        return int(response.lease_expires_unix_ms)

    def deregister_backend(self, backend_id: str, *, timeout_s: float | None = None) -> bool:
        request = admin_pb2.DeregisterBackendRequest(backend_id=backend_id)
        return bool(self._unary("DeregisterBackend", request, timeout_s).removed)

    def list_backends(self, *, timeout_s: float | None = None) -> list[BackendInfo]:
        response = self._unary("ListBackends", admin_pb2.ListBackendsRequest(), timeout_s)
        return [_backend(b) for b in response.backends]

    def create_key(self, name: str, team: str, *, timeout_s: float | None = None) -> tuple[KeyInfo, str]:
        response = self._unary("CreateKey", admin_pb2.CreateKeyRequest(name=name, team=team), timeout_s)
        return _key(response.key), str(response.secret)

    def revoke_key(self, key_id: str, *, timeout_s: float | None = None) -> KeyInfo:
        return _key(self._unary("RevokeKey", admin_pb2.RevokeKeyRequest(key_id=key_id), timeout_s))

    def list_keys(
        self, *, team: str = "", include_revoked: bool = False, timeout_s: float | None = None
    ) -> list[KeyInfo]:
        request = admin_pb2.ListKeysRequest(team=team, include_revoked=include_revoked)
        return [_key(k) for k in self._unary("ListKeys", request, timeout_s).keys]

    def upsert_route(self, route: RouteDef, *, timeout_s: float | None = None) -> RouteDef:
        request = admin_pb2.UpsertRouteRequest(route=_route_pb(route))
        return _route_def(self._unary("UpsertRoute", request, timeout_s))

    def delete_route(self, name: str, *, timeout_s: float | None = None) -> None:
        self._unary("DeleteRoute", admin_pb2.DeleteRouteRequest(name=name), timeout_s)

    def list_all_routes(self, *, timeout_s: float | None = None) -> list[RouteDef]:
        response = self._unary("ListAllRoutes", admin_pb2.ListAllRoutesRequest(), timeout_s)
        return [_route_def(r) for r in response.routes]
