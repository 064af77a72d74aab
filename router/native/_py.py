"""Pure-Python twin of the native stream decoders (``router.native._native``).

Same names, same behaviour, byte for byte; the suite in ``tests/native`` runs
against both. This twin is the readable statement of the contract; the C++ in
``native/`` is the fast one.

SSE framing (both decoders), after the WHATWG event-stream rules:

- Lines end with ``\\n``, ``\\r\\n`` or ``\\r``; a ``\\r\\n`` split across two feeds
  is still one line ending. A blank line ends an event.
- ``data`` lines are joined with ``\\n``; one space after the colon is dropped;
  ``event`` sets the event name; ``:`` lines are comments; a line with no
  colon is a field with an empty value; ``id``, ``retry`` and unknown fields
  are ignored. An event with no ``data`` line is not returned.
- ``buffered`` counts the bytes received since the last event boundary (the
  incomplete event the decoder holds), so a caller can cap an upstream that
  never ends an event.

Decoders are per stream and not thread-safe.
"""

from __future__ import annotations

import orjson

__all__ = ["OpenAIStreamDecoder", "SseDecoder"]

_CR = 0x0D
_LF = 0x0A
_INT64_MAX = (1 << 63) - 1
_JSON_WS = b" \t\r\n"
_ERR_CONTEXT = 80  # bytes of payload quoted in an error message, at most

Usage = tuple[int, int, int]
FeedResult = tuple[str, str | None, Usage | None, str | None, bool, bytes | None]


class _Framer:
    """Incremental SSE framing: bytes in, completed ``(name, data)`` events out."""

    __slots__ = ("_data", "_event", "_has_data", "_pending", "_skip_lf", "_tail")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._tail = b""  # the incomplete last line, without a line ending
        self._pending = 0  # bytes of completed lines of the current event
        self._skip_lf = False  # the previous feed ended with "\r"
        self._event = b""
        self._data: list[bytes] = []
        self._has_data = False

    @property
    def buffered(self) -> int:
        return self._pending + len(self._tail)

    def feed(self, data: bytes) -> list[tuple[bytes, bytes]]:
        if self._skip_lf and data:
            self._skip_lf = False
            if data[0] == _LF:
                # The second half of a "\r\n": it belongs to the line the "\r"
                # ended, and so to the current event only if that line wasn't
                # the blank line that ended an event.
                data = data[1:]
                if self._pending:
                    self._pending += 1
        buf = self._tail + data if self._tail else data
        lines = buf.splitlines(keepends=True)  # bytes: only \n, \r\n, \r
        if lines and lines[-1][-1] not in (_CR, _LF):
            self._tail = lines.pop()
        else:
            self._tail = b""
            if lines and lines[-1][-1] == _CR:
                self._skip_lf = True
        out: list[tuple[bytes, bytes]] = []
        for raw in lines:
            line = raw.rstrip(b"\r\n")
            if not line:
                if self._has_data:
                    out.append((self._event, b"\n".join(self._data)))
                self._event = b""
                self._data = []
                self._has_data = False
                self._pending = 0
                continue
            self._pending += len(raw)
            colon = line.find(b":")
            if colon == 0:
                continue  # comment
            if colon < 0:
                field, value = line, b""
            else:
                field = line[:colon]
                value = line[colon + 1 :]
                if value[:1] == b" ":
                    value = value[1:]
            if field == b"data":
                self._data.append(value)
                self._has_data = True
            elif field == b"event":
                self._event = value
        return out


class SseDecoder:
    """Incremental Server-Sent Events decoder (for Anthropic, Cohere and any event stream).

    ``feed(data)`` returns every event completed by ``data``, in order, as
    ``(event name or "", data payload)``. Names are decoded as UTF-8 with
    replacement; payloads are returned as bytes, untouched.
    """

    __slots__ = ("_framer",)

    def __init__(self) -> None:
        self._framer = _Framer()

    def feed(self, data: bytes) -> list[tuple[str, bytes]]:
        return [(name.decode("utf-8", "replace"), payload) for name, payload in self._framer.feed(data)]

    @property
    def buffered(self) -> int:
        """Bytes held of an incomplete event."""
        return self._framer.buffered


def _count(value: object) -> int:
    # A token count: a JSON integer in [0, 2**63 - 1]; anything else reads as 0.
    if type(value) is int and 0 <= value <= _INT64_MAX:
        return value
    return 0


def _is_index_zero(choice: dict[str, object]) -> bool:
    # An absent index means the only choice; bool is not a number in JSON.
    if "index" not in choice:
        return True
    index = choice["index"]
    return type(index) in (int, float) and index == 0


