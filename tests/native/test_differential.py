"""Differential property tests: the compiled decoders and the pure-Python twin
must agree, feed by feed, on generated streams (well-formed, oddly formed and
broken), however they are cut into reads. Both raising ValueError on the same
feed counts as agreement."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# MESHGATE_NATIVE_EXAMPLES=20000 for a long hunt after changing either implementation.
SETTINGS = settings(
    max_examples=int(os.environ.get("MESHGATE_NATIVE_EXAMPLES", "250")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# ---------------------------------------------------------------- JSON values, written by hand


NUMBER = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.from_regex(r"-?(0|[1-9][0-9]{0,3})(\.[0-9]{1,3})?([eE][+-]?[0-9]{1,2})?", fullmatch=True),
    st.sampled_from(["1e308", "1.7976931348623157e308", "1e-400", "0e999", "-0", "0.0", "1E+2"]),
)
# Numbers at and past the largest double, which orjson rejects as infinite.
EXTREME_NUMBER = st.one_of(
    st.from_regex(r"-?[1-9]\.[0-9]{0,20}[eE]\+?30[6-9]", fullmatch=True),
    st.integers(305, 312).map(lambda n: "9" * n),
    st.sampled_from(
        ["1.8e308", "1e309", "1.7976931348623158e308", "1.7976931348623159e308", "1e99999999999"]
    ),
)
TEXT = st.text(
    alphabet=st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from('"\\/\b\f\n\r\t\x00\x1f\u2028é😀'),
    ),
    max_size=12,
)
KEYS = st.sampled_from(
    ["choices", "index", "delta", "content", "text", "finish_reason", "usage", "prompt_tokens",
     "completion_tokens", "prompt_tokens_details", "cached_tokens", "model", "error", "id", "logprobs", "x"]
)  # fmt: skip
WS = st.sampled_from(["", "", "", " ", "\t", "  "])


def string(draw: st.DrawFn, value: str) -> str:
    if draw(st.booleans()):
        return json.dumps(value, ensure_ascii=draw(st.booleans()))
    # Escape some characters the long way, \uXXXX (surrogate pairs included).
    out = ['"']
    for ch in value:
        if ch in '"\\' or ord(ch) < 0x20 or draw(st.integers(0, 4)) == 0:
            code = ord(ch)
            if code > 0xFFFF:
                code -= 0x10000
                out.append(f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04X}")
            else:
                out.append(f"\\u{code:04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


@st.composite
def json_value(draw: st.DrawFn, depth: int = 0, numbers: st.SearchStrategy[str] = NUMBER) -> str:
    kinds = ["null", "true", "false", "number", "string"] + (["array", "object"] if depth < 4 else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "number":
        return draw(numbers)
    if kind == "string":
        return string(draw, draw(TEXT | KEYS))
    if kind == "array":
        items = draw(st.lists(json_value(depth + 1, numbers), max_size=3))
        return "[" + ",".join(draw(WS) + i + draw(WS) for i in items) + "]"
    if kind == "object":
        return json_object(draw, depth + 1, {})
    return kind


def json_object(draw: st.DrawFn, depth: int, fields: dict[str, Callable[[], str]]) -> str:
    """An object with ``fields`` (value makers) and some random members, in random
    order, with random whitespace and sometimes a duplicated key."""
    members = [(k, make()) for k, make in fields.items()]
    members += [(draw(KEYS), draw(json_value(depth))) for _ in range(draw(st.integers(0, 2)))]
    members = draw(st.permutations(members))
    body = ",".join(f"{draw(WS)}{string(draw, k)}{draw(WS)}:{draw(WS)}{v}{draw(WS)}" for k, v in members)
    return "{" + body + draw(WS) + "}"


@st.composite
def chunk(draw: st.DrawFn) -> str:
    """One OpenAI-style event payload, usually well-formed, sometimes odd."""

    def maybe(make: Callable[[], str]) -> Callable[[], str]:
        return lambda: make() if draw(st.integers(0, 5)) else draw(json_value(2))

    def choice() -> str:
        fields: dict[str, Callable[[], str]] = {}
        if draw(st.integers(0, 5)):
            fields["index"] = maybe(lambda: draw(st.sampled_from(["0", "0", "0", "1", "0.0", "-0", "2"])))
        if draw(st.booleans()):
            fields["delta"] = maybe(
                lambda: json_object(draw, 3, {"content": maybe(lambda: string(draw, draw(TEXT)))})
            )
        else:
            fields["text"] = maybe(lambda: string(draw, draw(TEXT)))
        if draw(st.booleans()):
            fields["finish_reason"] = maybe(lambda: draw(st.sampled_from(['"stop"', '"length"', "null"])))
        return json_object(draw, 2, fields)

    def usage() -> str:
        return json_object(
            draw,
            2,
            {
                "prompt_tokens": maybe(lambda: draw(NUMBER)),
                "completion_tokens": maybe(lambda: draw(NUMBER)),
                "prompt_tokens_details": maybe(
                    lambda: json_object(draw, 3, {"cached_tokens": lambda: draw(NUMBER)})
                ),
            },
        )

    fields: dict[str, Callable[[], str]] = {}
    fields["choices"] = maybe(lambda: "[" + ",".join(choice() for _ in range(draw(st.integers(0, 3)))) + "]")
    if draw(st.booleans()):
        fields["model"] = maybe(
            lambda: string(draw, draw(st.sampled_from(["", "m", "Qwen/Qwen3-0.6B", "é"])))
        )
    if draw(st.integers(0, 3)) == 0:
        fields["usage"] = maybe(usage)
    if draw(st.integers(0, 15)) == 0:
        fields["error"] = lambda: draw(st.sampled_from(["null", '{"message": "boom", "code": 400}']))
    return json_object(draw, 1, fields)


def mutate(draw: Callable[[st.SearchStrategy[Any]], Any], payload: bytes, one_in: int = 10) -> bytes:
    """Breaks a payload, one time in ``one_in``: a byte deleted, replaced or inserted."""
    if not payload or not draw(st.sampled_from([False] * (one_in - 1) + [True])):
        return payload
    i = draw(st.integers(0, len(payload) - 1))
    b = bytes([draw(st.sampled_from(list(b'{}[]",:\\ \x00\x7f\xc3\xff0e.-tn')))])
    op = draw(st.sampled_from(["delete", "replace", "insert"]))
    if op == "delete":
        return payload[:i] + payload[i + 1 :]
    if op == "replace":
        return payload[:i] + b + payload[i + 1 :]
    return payload[:i] + b + payload[i:]


@st.composite
def openai_stream(draw: st.DrawFn) -> bytes:
    eol = draw(st.sampled_from([b"\n", b"\r\n", b"\r"]))
    out = b""
    for _ in range(draw(st.integers(0, 6))):
        kind = draw(st.integers(0, 19))
        if kind == 0:
            out += b": keep-alive" + eol + eol
        elif kind == 1:
            out += b"data: [DONE]" + eol + eol
        elif kind == 2:
            out += b"id: 3" + eol + b"event: e" + eol + b"retry: 1" + eol + eol
        else:
            payload = mutate(draw, draw(chunk()).encode(), one_in=25)
            lines = [payload]
            commas = [i + 1 for i, b in enumerate(payload) if b == ord(",")]
            if commas and draw(st.integers(0, 4)) == 0:  # multi-line data, cut after a comma
                cut = draw(st.sampled_from(commas))
                lines = [payload[:cut], payload[cut:]]
            prefix = draw(st.sampled_from([b"data: ", b"data:"]))
            out += b"".join(prefix + line + eol for line in lines) + eol
    return out + draw(st.sampled_from([b"", b"data: {", b"data: [DO", b"\r"]))


@st.composite
def cuts(draw: st.DrawFn, data: bytes) -> list[bytes]:
    points = sorted(draw(st.lists(st.integers(0, len(data)), max_size=8)))
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@st.composite
def stream_and_cuts(draw: st.DrawFn, stream: st.SearchStrategy[bytes]) -> list[bytes]:
    return draw(cuts(draw(stream)))


# Raw bytes from SSE- and JSON-significant pieces: framing corner cases.
PIECES = st.sampled_from(
    [b"data:", b"data: ", b"event:", b" ", b"\n", b"\r", b"\r\n", b":", b"id: 1", b"e", b"{", b"}",
     b'"', b"[DONE]", b'{"choices":[{"text":"t"}]}', b'{"model":"m"}', b"\xc3\xa9", b"\xff", b"x"]
)  # fmt: skip
RAW = st.lists(PIECES, max_size=40).map(b"".join)


# ---------------------------------------------------------------- the properties


def outcomes(impl: ModuleType, cls: str, parts: Sequence[bytes]) -> list[Any]:
    d = getattr(impl, cls)()
    out: list[Any] = []
    for part in parts:
        try:
            out.append(d.feed(part))
        except ValueError:
            out.append(ValueError)
        out.append(d.buffered)
    return out


@SETTINGS
@given(parts=stream_and_cuts(openai_stream()))
def test_openai_decoders_agree(both: tuple[ModuleType, ModuleType], parts: list[bytes]) -> None:
    twin, native = both
    assert outcomes(native, "OpenAIStreamDecoder", parts) == outcomes(twin, "OpenAIStreamDecoder", parts)


@SETTINGS
@given(parts=stream_and_cuts(openai_stream() | RAW))
def test_sse_decoders_agree(both: tuple[ModuleType, ModuleType], parts: list[bytes]) -> None:
    twin, native = both
    assert outcomes(native, "SseDecoder", parts) == outcomes(twin, "SseDecoder", parts)


@SETTINGS
@given(parts=stream_and_cuts(RAW))
def test_openai_decoders_agree_on_raw_bytes(both: tuple[ModuleType, ModuleType], parts: list[bytes]) -> None:
    twin, native = both
    assert outcomes(native, "OpenAIStreamDecoder", parts) == outcomes(twin, "OpenAIStreamDecoder", parts)


@SETTINGS
@given(data=st.data())
def test_json_validity_agrees(both: tuple[ModuleType, ModuleType], data: st.DataObject) -> None:
    # Any JSON value, often broken, as a member of an event: accepted or rejected alike.
    twin, native = both
    value = mutate(data.draw, data.draw(json_value(numbers=NUMBER | EXTREME_NUMBER)).encode(), one_in=2)
    parts = [b'data: {"v":' + value + b"}\n\n"]
    assert outcomes(native, "OpenAIStreamDecoder", parts) == outcomes(twin, "OpenAIStreamDecoder", parts)


@SETTINGS
@given(data=openai_stream(), st_cut=st.data())
def test_cutting_never_changes_the_result(impl: ModuleType, data: bytes, st_cut: st.DataObject) -> None:
    # Merged over the reads, the result of any cut equals the result of one read.
    parts = st_cut.draw(cuts(data))
    whole = outcomes(impl, "OpenAIStreamDecoder", [data])
    split = outcomes(impl, "OpenAIStreamDecoder", parts)
    if ValueError in whole or ValueError in split:
        assert (ValueError in whole) == (ValueError in split)
        return
    merged: list[Any] = ["", None, None, None, False, None]
    for result in split[0::2]:
        text, finish, usage, model, done, error = result
        merged[0] += text
        merged[1] = finish if finish is not None else merged[1]
        merged[2] = usage if usage is not None else merged[2]
        merged[3] = model if model is not None else merged[3]
        merged[4] = done
        merged[5] = error if error is not None else merged[5]
    assert tuple(merged) == whole[0]
    assert split[-1] == whole[-1]  # buffered
