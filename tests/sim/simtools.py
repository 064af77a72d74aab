"""Helpers for the simulator tests: a tiny SSE reader for raw streams."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from backends.sim import Simulator

StartSim = Callable[..., Awaitable[Simulator]]
"""The type of the ``start_sim`` fixture."""


@dataclass
class Event:
    event: str | None
    data: str

    def json(self) -> Any:
        return json.loads(self.data)


def parse(raw: bytes) -> list[Event]:
    """Events of a complete SSE body (``\\n\\n``-separated, as the simulator writes)."""
    events: list[Event] = []
    for block in raw.decode().split("\n\n"):
        if not block:
            continue
        name: str | None = None
        data: list[str] = []
        for line in block.split("\n"):
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
        events.append(Event(name, "\n".join(data)))
    return events
