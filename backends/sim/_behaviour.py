"""What one request does: the config's faults and timing, overridden by the model name.

A model name made only of ``+``-joined *behaviour parts* selects a behaviour
regardless of the server's flags, tensorzero style, so one simulator can play
several misbehaving upstreams (see the table in ``backends.sim``)::

    error-503          answer HTTP 503 in the protocol's error shape
    cut-3              3 tokens, then abort the TCP connection (no terminator)
    stall-2            2 tokens, then hang without closing
    fail-4             4 tokens, then the protocol's in-band error event
    slow-50            50 ms between tokens
    ttft-200           200 ms before the first token
    tokens-5           answer 5 tokens
    slow-20+cut-10     parts combine

Any other name is an ordinary model name. Parsing is cached per name, so the
per-request cost is one dictionary look-up.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

from backends.sim._config import SimConfig

Fault = Literal["cut", "stall", "fail"]
FAULTS: tuple[Fault, ...] = ("cut", "stall", "fail")

_PART = re.compile(r"(error|cut|stall|fail|slow|ttft|tokens)-(\d{1,7})")


@dataclass(frozen=True, slots=True)
class Overrides:
    """The behaviour parts of a model name; ``None`` = take the config's value."""

    error_status: int | None = None
    fault: Fault | None = None
    fault_after: int = 0
    itl_ms: float | None = None
    ttft_ms: float | None = None
    tokens: int | None = None


@lru_cache(maxsize=4096)
def overrides_for(model: str) -> Overrides | None:
    """The overrides a model name selects, or ``None`` for an ordinary name."""
    values: dict[str, int] = {}
    for part in model.split("+"):
        match = _PART.fullmatch(part)
        if match is None:
            return None
        values[match.group(1)] = int(match.group(2))
    status = values.get("error")
    if status is not None and not 400 <= status <= 599:
        return None
    fault: Fault | None = next((f for f in FAULTS if f in values), None)
    return Overrides(
        error_status=status,
        fault=fault,
        fault_after=values[fault] if fault is not None else 0,
        itl_ms=float(values["slow"]) if "slow" in values else None,
        ttft_ms=float(values["ttft"]) if "ttft" in values else None,
        tokens=values.get("tokens"),
    )


def is_behaviour_name(model: str) -> bool:
    """True if every simulator accepts ``model`` as a behaviour name."""
    return overrides_for(model) is not None


@dataclass(frozen=True, slots=True)
class Behaviour:
    """Resolved once per request, when it arrives.

    ``error_status`` set: answer that error and nothing else. ``fault`` set:
    send ``min(fault_after, tokens)`` tokens, then cut, stall or fail instead
    of finishing. Times are in seconds.
    """

    error_status: int | None
    tokens: int
    ttft_s: float
    itl_s: float
    fault: Fault | None
    fault_after: int


def _config_fault(config: SimConfig) -> tuple[Fault | None, int]:
    if config.cut_after is not None:
        return "cut", config.cut_after
    if config.stall_after is not None:
        return "stall", config.stall_after
    if config.fail_after is not None:
        return "fail", config.fail_after
    return None, 0


def resolve(config: SimConfig, model: str, rng: random.Random) -> Behaviour:
    """The behaviour of a request for ``model`` under ``config`` as it is now.

    A model name's parts win over the config; a name that sets a fault
    replaces the config's fault. The error-rate draw uses ``rng`` only when
    the rate is strictly between 0 and 1, so a seeded sequence is
    reproducible.
    """
    over = overrides_for(model) or _NO_OVERRIDES
    status = over.error_status
    if status is None and config.error_rate > 0.0:
        rate = config.error_rate
        if rate >= 1.0 or rng.random() < rate:
            status = config.error_status
    fault, after = (over.fault, over.fault_after) if over.fault is not None else _config_fault(config)
    return Behaviour(
        error_status=status,
        tokens=over.tokens if over.tokens is not None else config.tokens,
        ttft_s=(over.ttft_ms if over.ttft_ms is not None else config.ttft_ms) / 1000.0,
        itl_s=(over.itl_ms if over.itl_ms is not None else config.itl_ms) / 1000.0,
        fault=fault,
        fault_after=after,
    )


_NO_OVERRIDES = Overrides()
