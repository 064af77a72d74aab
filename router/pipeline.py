"""The request path, as named stages.

    authenticate ─▶ validate ─▶ resolve ─▶ authorize ─▶ balance ─▶ dispatch ─▶ settle
    key→Principal   contract    route       route ACL     order      stream,     metrics,
                    and limits  by name                   targets    failover    usage

Each stage either continues or ends the request with a ``MeshgateError``.
``dispatch`` tries the balanced candidates in turn, and moves to the next one
only while nothing has reached the client: once the first chunk is out, a
failure ends the stream with an error status (it never repeats or skips
tokens). ``settle`` runs exactly once per admitted request, in a ``finally``,
whatever happened: success, upstream error, cancellation, deadline, shutdown.

This module knows no protobuf and no HTTP: the servicer decodes requests into
``router.domain`` objects and the backends speak to providers.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass

from backends.base import Backend
from router.auth import KeyRing, authorize
from router.balancer import weighted_order
from router.config import Limits, RouteSpec
from router.domain import (
    ChatRequest,
    Chunk,
    CompletionRequest,
    Embeddings,
    EmbedRequest,
    Message,
    Principal,
    Usage,
)
from router.errors import (
    DeadlineExceeded,
    InvalidRequest,
    MeshgateError,
    ResourceExhausted,
    Unavailable,
    UpstreamError,
    UpstreamRateLimited,
    UpstreamStreamBroken,
)
from router.metrics import Metrics
from router.registry import BackendRegistry, Candidate
from router.routes import RouteTable
from router.validate import validate_chat, validate_completion, validate_embed

log = logging.getLogger("meshgate.pipeline")

OpenStream = Callable[[Backend, str, "float | None"], AsyncGenerator[Chunk, None]]

_DEADLINE_SLACK_S = 0.05
"""An upstream failure this close to the caller's deadline was caused by it."""

_CHARS_PER_TOKEN = 4
"""Rough estimate used only when a provider reports no usage (marked estimated)."""


@dataclass(frozen=True, slots=True)
class EmbedResult:
    embeddings: Embeddings
    backend: str


