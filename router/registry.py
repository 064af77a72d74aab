"""The registry of upstreams: configured providers and registered model hosts.

Every upstream the gateway can send a request to is an ``Upstream``: one
backend adapter plus what the gateway knows of it (the models it serves, its
lease, its reported load, requests in flight, and a circuit breaker fed by
failures). A route's pool is its configured targets plus every registered host
that serves one of the targets' models.

All methods run on the event loop; none blocks. Leases use the injected clock
(``time.time`` by default), so tests can move time instead of sleeping.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from backends.base import Backend, ProviderSettings
from backends.registry import create_backend
from router.config import RouteSpec
from router.domain import BackendLoad
from router.errors import InvalidRequest, NotFound
from router.store import BackendRecord, Store

log = logging.getLogger("meshgate.registry")

REGISTERABLE_PROTOCOLS = ("vllm", "openai")
DEFAULT_LEASE_TTL_S = 30
MAX_LEASE_TTL_S = 3600
MAX_MODELS = 64
MAX_LABELS = 32

FAILURES_TO_OPEN = 3
"""Consecutive failures that open an upstream's circuit."""
OPEN_FOR_S = 5.0
"""How long an open circuit keeps an upstream at the back of every order."""


class Upstream:
    """One backend and its state. ``models`` is ``None`` for a configured
    provider (it serves whatever model a route names)."""

    __slots__ = (
        "_on_idle",
        "backend",
        "configured",
        "consecutive_failures",
        "draining",
        "id",
        "in_flight",
        "labels",
        "lease_expires",
        "lease_ttl_s",
        "load",
        "models",
        "open_until",
        "protocol",
        "registered_at",
        "url",
    )

    def __init__(
        self,
        id: str,
        backend: Backend,
        *,
        protocol: str,
        url: str,
        models: frozenset[str] | None,
        labels: Mapping[str, str] | None = None,
        configured: bool,
        lease_ttl_s: float = 0,
        lease_expires: float = 0.0,
        registered_at: float = 0.0,
    ) -> None:
        self.id = id
        self.backend = backend
        self.protocol = protocol
        self.url = url
        self.models = models
        self.labels: Mapping[str, str] = dict(labels or {})
        self.configured = configured
        self.lease_ttl_s = lease_ttl_s
        self.lease_expires = lease_expires
        self.registered_at = registered_at
        self.load = BackendLoad()
        self.in_flight = 0
        self.consecutive_failures = 0
        self.open_until = 0.0
        self.draining = False
        self._on_idle: Callable[[Upstream], None] | None = None

    def is_available(self, now: float) -> bool:
        """Takes new requests and its circuit is closed (or due a trial)."""
        return not self.draining and now >= self.open_until

    def is_healthy(self, now: float) -> bool:
        return self.consecutive_failures < FAILURES_TO_OPEN or now >= self.open_until

    def acquire(self) -> None:
        self.in_flight += 1

    def release(self) -> None:
        self.in_flight -= 1
        if self.in_flight == 0 and self._on_idle is not None:
            self._on_idle(self)

    def record_success(self) -> None:
        self.consecutive_failures = 0
        self.open_until = 0.0

    def record_failure(self, now: float) -> None:
        self.consecutive_failures += 1
        if self.consecutive_failures >= FAILURES_TO_OPEN:
            self.open_until = now + OPEN_FOR_S
            if self.consecutive_failures == FAILURES_TO_OPEN:
                log.warning("circuit opened for %s after %d failures", self.id, self.consecutive_failures)


@dataclass(frozen=True, slots=True)
class Candidate:
    """One way to serve a request: an upstream and the model to ask it for."""

    upstream: Upstream
    model: str
    weight: int


