"""Prometheus metrics, updated once per request (never per token).

Each gateway owns its own ``CollectorRegistry`` so that several gateways in
one process (tests) do not share counters. Labels are route, backend, stage
and outcome: never a key, a prompt or a credential.
"""

from __future__ import annotations

import logging
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

log = logging.getLogger("meshgate.metrics")

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "meshgate_requests",
            "Requests finished, by route, kind and outcome (a gRPC status name).",
            ["route", "kind", "outcome"],
            registry=self.registry,
        )
        self.tokens = Counter(
            "meshgate_tokens",
            "Tokens charged, by route and direction (prompt or completion).",
            ["route", "direction"],
            registry=self.registry,
        )
        self.in_flight = Gauge(
            "meshgate_requests_in_flight", "Requests being served.", ["route"], registry=self.registry
        )
        self.ttft = Histogram(
            "meshgate_time_to_first_token_seconds",
            "From admission to the first token sent, by route.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.duration = Histogram(
            "meshgate_request_duration_seconds",
            "From admission to the end of the answer, by route.",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.upstream_failures = Counter(
            "meshgate_upstream_failures",
            "Failed upstream attempts, by backend and error class.",
            ["backend", "error"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "meshgate_rejected",
            "Requests refused before any upstream call, by stage (authenticate, validate, ...).",
            ["stage", "outcome"],
            registry=self.registry,
        )
        self._server: Any = None
        self._routes: dict[str, RouteMetrics] = {}

    def route(self, name: str) -> RouteMetrics:
        """The labelled series of one route, made once: ``labels()`` costs a
        lock and a dictionary lookup that the request path should not pay."""
        series = self._routes.get(name)
        if series is None:
            series = self._routes[name] = RouteMetrics(self, name)
        return series

    def serve(self, listen: str) -> int:
        """Expose ``/metrics`` over HTTP on ``host:port`` (a thread of its own,
        off the event loop). Returns the bound port."""
        host, _, port = listen.rpartition(":")
        server, _thread = start_http_server(
            int(port), addr=host.strip("[]") or "0.0.0.0", registry=self.registry
        )
        self._server = server
        bound = int(server.server_address[1])
        log.info("metrics on http://%s:%d/metrics", host, bound)
        return bound

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class RouteMetrics:
    """One route's series, resolved once (see ``Metrics.route``)."""

    __slots__ = (
        "_metrics",
        "_name",
        "_outcomes",
        "completion_tokens",
        "duration",
        "in_flight",
        "prompt_tokens",
        "ttft",
    )

    def __init__(self, metrics: Metrics, name: str) -> None:
        self._metrics = metrics
        self._name = name
        self._outcomes: dict[tuple[str, str], Any] = {}
        self.in_flight = metrics.in_flight.labels(name)
        self.ttft = metrics.ttft.labels(name)
        self.duration = metrics.duration.labels(name)
        self.prompt_tokens = metrics.tokens.labels(name, "prompt")
        self.completion_tokens = metrics.tokens.labels(name, "completion")

    def finished(self, kind: str, outcome: str) -> None:
        counter = self._outcomes.get((kind, outcome))
        if counter is None:
            counter = self._outcomes[(kind, outcome)] = self._metrics.requests.labels(
                self._name, kind, outcome
            )
        counter.inc()