class Pipeline:
    """The gateway's request path, over its parts. One per gateway process;
    all methods run on the event loop and never block."""

    def __init__(
        self,
        *,
        keyring: KeyRing,
        routes: RouteTable,
        registry: BackendRegistry,
        limits: Limits,
        metrics: Metrics,
        rng: random.Random | None = None,
    ) -> None:
        self.keyring = keyring
        self.routes = routes
        self.registry = registry
        self.limits = limits
        self.metrics = metrics
        self._rng = rng or random.Random()

    # -- stages -----------------------------------------------------------

    def authenticate(self, authorization: str | None) -> Principal:
        try:
            return self.keyring.authenticate(authorization)
        except MeshgateError as exc:
            self.metrics.rejected.labels("authenticate", exc.status).inc()
            raise

    def resolve(self, principal: Principal, route_name: str, kind: str) -> RouteSpec:
        """Find the route, check the caller may use it and that it serves ``kind``."""
        route = self.routes.get(route_name)
        authorize(principal, route)
        if kind == "completion" and route.type == "chat":
            return route  # a prompt is sent to a chat route as one user message
        if route.type != kind:
            call = {"chat": "Chat", "completion": "Complete", "embedding": "Embed"}[route.type]
            raise InvalidRequest(f'route "{route.name}" is a {route.type} route: call {call} with it')
        return route

    def balance(self, route: RouteSpec) -> list[Candidate]:
        candidates = self.registry.pool(route)
        if not candidates:
            raise Unavailable(
                f'route "{route.name}" has no backend: no configured target, and no registered host '
                f"serves {', '.join(route.models)}"
            )
        return weighted_order(candidates, self.registry.now(), self._rng)

    # -- entry points -----------------------------------------------------

    def chat(
        self, principal: Principal, request: ChatRequest, *, timeout_s: float | None
    ) -> AsyncGenerator[Chunk, None]:
        """Admit a chat request and return its stream of chunks. Raises before
        returning for anything wrong with the request itself."""
        validate_chat(request, self.limits)
        route = self.resolve(principal, request.route, "chat")
        candidates = self.balance(route)
        prompt_chars = sum(len(m.content) for m in request.messages)
        return self._dispatch(
            route,
            "chat",
            candidates,
            lambda backend, model, t: backend.stream_chat(model, request, timeout_s=t),
            timeout_s,
            prompt_chars,
        )

    def complete(
        self, principal: Principal, request: CompletionRequest, *, timeout_s: float | None
    ) -> AsyncGenerator[Chunk, None]:
        validate_completion(request, self.limits)
        route = self.resolve(principal, request.route, "completion")
        candidates = self.balance(route)
        open_stream: OpenStream
        if route.type == "chat":
            as_chat = ChatRequest(
                route=request.route,
                messages=(Message("user", request.prompt),),
                sampling=request.sampling,
                tags=request.tags,
                request_id=request.request_id,
            )
            open_stream = lambda backend, model, t: backend.stream_chat(model, as_chat, timeout_s=t)  # noqa: E731
        else:
            open_stream = lambda backend, model, t: backend.stream_completion(model, request, timeout_s=t)  # noqa: E731
        return self._dispatch(route, "completion", candidates, open_stream, timeout_s, len(request.prompt))

    async def embed(
        self, principal: Principal, request: EmbedRequest, *, timeout_s: float | None
    ) -> EmbedResult:
        validate_embed(request, self.limits)
        route = self.resolve(principal, request.route, "embedding")
        candidates = self.balance(route)
        started = time.perf_counter()
        outcome = "INTERNAL"
        series = self.metrics.route(route.name)
        series.in_flight.inc()
        try:
            failures: list[UpstreamError] = []
            for candidate in candidates:
                upstream = candidate.upstream
                upstream.acquire()
                try:
                    result = await candidate.upstream.backend.embed(
                        candidate.model, request.inputs, timeout_s=_remaining(started, timeout_s)
                    )
                except UpstreamError as exc:
                    self._fail(candidate, exc, started, timeout_s)
                    failures.append(exc)
                    if exc.retryable:
                        continue
                    break
                finally:
                    upstream.release()
                upstream.record_success()
                outcome = "OK"
                series.prompt_tokens.inc(result.usage.prompt_tokens)
                return EmbedResult(result, upstream.id)
            raise _all_failed(route, failures)
        except MeshgateError as exc:
            outcome = exc.status
            raise
        finally:
            series.in_flight.dec()
            series.finished("embedding", outcome)
            series.duration.observe(time.perf_counter() - started)

    # -- dispatch and settle ----------------------------------------------

    async def _dispatch(
        self,
        route: RouteSpec,
        kind: str,
        candidates: list[Candidate],
        open_stream: OpenStream,
        timeout_s: float | None,
        prompt_chars: int,
    ) -> AsyncGenerator[Chunk, None]:
        started = time.perf_counter()
        first_at = 0.0
        completion_chars = 0
        usage: Usage | None = None
        outcome = "INTERNAL"
        self.metrics.route(route.name).in_flight.inc()
        try:
            failures: list[UpstreamError] = []
            for candidate in candidates:
                upstream = candidate.upstream
                stream = open_stream(upstream.backend, candidate.model, _remaining(started, timeout_s))
                upstream.acquire()
                try:
                    try:
                        chunk = await _next(stream, upstream.id)
                    except UpstreamError as exc:
                        self._fail(candidate, exc, started, timeout_s)
                        failures.append(exc)
                        if exc.retryable:
                            continue
                        break
                    # Committed: from here on this upstream serves the request.
                    upstream.record_success()
                    first_at = time.perf_counter()
                    while chunk.finish_reason is None:
                        completion_chars += len(chunk.text)
                        yield chunk
                        chunk = await _next(stream, upstream.id)
                    completion_chars += len(chunk.text)
                    usage = chunk.usage or _estimate(prompt_chars, completion_chars)
                    chunk.usage = usage
                    chunk.model = chunk.model or candidate.model
                    chunk.backend = upstream.id
                    outcome = "OK"
                    yield chunk
                    return
                except UpstreamError as exc:
                    self._fail(candidate, exc, started, timeout_s)
                    raise
                finally:
                    upstream.release()
                    await stream.aclose()
            raise _all_failed(route, failures)
        except MeshgateError as exc:
            outcome = exc.status
            raise
        except (asyncio.CancelledError, GeneratorExit):
            outcome = "CANCELLED"
            raise
        finally:
            self._settle(route, kind, outcome, started, first_at, usage, prompt_chars, completion_chars)

    def _settle(
        self,
        route: RouteSpec,
        kind: str,
        outcome: str,
        started: float,
        first_at: float,
        usage: Usage | None,
        prompt_chars: int,
        completion_chars: int,
    ) -> None:
        """Charge and record the request: exactly once, whatever the outcome."""
        series = self.metrics.route(route.name)
        series.in_flight.dec()
        series.finished(kind, outcome)
        series.duration.observe(time.perf_counter() - started)
        if first_at:
            series.ttft.observe(first_at - started)
            usage = usage or _estimate(prompt_chars, completion_chars)
            series.prompt_tokens.inc(usage.prompt_tokens)
            series.completion_tokens.inc(usage.completion_tokens)

    def _fail(
        self, candidate: Candidate, exc: UpstreamError, started: float, timeout_s: float | None
    ) -> None:
        """Account an upstream failure. When the caller's deadline is what
        ended it (the adapter's time limit is that deadline), the failure is
        the caller's, not the upstream's: raise ``DeadlineExceeded``."""
        remaining = _remaining(started, timeout_s)
        if remaining is not None and remaining <= _DEADLINE_SLACK_S:
            raise DeadlineExceeded(
                f"the call's deadline of {timeout_s:g} s passed before backend "
                f'"{candidate.upstream.id}" finished the answer'
            ) from exc
        candidate.upstream.record_failure(self.registry.now())
        self.metrics.upstream_failures.labels(candidate.upstream.id, type(exc).__name__).inc()
        log.warning("upstream %s failed: %s", candidate.upstream.id, exc.message)