class BackendRegistry:
    def __init__(
        self,
        providers: Mapping[str, ProviderSettings],
        store: Store,
        *,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._clock = clock
        self._connect_timeout_s = connect_timeout_s
        self._read_timeout_s = read_timeout_s
        self._providers: dict[str, Upstream] = {
            name: Upstream(
                name,
                create_backend(name, settings),
                protocol=settings.kind,
                url=settings.base_url,
                models=None,
                configured=True,
            )
            for name, settings in providers.items()
        }
        self._registered: dict[str, Upstream] = {}
        self._by_model: dict[str, list[Upstream]] = {}
        self._closing: set[asyncio.Task[None]] = set()

    @classmethod
    async def load(
        cls,
        providers: Mapping[str, ProviderSettings],
        store: Store,
        *,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> BackendRegistry:
        """A registry with the configured providers and every stored
        registration whose lease has not lapsed."""
        registry = cls(
            providers, store, connect_timeout_s=connect_timeout_s, read_timeout_s=read_timeout_s, clock=clock
        )
        now = clock()
        for record in await store.list_backends():
            if record.lease_expires_unix_ms / 1000 <= now:
                await store.delete_backend(record.id)
                continue
            registry._add(registry._from_record(record))
        return registry

    # -- reads (hot path) -------------------------------------------------

    def pool(self, route: RouteSpec) -> list[Candidate]:
        """Every candidate for ``route``: its configured targets, then the
        registered hosts serving each target's model (once each)."""
        now = self._clock()
        candidates: list[Candidate] = []
        seen: set[tuple[str, str]] = set()
        for target in route.targets:
            if target.provider:
                provider = self._providers.get(target.provider)
                if provider is not None:
                    candidates.append(Candidate(provider, target.model, target.weight))
            for upstream in self._by_model.get(target.model, ()):
                if upstream.lease_expires > now and (upstream.id, target.model) not in seen:
                    seen.add((upstream.id, target.model))
                    candidates.append(Candidate(upstream, target.model, target.weight))
        return candidates

    def get(self, backend_id: str) -> Upstream | None:
        return self._registered.get(backend_id) or self._providers.get(backend_id)

    def all(self) -> list[Upstream]:
        """Configured providers, then registered hosts, each group by id."""
        return sorted(self._providers.values(), key=lambda u: u.id) + sorted(
            self._registered.values(), key=lambda u: u.id
        )

    def now(self) -> float:
        return self._clock()

    # -- registration -----------------------------------------------------

    async def register(
        self,
        url: str,
        models: Sequence[str],
        *,
        protocol: str = "",
        labels: Mapping[str, str] | None = None,
        lease_ttl_s: int = 0,
    ) -> Upstream:
        """Add a model host, or update the one already registered at ``url``
        (same id). Raises ``InvalidRequest`` listing every problem."""
        protocol = protocol or "vllm"
        lease_ttl_s = lease_ttl_s or DEFAULT_LEASE_TTL_S
        labels = dict(labels or {})
        url = url.rstrip("/")
        problems = _registration_problems(url, models, protocol, labels, lease_ttl_s)
        if problems:
            raise InvalidRequest("cannot register backend: " + "; ".join(problems))
        now = self._clock()
        backend_id = "reg-" + hashlib.sha256(url.encode()).hexdigest()[:12]
        old = self._registered.get(backend_id)
        record = BackendRecord(
            id=backend_id,
            url=url,
            models=tuple(dict.fromkeys(models)),
            protocol=protocol,
            labels=labels,
            lease_ttl_s=lease_ttl_s,
            lease_expires_unix_ms=int((now + lease_ttl_s) * 1000),
            registered_unix_ms=int(now * 1000),
        )
        await self._store.upsert_backend(record)
        if old is not None and old.protocol == protocol:
            self._remove(old, close=False)
            upstream = old
            upstream.models = frozenset(record.models)
            upstream.labels = labels
            upstream.lease_ttl_s = lease_ttl_s
            upstream.lease_expires = now + lease_ttl_s
            upstream.draining = False
        else:
            if old is not None:
                self._remove(old, close=True)
            upstream = self._from_record(record)
        self._add(upstream)
        log.info("registered backend %s at %s serving %s", backend_id, url, ", ".join(record.models))
        return upstream

    async def heartbeat(self, backend_id: str, load: BackendLoad | None) -> float:
        """Renew a lease; returns the new expiry (Unix seconds). ``NotFound``
        once the lease has lapsed, so the host registers again."""
        upstream = self._registered.get(backend_id)
        now = self._clock()
        if upstream is None or upstream.draining or upstream.lease_expires <= now:
            if upstream is not None and not upstream.draining:
                await self._expire(upstream)
            raise NotFound(f'no registered backend "{backend_id}" (its lease lapsed?): register it again')
        upstream.lease_expires = now + upstream.lease_ttl_s
        if load is not None:
            upstream.load = load
        return upstream.lease_expires

    async def deregister(self, backend_id: str) -> bool:
        """Take a host out of every pool. Requests in flight on it finish; its
        connections close when the last one does. Idempotent."""
        upstream = self._registered.get(backend_id)
        if upstream is None:
            return False
        await self._store.delete_backend(backend_id)
        self._remove(upstream, close=True)
        log.info("deregistered backend %s", backend_id)
        return True

    async def reap(self) -> list[str]:
        """Remove every registered host whose lease has lapsed."""
        now = self._clock()
        expired = [u for u in self._registered.values() if u.lease_expires <= now]
        for upstream in expired:
            await self._expire(upstream)
        return [u.id for u in expired]

    async def aclose(self) -> None:
        upstreams = [*self._providers.values(), *self._registered.values()]
        self._registered.clear()
        self._by_model.clear()
        await asyncio.gather(*(u.backend.aclose() for u in upstreams), return_exceptions=True)
        await asyncio.gather(*self._closing, return_exceptions=True)

    # -- internals --------------------------------------------------------

    async def _expire(self, upstream: Upstream) -> None:
        log.warning("lease of backend %s lapsed; removed from its pools", upstream.id)
        await self._store.delete_backend(upstream.id)
        self._remove(upstream, close=True)

    def _from_record(self, record: BackendRecord) -> Upstream:
        settings = ProviderSettings(
            kind=record.protocol,
            base_url=record.url,
            connect_timeout_s=self._connect_timeout_s,
            read_timeout_s=self._read_timeout_s,
        )
        return Upstream(
            record.id,
            create_backend(record.id, settings),
            protocol=record.protocol,
            url=record.url,
            models=frozenset(record.models),
            labels=record.labels,
            configured=False,
            lease_ttl_s=record.lease_ttl_s,
            lease_expires=record.lease_expires_unix_ms / 1000,
            registered_at=record.registered_unix_ms / 1000,
        )

    def _add(self, upstream: Upstream) -> None:
        self._registered[upstream.id] = upstream
        for model in upstream.models or ():
            self._by_model.setdefault(model, []).append(upstream)

    def _remove(self, upstream: Upstream, *, close: bool) -> None:
        self._registered.pop(upstream.id, None)
        for model in upstream.models or ():
            hosts = self._by_model.get(model, [])
            if upstream in hosts:
                hosts.remove(upstream)
            if not hosts:
                self._by_model.pop(model, None)
        if close:
            upstream.draining = True
            if upstream.in_flight == 0:
                self._close_later(upstream)
            else:
                upstream._on_idle = self._close_later

    def _close_later(self, upstream: Upstream) -> None:
        upstream._on_idle = None
        task = asyncio.get_running_loop().create_task(upstream.backend.aclose())
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)


def _registration_problems(
    url: str, models: Sequence[str], protocol: str, labels: Mapping[str, str], lease_ttl_s: int
) -> list[str]:
    problems = []
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        problems.append(f"url {url!r} must be an http(s) URL with a host, e.g. http://10.0.0.7:8000/v1")
    if not models:
        problems.append("models: name at least one model the host serves")
    elif len(models) > MAX_MODELS:
        problems.append(f"models: at most {MAX_MODELS}")
    elif any(not m or len(m) > 256 for m in models):
        problems.append("models: each model name must be 1 to 256 characters")
    if protocol not in REGISTERABLE_PROTOCOLS:
        problems.append(
            f"protocol {protocol!r} cannot be registered (use one of {', '.join(REGISTERABLE_PROTOCOLS)})"
        )
    if len(labels) > MAX_LABELS:
        problems.append(f"labels: at most {MAX_LABELS}")
    if not 1 <= lease_ttl_s <= MAX_LEASE_TTL_S:
        problems.append(f"lease_ttl_s must be 1 to {MAX_LEASE_TTL_S} (0 means {DEFAULT_LEASE_TTL_S})")
    return problems
