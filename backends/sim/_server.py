"""``Simulator``: the HTTP server around a flavour, and its Python API."""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Callable
from types import TracebackType
from typing import Any

import orjson
from aiohttp import web

from backends.sim._anthropic import AnthropicFlavour
from backends.sim._azure import AzureFlavour
from backends.sim._cohere import CohereFlavour
from backends.sim._config import FIELD_NAMES, SimConfig, problems, validate
from backends.sim._engine import Engine
from backends.sim._flavour import (
    BODY_KEY,
    Context,
    Flavour,
    Handler,
    SimError,
    health_response,
    json_response,
)
from backends.sim._metrics import VllmMetrics
from backends.sim._openai import OpenAIFlavour
from backends.sim._stats import SimStats, StatsBoard
from backends.sim._vllm import VllmFlavour

FLAVOURS: dict[str, type[Flavour]] = {
    "vllm": VllmFlavour,
    "openai": OpenAIFlavour,
    "azure": AzureFlavour,
    "anthropic": AnthropicFlavour,
    "cohere": CohereFlavour,
}

_WILDCARD_HOSTS = frozenset(("", "0.0.0.0", "::"))
_SHUTDOWN_TIMEOUT_S = 1.0
_NOT_JSON = object()


class Simulator:
    """A simulated model server on a real socket, speaking ``config.protocol``.

    Usage::

        sim = Simulator(SimConfig(protocol="vllm", models=("sim-llama",)))
        await sim.start()                  # binds; port 0 = any free port
        client = openai.AsyncOpenAI(base_url=sim.url, api_key="x")
        sim.config.error_rate = 0.5        # applies to the next request
        await sim.wait_for(lambda s: s.streams_aborted >= 1, timeout_s=5)
        await sim.stop()

    ``url`` is the base URL an SDK wants: ``http://HOST:PORT/v1`` for vllm and
    openai; the bare origin ``http://HOST:PORT`` for azure (``azure_endpoint``),
    anthropic and cohere (``base_url``). ``origin`` is always the bare origin.
    A wildcard bind address (``0.0.0.0``, ``::``) is reported as ``127.0.0.1``.

    All methods must be called from the event loop the simulator runs on; it
    is not thread-safe. ``start`` and ``stop`` may each be called again after
    the other; ``stop`` is idempotent.
    """

    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = validate(config if config is not None else SimConfig())
        self._board = StatsBoard()
        self._metrics = VllmMetrics()
        self._rng = random.Random(self.config.seed)
        self._ctx = Context(config=self.config, board=self._board, metrics=self._metrics, rng=self._rng)
        self._flavour = FLAVOURS[self.config.protocol](self._ctx)
        self._closing = asyncio.Event()
        self._engine = Engine(self._flavour, self._ctx, self._closing)
        self._runner: web.AppRunner | None = None
        self._port = 0

    # ----- lifecycle ----------------------------------------------------------

    async def start(self) -> None:
        """Bind and start serving. Raises ``RuntimeError`` if already started,
        ``OSError`` if the address cannot be bound."""
        if self._runner is not None:
            raise RuntimeError("simulator already started")
        self._closing.clear()
        runner = web.AppRunner(
            self._make_app(), handler_cancellation=True, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT_S
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.config.host, self.config.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        """Close the listener and every connection. Stalled generations end at
        once (counted as ``streams_cut``); others get up to 1 s to finish, then
        are cancelled (counted as ``streams_aborted``). Idempotent."""
        runner, self._runner = self._runner, None
        if runner is None:
            return
        self._closing.set()
        await runner.cleanup()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # ----- addresses ------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (0 before ``start``)."""
        return self._port

    @property
    def host(self) -> str:
        """A host clients can connect to."""
        host = self.config.host
        if host in _WILDCARD_HOSTS:
            return "127.0.0.1"
        return f"[{host}]" if ":" in host else host

    @property
    def origin(self) -> str:
        """``http://HOST:PORT``."""
        return f"http://{self.host}:{self._port}"

    @property
    def url(self) -> str:
        """The SDK base URL for this protocol (see the class docstring)."""
        return self.origin + self._flavour.url_path

    # ----- behaviour and counters ----------------------------------------------------

    def set(self, **changes: Any) -> None:
        """Change config fields at run time, validated first (all or nothing).

        ``protocol``, ``host`` and ``port`` cannot change on a running
        server; a new ``seed`` reseeds the error-injection RNG.
        """
        unknown = set(changes) - FIELD_NAMES
        if unknown:
            raise ValueError(f"unknown simulator config fields: {', '.join(sorted(unknown))}")
        fixed = {"protocol", "host", "port"} & set(changes)
        if fixed and self._runner is not None:
            raise ValueError(f"cannot change {', '.join(sorted(fixed))} while running")
        if "models" in changes:
            changes["models"] = tuple(changes["models"])
        candidate = dataclasses.replace(self.config, **changes)
        found = problems(candidate)
        if found:
            raise ValueError("invalid simulator config: " + "; ".join(found))
        for name, value in changes.items():
            setattr(self.config, name, value)
        if "seed" in changes:
            self._rng.seed(changes["seed"])

    @property
    def stats(self) -> SimStats:
        """A snapshot of the counters (see ``SimStats``)."""
        return self._board.snapshot

    def reset_stats(self) -> None:
        """Zero the counters (``active_streams`` excepted); metrics are kept."""
        self._board.reset()

    async def wait_for(self, predicate: Callable[[SimStats], bool], *, timeout_s: float = 5.0) -> SimStats:
        """Wait until ``predicate(stats)`` holds; re-checked on every counter
        change, never by polling. Returns the matching snapshot; raises
        ``TimeoutError`` after ``timeout_s``."""
        return await self._board.wait_for(predicate, timeout_s)

    # ----- the app --------------------------------------------------------------

    def _make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=64 * 1024 * 1024)
        self._flavour.add_routes(app, self._engine)
        app.router.add_get("/health", self._health)
        app.router.add_get("/sim/stats", self._stats)
        return app

    async def _health(self, request: web.Request) -> web.StreamResponse:
        return health_response(self.config)

    async def _stats(self, request: web.Request) -> web.StreamResponse:
        return json_response(orjson.dumps(self._board.snapshot.to_json()))

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Counts API requests, parses their body, checks credentials, and turns
        ``SimError`` into the protocol's error answer."""
        flavour = self._flavour
        name = request.match_info.route.name
        api = name is not None and name.startswith("api:")
        body: Any = None
        if api:
            raw = await request.read()
            try:
                body = orjson.loads(raw) if raw else _NOT_JSON
            except orjson.JSONDecodeError:
                body = _NOT_JSON
            self._board.request(
                request.method,
                request.path,
                request.query,
                request.headers,
                None if body is _NOT_JSON else body,
            )
            request[BODY_KEY] = body
        try:
            guarded = request.method != "OPTIONS" and request.path.startswith(flavour.guarded_prefixes)
            api_key = self.config.api_key
            if guarded and api_key is not None and not flavour.authorized(request, api_key):
                response = flavour.unauthorized()
            else:
                if guarded:
                    flavour.check_request(request)
                if body is _NOT_JSON:
                    raise SimError(400, "The request body is not valid JSON.")
                response = await handler(request)
        except SimError as exc:
            response = flavour.error_response(exc)
        if api and response.status >= 400:
            self._board.error()
        return response
