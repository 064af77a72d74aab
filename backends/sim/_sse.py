"""Server-sent-event framing, and templates that keep the per-token path cheap.

A ``Template`` is an SSE event serialized once per request with holes where
the per-token values go; filling it is one ``bytes.join``. JSON is compact
(orjson) everywhere except where a server is known to use ``json.dumps``
spacing (vLLM's in-band errors), which callers do themselves.
"""

from __future__ import annotations

from typing import Any

import orjson

DONE = b"data: [DONE]\n\n"
SSE_HEADERS: dict[str, str] = {
    "Content-Type": "text/event-stream; charset=utf-8",
    "Cache-Control": "no-cache",
}


def dumps(obj: Any, *, sort_keys: bool = False) -> bytes:
    """Compact JSON, keys in insertion order (or sorted)."""
    return orjson.dumps(obj, option=orjson.OPT_SORT_KEYS if sort_keys else 0)


def data_event(payload: bytes) -> bytes:
    """``data: <payload>`` and the blank line (OpenAI and vLLM framing)."""
    return b"data: " + payload + b"\n\n"


def named_event(name: bytes, payload: bytes) -> bytes:
    """``event: <name>`` + ``data: <payload>`` (Anthropic and Cohere framing)."""
    return b"event: " + name + b"\ndata: " + payload + b"\n\n"


class Hole:
    """A placeholder in a template's object; replaced by raw JSON bytes."""

    __slots__ = ("marker",)

    def __init__(self, index: int) -> None:
        self.marker = f"\x00meshgate-sim-hole-{index}\x00"


TEXT = Hole(0)
"""The usual hole: a token's text, filled with ``token_json(text)``."""
USAGE = Hole(1)
"""The second hole, for per-token usage (vLLM ``continuous_usage_stats``)."""


def _default(obj: Any) -> Any:
    if isinstance(obj, Hole):
        return obj.marker
    raise TypeError(f"cannot serialize {type(obj).__name__}")


class Template:
    """One SSE event with holes: a ``data:`` event, or a named one when
    ``event`` is given. ``fill`` takes raw JSON for each hole, in the order of
    ``holes`` as given to the constructor (whatever their order in the
    serialized object, e.g. with sorted keys)."""

    __slots__ = ("_order", "_parts")

    def __init__(
        self,
        obj: Any,
        holes: tuple[Hole, ...] = (TEXT,),
        *,
        sort_keys: bool = False,
        event: bytes | None = None,
    ) -> None:
        raw = orjson.dumps(obj, default=_default, option=orjson.OPT_SORT_KEYS if sort_keys else 0)
        framed = named_event(event, raw) if event is not None else data_event(raw)
        found = sorted((framed.index(orjson.dumps(h.marker)), i) for i, h in enumerate(holes))
        parts: list[bytes] = []
        start = 0
        for pos, i in found:
            parts.append(framed[start:pos])
            start = pos + len(orjson.dumps(holes[i].marker))
        parts.append(framed[start:])
        self._parts = tuple(parts)
        self._order = tuple(i for _, i in found)

    def fill(self, *values: bytes) -> bytes:
        parts = self._parts
        if len(parts) == 2:
            return parts[0] + values[0] + parts[1]
        out = [parts[0]]
        for k, i in enumerate(self._order):
            out.append(values[i])
            out.append(parts[k + 1])
        return b"".join(out)
