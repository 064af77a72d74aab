"""The gRPC edge: the only module that knows protobuf on the server side.

Each method decodes its request into ``router.domain`` objects, calls the
pipeline (data plane) or the registry, key ring and route table (control
plane), and encodes the result. Errors cross here exactly once: a
``MeshgateError`` becomes the status named by its class, with its message and,
when it has one, a ``retry-after-s`` trailing metadata entry. Anything else is
a bug: it is logged with its traceback and the caller gets INTERNAL with a
message that leaks nothing.
"""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc

from router._proto.meshgate.v1 import admin_pb2 as apb
from router._proto.meshgate.v1 import admin_pb2_grpc, gateway_pb2_grpc
from router._proto.meshgate.v1 import gateway_pb2 as pb
from router.auth import KeyView, require_admin
from router.config import RouteSpec, TargetSpec
from router.domain import (
    BackendLoad,
    ChatRequest,
    Chunk,
    CompletionRequest,
    EmbedRequest,
    Message,
    Principal,
    Sampling,
    Usage,
)
from router.errors import MeshgateError
from router.pipeline import Pipeline
from router.registry import Upstream

log = logging.getLogger("meshgate.servicer")

_FINISH = {
    "stop": pb.FINISH_REASON_STOP,
    "length": pb.FINISH_REASON_LENGTH,
    "content_filter": pb.FINISH_REASON_CONTENT_FILTER,
    "tool_calls": pb.FINISH_REASON_TOOL_CALLS,
}
_ROUTE_TYPE = {
    "chat": pb.ROUTE_TYPE_CHAT,
    "completion": pb.ROUTE_TYPE_COMPLETION,
    "embedding": pb.ROUTE_TYPE_EMBEDDING,
}
_INTERNAL = "internal error in the gateway (logged with its traceback); the request was not completed"


def _authorization(context: grpc.aio.ServicerContext[Any, Any]) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == "authorization":
            return str(value)
    return None


async def _abort(context: grpc.aio.ServicerContext[Any, Any], exc: BaseException) -> NoReturn:
    if isinstance(exc, MeshgateError):
        if exc.retry_after_s is not None:
            context.set_trailing_metadata((("retry-after-s", f"{exc.retry_after_s:g}"),))
        await context.abort(grpc.StatusCode[exc.status], exc.message)
    log.error("unexpected error in %s", type(exc).__name__, exc_info=exc)
    await context.abort(grpc.StatusCode.INTERNAL, _INTERNAL)
    raise AssertionError("context.abort returned")  # pragma: no cover


_Req = TypeVar("_Req")
_Resp = TypeVar("_Resp")


def _unary(
    method: Callable[[Any, _Req, Principal], Awaitable[_Resp]],
) -> Callable[[Any, _Req, grpc.aio.ServicerContext[Any, Any]], Awaitable[_Resp]]:
    """Wrap an admin handler: authenticate as admin, then map errors."""

    @functools.wraps(method)
    async def handler(self: Any, request: _Req, context: grpc.aio.ServicerContext[Any, Any]) -> _Resp:
        try:
            principal = self._pipeline.authenticate(_authorization(context))
            require_admin(principal)
            return await method(self, request, principal)
        except Exception as exc:
            await _abort(context, exc)

    return handler


# -- data plane -------------------------------------------------------------


def _sampling(request: pb.ChatRequest | pb.CompleteRequest) -> Sampling:
    return Sampling(
        max_tokens=request.max_tokens if request.HasField("max_tokens") else None,
        temperature=request.temperature if request.HasField("temperature") else None,
        top_p=request.top_p if request.HasField("top_p") else None,
        stop=tuple(request.stop),
        seed=request.seed if request.HasField("seed") else None,
    )


def decode_chat(request: pb.ChatRequest) -> ChatRequest:
    return ChatRequest(
        route=request.route,
        messages=tuple(Message(m.role, m.content) for m in request.messages),
        sampling=_sampling(request),
        tags=dict(request.tags),
        request_id=request.request_id or secrets.token_hex(12),
    )


def decode_completion(request: pb.CompleteRequest) -> CompletionRequest:
    return CompletionRequest(
        route=request.route,
        prompt=request.prompt,
        sampling=_sampling(request),
        tags=dict(request.tags),
        request_id=request.request_id or secrets.token_hex(12),
    )


