"""The simulator's counters, and an event-driven wait on them.

Every change to a counter happens on the simulator's event loop, in plain
synchronous code (also inside ``finally`` blocks of cancelled handlers), and
wakes every ``wait_for`` at once: no polling, no sleeping, no lock to await.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

Outcome = Literal["completed", "aborted", "cut", "failed"]

CREDENTIAL_HEADERS: frozenset[str] = frozenset(("authorization", "api-key", "x-api-key"))
"""Headers left out of ``last_request``."""


@dataclass(slots=True)
class SimStats:
    """A snapshot of the counters (also served as JSON at ``GET /sim/stats``).

    =================  ==================================================================
    requests           requests to an API endpoint (generation, embeddings, tokenize,
                       detokenize), whatever the answer; not health, metrics, model
                       lists, version or ``/sim/*``
    errors             of those, the ones answered with an HTTP error status
    streams_started    generations begun (streamed or not): the request was valid and
                       no error was injected
    streams_completed  generations that sent their whole answer and terminator
    streams_aborted    generations whose client went away first (connection closed,
                       also while stalled or sleeping between tokens)
    streams_cut        generations the simulator cut on purpose (``cut`` fault; also
                       ``stall`` streams ended by ``Simulator.stop``)
    streams_failed     generations that ended with an in-band error (``fail`` fault)
    active_streams     generations in progress now (vLLM's num_requests_running)
    last_request       the last API request: ``{"method", "path", "query", "headers",
                       "body"}``; header names lower-cased, credentials removed,
                       ``body`` the parsed JSON (``None`` if it was not JSON)
    =================  ==================================================================

    Always: ``streams_started == streams_completed + streams_aborted +
    streams_cut + streams_failed + active_streams``.
    """

    requests: int = 0
    errors: int = 0
    streams_started: int = 0
    streams_completed: int = 0
    streams_aborted: int = 0
    streams_cut: int = 0
    streams_failed: int = 0
    active_streams: int = 0
    last_request: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class StatsBoard:
    """Owns the live counters. Not thread-safe: use from the simulator's loop."""

    def __init__(self) -> None:
        self._live = SimStats()
        self._waiters: list[asyncio.Future[None]] = []

    @property
    def snapshot(self) -> SimStats:
        """A copy of the counters as they are now."""
        return dataclasses.replace(self._live)

    @property
    def active_streams(self) -> int:
        return self._live.active_streams

    def reset(self) -> None:
        """Zero every counter except ``active_streams``, and forget the last request."""
        self._live = SimStats(active_streams=self._live.active_streams)
        self._changed()

    def request(
        self, method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str], body: object
    ) -> None:
        """Count an API request and remember it as ``last_request``."""
        live = self._live
        live.requests += 1
        live.last_request = {
            "method": method,
            "path": path,
            "query": dict(query),
            "headers": {k.lower(): v for k, v in headers.items() if k.lower() not in CREDENTIAL_HEADERS},
            "body": body,
        }
        self._changed()

    def error(self) -> None:
        self._live.errors += 1
        self._changed()

    def stream_started(self) -> None:
        live = self._live
        live.streams_started += 1
        live.active_streams += 1
        self._changed()

    def stream_ended(self, outcome: Outcome) -> None:
        live = self._live
        live.active_streams -= 1
        if outcome == "completed":
            live.streams_completed += 1
        elif outcome == "aborted":
            live.streams_aborted += 1
        elif outcome == "cut":
            live.streams_cut += 1
        else:
            live.streams_failed += 1
        self._changed()

    def _changed(self) -> None:
        if self._waiters:
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(None)

    async def wait_for(self, predicate: Callable[[SimStats], bool], timeout_s: float) -> SimStats:
        """Wait until ``predicate(snapshot)`` is true; return that snapshot.

        Re-checked on every counter change. Raises ``TimeoutError`` (with the
        counters in the message) after ``timeout_s`` seconds.
        """
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    snap = self.snapshot
                    if predicate(snap):
                        return snap
                    waiter: asyncio.Future[None] = loop.create_future()
                    self._waiters.append(waiter)
                    await waiter
        except TimeoutError:
            snap = self.snapshot
            snap.last_request = None
            raise TimeoutError(f"simulator stats did not match within {timeout_s} s: {snap}") from None
