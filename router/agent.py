"""The registration agent: keeps a model host in the gateway's pool.

Runs beside a vLLM (or other OpenAI-compatible) server on a GPU host:

    agent = RegistrationAgent("gateway:50051", admin_key, "http://10.0.0.7:8000/v1", ["llama-3-8b"])
    await agent.start()          # RegisterBackend; raises the typed error if refused
    ...                          # heartbeats every lease_ttl_s / 3, with the host's load
    await agent.stop()           # DeregisterBackend; idempotent

===========================  ===============================================================
heartbeat                    every ``lease_ttl_s / 3`` s, carrying the load read from the
                             host's Prometheus ``/metrics`` (``metrics_url``, default: the
                             origin of ``url`` + ``/metrics``); without load when the
                             metrics cannot be read (logged once per outage)
``NOT_FOUND``                the lease lapsed (gateway restarted, long outage): register
                             again at once; the new id is in ``backend_id``
``UNAVAILABLE`` and other    retried with exponential backoff (0.5 s doubling, at most the
transient errors             heartbeat interval), so the lease is renewed as soon as the
                             gateway is back
``UNAUTHENTICATED``,         final: the heartbeat task ends and ``wait()`` raises the error
``PERMISSION_DENIED``,
``INVALID_ARGUMENT``
===========================  ===============================================================

The agent runs on one event loop; it is not thread-safe. Used by
``meshgate register`` and by the simulator's ``--register``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Self
from urllib.parse import urlsplit

import aiohttp

from router.client import AdminClient
from router.domain import BackendLoad
from router.errors import InvalidRequest, MeshgateError, NotFound, PermissionDenied, Unauthenticated

log = logging.getLogger("meshgate.agent")

DEFAULT_LEASE_TTL_S = 30
"""What the gateway uses for ``lease_ttl_s = 0``."""
FIRST_BACKOFF_S = 0.5
DEREGISTER_TIMEOUT_S = 5.0
FINAL_ERRORS: tuple[type[MeshgateError], ...] = (Unauthenticated, PermissionDenied, InvalidRequest)
"""Errors that retrying cannot fix: the agent stops and reports them."""

RUNNING = "vllm:num_requests_running"
WAITING = "vllm:num_requests_waiting"
KV_CACHE = "vllm:kv_cache_usage_perc"
KV_CACHE_OLD = "vllm:gpu_cache_usage_perc"
"""The name before vLLM 0.10."""


def metrics_url_for(url: str) -> str:
    """The ``/metrics`` URL at the origin of a host's API URL.

    >>> metrics_url_for("http://10.0.0.7:8000/v1")
    'http://10.0.0.7:8000/metrics'
    """
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}/metrics"


def parse_load(text: str) -> BackendLoad | None:
    """The load in a Prometheus text exposition from vLLM, or ``None`` if it has none.

    Request counts are summed over label sets (one per model or engine). The
    KV-cache fraction is the largest over label sets, clamped to 0..1: a sum
    of fractions would mean nothing and could exceed the contract's range, and
    the fullest engine is the one about to preempt requests.
    """
    totals: dict[str, float] = {}
    kv: dict[str, float] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        brace, space = line.find("{"), line.find(" ")
        if brace != -1 and (space == -1 or brace < space):
            name, rest = line[:brace], line[line.rfind("}") + 1 :]
        else:
            name, _, rest = line.partition(" ")
        if name not in (RUNNING, WAITING, KV_CACHE, KV_CACHE_OLD):
            continue
        fields = rest.split()  # the value, then an optional timestamp
        if not fields:
            continue
        try:
            value = float(fields[0])
        except ValueError:
            continue
        if value != value:  # NaN
            continue
        if name in (KV_CACHE, KV_CACHE_OLD):
            kv[name] = max(kv.get(name, 0.0), value)
        else:
            totals[name] = totals.get(name, 0.0) + value
    if not totals and not kv:
        return None
    kv_usage = kv.get(KV_CACHE, kv.get(KV_CACHE_OLD, 0.0))
    return BackendLoad(
        running_requests=max(0, round(totals.get(RUNNING, 0.0))),
        waiting_requests=max(0, round(totals.get(WAITING, 0.0))),
        kv_cache_usage=min(1.0, max(0.0, kv_usage)),
    )


class RegistrationAgent:
    """Registers one model host with a gateway and keeps its lease alive.

    ``labels`` are free (``{"region": "eu", "gpu": "h100"}``); ``lease_ttl_s``
    is 1 to 3,600 (0: the gateway's default, 30). ``tls`` and
    ``root_certificates`` are as for ``AdminClient``; ``sleep`` waits between
    heartbeats (tests pass one they control).
    """

    def __init__(
        self,
        gateway: str,
        admin_key: str,
        url: str,
        models: Sequence[str],
        protocol: str = "vllm",
        labels: Mapping[str, str] | None = None,
        lease_ttl_s: int = DEFAULT_LEASE_TTL_S,
        metrics_url: str | None = None,
        *,
        tls: bool = False,
        root_certificates: bytes | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.url = url
        self.models = list(models)
        self.protocol = protocol
        self.labels = dict(labels or {})
        self.lease_ttl_s = lease_ttl_s
        self.metrics_url = metrics_url or metrics_url_for(url)
        self.interval_s = (lease_ttl_s or DEFAULT_LEASE_TTL_S) / 3
        self._admin = AdminClient(gateway, admin_key, tls=tls, root_certificates=root_certificates)
        self._backend_id: str | None = None
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._metrics_down = False
        self._stopped = False
        self._sleep = sleep

    def __repr__(self) -> str:
        return f"RegistrationAgent({self.url!r}, backend_id={self._backend_id!r})"

    @property
    def backend_id(self) -> str | None:
        """The id the gateway gave this host ("reg-…"); ``None`` before ``start()``."""
        return self._backend_id

    async def start(self) -> None:
        """Register the host and start heartbeating.

        Raises the ``router.errors`` class of the refusal (e.g.
        ``PermissionDenied`` for a non-admin key, ``InvalidRequest`` for a bad
        url, ``Unavailable`` when the gateway cannot be reached); the agent is
        then closed.
        """
        if self._task is not None or self._stopped:
            raise RuntimeError("RegistrationAgent.start() may be called once")
        try:
            await self._register()
        except BaseException:
            self._stopped = True
            await self._admin.close()
            raise
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=min(5.0, self.interval_s)))
        self._task = asyncio.create_task(self._heartbeats(), name=f"meshgate-agent-{self._backend_id}")

    async def wait(self) -> None:
        """Return when heartbeats end: after ``stop()``, or when the gateway
        refuses the agent for good (raises that error: see the module doc)."""
        task = self._task
        if task is None:
            return
        await asyncio.wait({task})
        if not task.cancelled() and (error := task.exception()) is not None:
            raise error

    async def stop(self) -> None:
        """Stop heartbeating and deregister (best effort: a failure is logged, and
        the lease lapses on its own). Idempotent."""
        if self._stopped and self._task is None:
            return
        self._stopped = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, MeshgateError):
                await task
        try:
            if self._backend_id is not None:
                await self._admin.deregister_backend(self._backend_id, timeout_s=DEREGISTER_TIMEOUT_S)
                log.info("deregistered %s (%s)", self._backend_id, self.url)
        except MeshgateError as exc:
            log.warning("could not deregister %s: %s: %s", self._backend_id, exc.status, exc)
        finally:
            if self._session is not None:
                await self._session.close()
            await self._admin.close()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    async def _register(self) -> None:
        backend = await self._admin.register_backend(
            self.url, self.models, protocol=self.protocol, labels=self.labels, lease_ttl_s=self.lease_ttl_s
        )
        if backend.id != self._backend_id:
            log.info("registered %s as %s serving %s", self.url, backend.id, ", ".join(backend.models))
        self._backend_id = backend.id

    async def _heartbeats(self) -> None:
        delay = self.interval_s
        backoff = FIRST_BACKOFF_S
        registered = True
        while True:
            await self._sleep(delay)
            try:
                if registered:
                    assert self._backend_id is not None
                    await self._admin.heartbeat(
                        self._backend_id, await self._read_load(), timeout_s=self.interval_s
                    )
                else:
                    await self._register()
                    registered = True
            except NotFound:
                log.warning("the lease of %s lapsed; registering %s again", self._backend_id, self.url)
                registered, delay = False, 0.0
                continue
            except FINAL_ERRORS as exc:
                log.error("the gateway refused %s: %s: %s", self.url, exc.status, exc)
                raise
            except MeshgateError as exc:
                delay = min(backoff, self.interval_s) * random.uniform(0.8, 1.0)
                backoff *= 2
                log.warning(
                    "heartbeat for %s failed (%s: %s); retrying in %.1f s", self.url, exc.status, exc, delay
                )
                continue
            delay, backoff = self.interval_s, FIRST_BACKOFF_S

    async def _read_load(self) -> BackendLoad | None:
        assert self._session is not None
        try:
            async with self._session.get(self.metrics_url) as response:
                response.raise_for_status()
                load = parse_load(await response.text())
        except (aiohttp.ClientError, TimeoutError, UnicodeDecodeError) as exc:
            if not self._metrics_down:
                log.warning(
                    "cannot read %s (%s); heartbeats carry no load until it answers", self.metrics_url, exc
                )
                self._metrics_down = True
            return None
        if self._metrics_down:
            log.info("%s answers again", self.metrics_url)
            self._metrics_down = False
        return load