def _usage(usage: Usage) -> pb.Usage:
    return pb.Usage(
        prompt_tokens=usage.prompt_tokens,
        completion_tokens=usage.completion_tokens,
        cached_prompt_tokens=usage.cached_prompt_tokens,
        estimated=usage.estimated,
    )


def _last(chunk: Chunk, request_id: str) -> pb.ChatChunk:
    return pb.ChatChunk(
        text=chunk.text,
        finish_reason=_FINISH.get(chunk.finish_reason or "stop", pb.FINISH_REASON_STOP),
        usage=_usage(chunk.usage or Usage(estimated=True)),
        model=chunk.model or "",
        backend=chunk.backend or "",
        request_id=request_id,
    )


def _streaming(
    decode: Callable[[Any], ChatRequest | CompletionRequest], stage: str
) -> Callable[[Any, Any, grpc.aio.ServicerContext[Any, Any]], AsyncIterator[pb.ChatChunk]]:
    """A server-streaming handler: decode, run ``Pipeline.<stage>``, encode each
    chunk. Made by a factory (not a wrapper generator) so the per-chunk path
    has no extra layer."""

    async def handler(
        self: GatewayServicer, request: Any, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[pb.ChatChunk]:
        stream: AsyncGenerator[Chunk, None] | None = None
        try:
            principal = self._pipeline.authenticate(_authorization(context))
            decoded = decode(request)
            start = getattr(self._pipeline, stage)
            stream = start(principal, decoded, timeout_s=context.time_remaining())
            assert stream is not None
            async for chunk in stream:
                if chunk.finish_reason is None:
                    yield pb.ChatChunk(text=chunk.text)
                else:
                    yield _last(chunk, decoded.request_id)
        except Exception as exc:
            await _abort(context, exc)
        finally:
            if stream is not None:
                await stream.aclose()

    handler.__name__ = handler.__qualname__ = stage.capitalize()
    return handler


class GatewayServicer(gateway_pb2_grpc.GatewayServicer):
    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline

    Chat = _streaming(decode_chat, "chat")
    Complete = _streaming(decode_completion, "complete")

    async def Embed(
        self, request: pb.EmbedRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.EmbedResponse:
        try:
            principal = self._pipeline.authenticate(_authorization(context))
            embed = EmbedRequest(
                route=request.route,
                inputs=tuple(request.inputs),
                tags=dict(request.tags),
                request_id=request.request_id or secrets.token_hex(12),
            )
            result = await self._pipeline.embed(principal, embed, timeout_s=context.time_remaining())
        except Exception as exc:
            await _abort(context, exc)
        return pb.EmbedResponse(
            embeddings=[pb.Embedding(values=v) for v in result.embeddings.vectors],
            usage=_usage(result.embeddings.usage),
            model=result.embeddings.model,
            backend=result.backend,
            request_id=embed.request_id,
        )

    async def ListRoutes(
        self, request: pb.ListRoutesRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ListRoutesResponse:
        try:
            principal = self._pipeline.authenticate(_authorization(context))
            routes = self._pipeline.routes.visible_to(principal)
        except Exception as exc:
            await _abort(context, exc)
        return pb.ListRoutesResponse(
            routes=[pb.RouteInfo(name=r.name, type=_ROUTE_TYPE[r.type], models=r.models) for r in routes]
        )


# -- control plane ----------------------------------------------------------


def encode_backend(upstream: Upstream, now: float) -> apb.Backend:
    if upstream.draining:
        state = apb.BACKEND_STATE_DRAINING
    elif upstream.is_healthy(now):
        state = apb.BACKEND_STATE_HEALTHY
    else:
        state = apb.BACKEND_STATE_UNHEALTHY
    return apb.Backend(
        id=upstream.id,
        url=upstream.url,
        models=sorted(upstream.models or ()),
        protocol=upstream.protocol,
        labels=dict(upstream.labels),
        state=state,
        lease_expires_unix_ms=int(upstream.lease_expires * 1000),
        load=apb.BackendLoad(
            running_requests=upstream.load.running_requests,
            waiting_requests=upstream.load.waiting_requests,
            kv_cache_usage=upstream.load.kv_cache_usage,
        ),
        in_flight=upstream.in_flight,
        configured=upstream.configured,
    )


def encode_route(route: RouteSpec) -> apb.Route:
    return apb.Route(
        name=route.name,
        type=route.type,
        targets=[apb.Target(provider=t.provider, model=t.model, weight=t.weight) for t in route.targets],
        allow=sorted(route.allow),
        configured=route.configured,
    )


def decode_route(route: apb.Route) -> RouteSpec:
    return RouteSpec(
        name=route.name,
        type=route.type,
        targets=tuple(TargetSpec(t.provider, t.model, t.weight or 1) for t in route.targets),
        allow=frozenset(route.allow),
        configured=False,
    )


def encode_key(view: KeyView) -> apb.Key:
    return apb.Key(
        id=view.id,
        name=view.name,
        team=view.team,
        created_unix_ms=view.created_unix_ms,
        revoked_unix_ms=view.revoked_unix_ms,
        configured=view.configured,
        prefix=view.prefix,
    )


class AdminServicer(admin_pb2_grpc.AdminServicer):
    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline
        self._registry = pipeline.registry
        self._keyring = pipeline.keyring
        self._routes = pipeline.routes

    @_unary
    async def RegisterBackend(self, request: apb.RegisterBackendRequest, principal: Principal) -> apb.Backend:
        upstream = await self._registry.register(
            request.url,
            list(request.models),
            protocol=request.protocol,
            labels=dict(request.labels),
            lease_ttl_s=request.lease_ttl_s,
        )
        return encode_backend(upstream, self._registry.now())

    @_unary
    async def Heartbeat(self, request: apb.HeartbeatRequest, principal: Principal) -> apb.HeartbeatResponse:
        load = None
        if request.HasField("load"):
            load = BackendLoad(
                running_requests=request.load.running_requests,
                waiting_requests=request.load.waiting_requests,
                kv_cache_usage=request.load.kv_cache_usage,
            )
        expires = await self._registry.heartbeat(request.backend_id, load)
        return apb.HeartbeatResponse(lease_expires_unix_ms=int(expires * 1000))

    @_unary
    async def DeregisterBackend(
        self, request: apb.DeregisterBackendRequest, principal: Principal
    ) -> apb.DeregisterBackendResponse:
        return apb.DeregisterBackendResponse(removed=await self._registry.deregister(request.backend_id))

    @_unary
    async def ListBackends(
        self, request: apb.ListBackendsRequest, principal: Principal
    ) -> apb.ListBackendsResponse:
        now = self._registry.now()
        return apb.ListBackendsResponse(backends=[encode_backend(u, now) for u in self._registry.all()])

    @_unary
    async def CreateKey(self, request: apb.CreateKeyRequest, principal: Principal) -> apb.CreateKeyResponse:
        record, secret = await self._keyring.create_key(request.name, request.team)
        return apb.CreateKeyResponse(key=encode_key(KeyView.of(record)), secret=secret)

    @_unary
    async def RevokeKey(self, request: apb.RevokeKeyRequest, principal: Principal) -> apb.Key:
        return encode_key(KeyView.of(await self._keyring.revoke_key(request.key_id)))

    @_unary
    async def ListKeys(self, request: apb.ListKeysRequest, principal: Principal) -> apb.ListKeysResponse:
        views = self._keyring.list_keys(team=request.team, include_revoked=request.include_revoked)
        return apb.ListKeysResponse(keys=[encode_key(v) for v in views])

    @_unary
    async def UpsertRoute(self, request: apb.UpsertRouteRequest, principal: Principal) -> apb.Route:
        return encode_route(await self._routes.upsert(decode_route(request.route)))

    @_unary
    async def DeleteRoute(
        self, request: apb.DeleteRouteRequest, principal: Principal
    ) -> apb.DeleteRouteResponse:
        await self._routes.delete(request.name)
        return apb.DeleteRouteResponse()

    @_unary
    async def ListAllRoutes(
        self, request: apb.ListAllRoutesRequest, principal: Principal
    ) -> apb.ListAllRoutesResponse:
        return apb.ListAllRoutesResponse(routes=[encode_route(r) for r in self._routes.all()])
