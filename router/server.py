"""The gateway process: assemble the parts, serve gRPC, stop gracefully.

``GatewayServer`` is what tests start in-process (on port 0) and what
``meshgate serve`` runs. Start-up opens the store, loads keys, routes and
registered backends, then serves ``meshgate.v1.Gateway``, ``meshgate.v1.Admin``,
``grpc.health.v1.Health`` and server reflection. ``stop`` (on SIGTERM/SIGINT
in ``run``) marks health NOT_SERVING, stops accepting calls, lets calls in
flight finish for up to the grace period, cancels what is left, then closes
upstream pools and the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import sys
from collections.abc import Callable

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from router import native
from router._proto.meshgate.v1 import admin_pb2, admin_pb2_grpc, gateway_pb2, gateway_pb2_grpc
from router.auth import KeyRing
from router.config import GatewayConfig
from router.metrics import Metrics
from router.pipeline import Pipeline
from router.registry import BackendRegistry
from router.routes import RouteTable
from router.servicer import AdminServicer, GatewayServicer
from router.store import Store, open_store

log = logging.getLogger("meshgate.server")

MAX_SEND_MESSAGE_BYTES = 64 * 1024 * 1024
REAP_EVERY_S = 1.0
GC_GEN0_THRESHOLD = 20_000
SERVICES = (
    gateway_pb2.DESCRIPTOR.services_by_name["Gateway"].full_name,
    admin_pb2.DESCRIPTOR.services_by_name["Admin"].full_name,
)


class GatewayServer:
    """One gateway: its parts and its gRPC server."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.metrics = Metrics()
        self.port = 0
        self.metrics_port = 0
        self.pipeline: Pipeline | None = None
        self._store: Store | None = None
        self._registry: BackendRegistry | None = None
        self._server: grpc.aio.Server | None = None
        self._health = health.aio.HealthServicer()
        self._reaper: asyncio.Task[None] | None = None

    @property
    def address(self) -> str:
        host = self.config.listen.rpartition(":")[0]
        return f"{host}:{self.port}"

    @property
    def registry(self) -> BackendRegistry:
        assert self._registry is not None, "start() first"
        return self._registry

    async def start(self) -> None:
        config = self.config
        self._store = await open_store(config.state)
        keyring = await KeyRing.load(config, self._store)
        routes = await RouteTable.load(config, self._store)
        self._registry = await BackendRegistry.load(
            config.providers,
            self._store,
            connect_timeout_s=config.server.upstream_connect_timeout_s,
            read_timeout_s=config.server.upstream_read_timeout_s,
        )
        self.pipeline = Pipeline(
            keyring=keyring,
            routes=routes,
            registry=self._registry,
            limits=config.limits,
            metrics=self.metrics,
        )
        server = grpc.aio.server(
            options=[
                ("grpc.max_receive_message_length", config.limits.max_message_bytes),
                ("grpc.max_send_message_length", MAX_SEND_MESSAGE_BYTES),
                ("grpc.so_reuseport", 1 if config.server.workers > 1 else 0),
                ("grpc.keepalive_time_ms", 60_000),
                ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            ]
        )
        gateway_pb2_grpc.add_GatewayServicer_to_server(GatewayServicer(self.pipeline), server)  # type: ignore[no-untyped-call]
        admin_pb2_grpc.add_AdminServicer_to_server(AdminServicer(self.pipeline), server)  # type: ignore[no-untyped-call]
        health_pb2_grpc.add_HealthServicer_to_server(self._health, server)
        reflection.enable_server_reflection(
            (*SERVICES, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            server,
        )
        try:
            self.port = server.add_insecure_port(config.listen)
        except RuntimeError as exc:
            await self._close_parts()
            raise OSError(
                f"cannot listen on {config.listen}: {exc} (is another process using the port?)"
            ) from exc
        await server.start()
        self._server = server
        for service in ("", *SERVICES):
            await self._health.set(service, health_pb2.HealthCheckResponse.SERVING)
        if config.metrics_listen:
            self.metrics_port = self.metrics.serve(config.metrics_listen)
        self._reaper = asyncio.get_running_loop().create_task(self._reap_leases())
        log.info(
            "meshgate serving on %s",
            self.address,
            extra={
                "routes": [r.name for r in routes.all()],
                "native": native.IMPLEMENTATION,
                "native_reason": native.REASON,
            },
        )

    async def stop(self, grace_s: float | None = None) -> None:
        """Stop accepting calls; let those in flight finish within the grace
        period (the config's ``server.grace_s`` by default); then close."""
        grace = self.config.server.grace_s if grace_s is None else grace_s
        await self._health.enter_graceful_shutdown()
        if self._server is not None:
            log.info("stopping: %.1f s for calls in flight to finish", grace)
            await self._server.stop(grace)
            self._server = None
        await self._close_parts()
        log.info("stopped")

    async def _close_parts(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None
        if self._registry is not None:
            await self._registry.aclose()
            self._registry = None
        if self._store is not None:
            await self._store.close()
            self._store = None
        self.metrics.close()

    async def _reap_leases(self) -> None:
        while True:
            await asyncio.sleep(REAP_EVERY_S)
            try:
                await self.registry.reap()
            except Exception:
                log.exception("reaping backend leases failed")


async def serve_until_signalled(config: GatewayConfig) -> int:
    server = GatewayServer(config)
    try:
        await server.start()
    except OSError as exc:
        log.error("%s", exc)
        return 1
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # Everything loaded so far lives as long as the process: keep it out of
    # every future collection, and collect young objects less often (the
    # streaming path makes many short-lived ones; see benchmarks/README.md).
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_GEN0_THRESHOLD, 20, 20)
    print(f"meshgate listening on {server.address}", file=sys.stderr, flush=True)
    await stop.wait()
    await server.stop()
    return 0


def run(config: GatewayConfig) -> int:
    """Serve until SIGTERM or SIGINT, then stop gracefully. Returns the exit status."""
    from router import logs

    logs.configure()
    loop_factory: Callable[[], asyncio.AbstractEventLoop]
    try:
        import uvloop

        loop_factory = uvloop.new_event_loop
    except ImportError:  # pragma: no cover - uvloop is a dependency; this keeps odd platforms working
        loop_factory = asyncio.new_event_loop
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        return runner.run(serve_until_signalled(config))