def _remaining(started: float, timeout_s: float | None) -> float | None:
    """Seconds left of the caller's deadline (0.0 once it has passed)."""
    if timeout_s is None:
        return None
    return max(0.0, timeout_s - (time.perf_counter() - started))


def _estimate(prompt_chars: int, completion_chars: int) -> Usage:
    return Usage(
        prompt_tokens=math.ceil(prompt_chars / _CHARS_PER_TOKEN),
        completion_tokens=math.ceil(completion_chars / _CHARS_PER_TOKEN),
        estimated=True,
    )


async def _next(stream: AsyncGenerator[Chunk, None], backend_id: str) -> Chunk:
    """The next chunk. An adapter whose stream stops without a finish breaks
    its contract: treat that as the broken stream it is."""
    try:
        return await anext(stream)
    except StopAsyncIteration:
        raise UpstreamStreamBroken(
            f'backend "{backend_id}" ended the stream without finishing the answer', provider=backend_id
        ) from None


def _all_failed(route: RouteSpec, failures: list[UpstreamError]) -> MeshgateError:
    """The error for a request no candidate could serve: the upstream's own
    when there was one, else a summary naming every target's failure."""
    if len(failures) == 1:
        return failures[0]
    if not failures:
        return Unavailable(f'route "{route.name}": the deadline passed before any backend answered')
    summary = "; ".join(f"{f.provider}: {f.message}" for f in failures)
    message = f'all {len(failures)} backends of route "{route.name}" failed: {summary}'
    if all(isinstance(f, UpstreamRateLimited) for f in failures):
        waits = [f.retry_after_s for f in failures if f.retry_after_s is not None]
        return ResourceExhausted(message, retry_after_s=min(waits) if waits else None)
    kinds = {type(f) for f in failures}
    if len(kinds) == 1:
        return kinds.pop()(message, provider=failures[-1].provider, http_status=failures[-1].http_status)
    return Unavailable(message, retry_after_s=1.0)