def _quote(payload: bytes) -> str:
    head = payload[:_ERR_CONTEXT]
    more = "..." if len(payload) > _ERR_CONTEXT else ""
    return f"{head!r}{more}"


class OpenAIStreamDecoder:
    """Decodes an OpenAI-style chat or completions stream (OpenAI, Azure OpenAI, vLLM,
    any OpenAI-compatible server): SSE framing plus extraction of the fields the
    gateway needs, one call per network read, so Python touches each read rather
    than each token.

    ``feed(data)`` returns ``(text, finish_reason, usage, model, done, error)``
    for the events completed by ``data``:

    ==============  ==================================================================
    text            concatenation of ``choices[i].delta.content`` (chat) and
                    ``choices[i].text`` (completions) of choices with index 0 (an
                    absent index counts as 0); null or absent reads as ""
    finish_reason   the last string ``choices[0].finish_reason`` in this feed, or None
    usage           ``(prompt_tokens, completion_tokens, cached_tokens)`` from the last
                    event in this feed whose ``usage`` is an object, else None; a
                    missing or non-integer count reads as 0
    model           the first non-empty string top-level ``model`` seen by this
                    decoder, on the feed where it is first seen; None otherwise
    done            ``data: [DONE]`` was seen (by this feed or an earlier one)
    error           raw payload of an in-band error event (a top-level ``"error"``
                    that is not null), on the feed where it is seen, else None
    ==============  ==================================================================

    Fields of the wrong JSON type read as absent; where a key repeats, the last
    one counts (as in any parser that builds a dict). Blank ``data`` payloads
    are skipped; ``[DONE]`` may carry JSON whitespace around it. Event names
    are ignored. After ``[DONE]`` or an error event the decoder decodes and
    holds nothing more (``done`` stays True after ``[DONE]``).

    A payload that is not a JSON object, or is malformed (judged as strictly as
    orjson judges it: UTF-8, escapes, surrogates, numbers that overflow a
    double, nesting deeper than 1024), raises ``ValueError`` with a short
    description; the decoder is then failed and every later ``feed`` raises
    too. The events before the bad one in that feed are lost with it: treat
    the stream as broken.
    """

    __slots__ = ("_done", "_failed", "_finished", "_framer", "_model_seen")

    def __init__(self) -> None:
        self._framer = _Framer()
        self._model_seen = False
        self._finished = False
        self._done = False
        self._failed = False

    @property
    def buffered(self) -> int:
        """Bytes held of an incomplete event (0 once the stream is finished or failed)."""
        return self._framer.buffered

    def _fail(self) -> None:
        self._failed = True
        self._framer.reset()  # a failed decoder holds nothing

    def feed(self, data: bytes) -> FeedResult:
        if self._failed:
            raise ValueError("stream decoder already failed on a malformed event")
        if self._finished:
            return ("", None, None, None, self._done, None)
        parts: list[str] = []
        finish: str | None = None
        usage: Usage | None = None
        model: str | None = None
        error: bytes | None = None
        for _name, payload in self._framer.feed(data):
            stripped = payload.strip(_JSON_WS)
            if not stripped:
                continue
            if stripped == b"[DONE]":
                self._done = True
                break
            try:
                obj = orjson.loads(payload)
            except orjson.JSONDecodeError as exc:
                self._fail()
                raise ValueError(f"malformed JSON in stream event ({exc}): {_quote(payload)}") from None
            if type(obj) is not dict:
                self._fail()
                raise ValueError(f"stream event is not a JSON object: {_quote(payload)}")
            if obj.get("error") is not None:
                error = payload
                break
            if not self._model_seen:
                m = obj.get("model")
                if type(m) is str and m:
                    model = m
                    self._model_seen = True
            choices = obj.get("choices")
            if type(choices) is list:
                for choice in choices:
                    if type(choice) is not dict or not _is_index_zero(choice):
                        continue
                    delta = choice.get("delta")
                    if type(delta) is dict:
                        content = delta.get("content")
                        if type(content) is str:
                            parts.append(content)
                    text = choice.get("text")
                    if type(text) is str:
                        parts.append(text)
                    reason = choice.get("finish_reason")
                    if type(reason) is str:
                        finish = reason
            u = obj.get("usage")
            if type(u) is dict:
                details = u.get("prompt_tokens_details")
                cached = _count(details.get("cached_tokens")) if type(details) is dict else 0
                usage = (_count(u.get("prompt_tokens")), _count(u.get("completion_tokens")), cached)
        if self._done or error is not None:
            self._finished = True
            self._framer.reset()
        return ("".join(parts), finish, usage, model, self._done, error)
