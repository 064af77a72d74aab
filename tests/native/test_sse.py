"""SseDecoder, against both implementations (``impl``, see conftest)."""

from __future__ import annotations

from collections.abc import Sequence
from types import ModuleType

import pytest

Events = list[tuple[str, bytes]]

ANTHROPIC = (
    b"event: message_start\n"
    b'data: {"type":"message_start","message":{"id":"msg_01XFD","type":"message","role":"assistant",'
    b'"content":[],"model":"claude-sonnet-4-5","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,'
    b'"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}}\n\n'
    b"event: content_block_start\n"
    b'data: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n'
    b"event: ping\n"
    b'data: {"type":"ping"}\n\n'
    b"event: content_block_delta\n"
    b'data: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}\n\n'
    b"event: content_block_stop\n"
    b'data: {"type":"content_block_stop","index":0}\n\n'
    b"event: message_delta\n"
    b'data: {"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},'
    b'"usage":{"output_tokens":15}}\n\n'
    b"event: message_stop\n"
    b'data: {"type":"message_stop"}\n\n'
)
ANTHROPIC_EVENTS: Events = [
    (event[len(b"event: ") : event.index(b"\n")].decode(), event[event.index(b"data: ") + len(b"data: ") :])
    for event in ANTHROPIC.split(b"\n\n")
    if event
]

COHERE = (
    b"event: message-start\n"
    b'data: {"id":"5b9c","type":"message-start","delta":{"message":{"role":"assistant","content":[],'
    b'"tool_plan":"","tool_calls":[],"citations":[]}}}\n\n'
    b"event: content-start\n"
    b'data: {"type":"content-start","index":0,"delta":{"message":{"content":{"type":"text","text":""}}}}\n\n'
    b"event: content-delta\n"
    b'data: {"type":"content-delta","index":0,"delta":{"message":{"content":{"text":"Hello"}}}}\n\n'
    b"event: content-end\n"
    b'data: {"type":"content-end","index":0}\n\n'
    b"event: message-end\n"
    b'data: {"type":"message-end","delta":{"finish_reason":"COMPLETE","usage":{"billed_units":'
    b'{"input_tokens":5,"output_tokens":1},"tokens":{"input_tokens":71,"output_tokens":1}}}}\n\n'
)

# Every framing rule at once: comments, ids, retries, unknown fields, events
# without data, multi-line data, no space and two spaces, a bare "data" line.
MIXED = (
    b": comment at the start\n"
    b"retry: 3000\n\n"
    b"event: a\nid: 7\ndata: one\ndata:two\ndata:  three\n\n"
    b"event: unused\n\n"
    b"data\n\n"
    b"data:\ndata:\n\n"
    b"foo: bar\ndata: after unknown\nevent: late name\n\n"
    b"data: no name again\n\n"
    b"event:x\ndata: \xc3\xa9t\xc3\xa9 \xf0\x9f\x98\x80\n\n"
    b"event: \xff\xfename\ndata: \xff\n\n"
    b"data: trailing, incomplete"
)
MIXED_EVENTS: Events = [
    ("a", b"one\ntwo\n three"),
    ("", b""),
    ("", b"\n"),
    ("late name", b"after unknown"),
    ("", b"no name again"),
    ("x", "été 😀".encode()),
    ("\ufffd\ufffdname", b"\xff"),
]
MIXED_BUFFERED = len(b"data: trailing, incomplete")


def decode(impl: ModuleType, parts: Sequence[bytes]) -> tuple[Events, int]:
    d = impl.SseDecoder()
    events: Events = []
    for part in parts:
        got = d.feed(part)
        assert type(got) is list
        for name, data in got:
            assert type(name) is str
            assert type(data) is bytes
        events += got
    return events, d.buffered


STREAMS = {
    "anthropic": (ANTHROPIC, ANTHROPIC_EVENTS, 0),
    "cohere": (COHERE, None, 0),
    "mixed": (MIXED, MIXED_EVENTS, MIXED_BUFFERED),
}


def test_anthropic_example(impl: ModuleType) -> None:
    events = impl.SseDecoder().feed(ANTHROPIC)
    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert events[3] == (
        "content_block_delta",
        b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hello"}}',
    )
    assert events == ANTHROPIC_EVENTS


def test_cohere_example(impl: ModuleType) -> None:
    events = impl.SseDecoder().feed(COHERE)
    assert [name for name, _ in events] == [
        "message-start",
        "content-start",
        "content-delta",
        "content-end",
        "message-end",
    ]
    assert events[4][1].startswith(b'{"type":"message-end"')


def test_every_framing_rule(impl: ModuleType) -> None:
    d = impl.SseDecoder()
    assert d.feed(MIXED) == MIXED_EVENTS
    assert d.buffered == MIXED_BUFFERED
    assert d.feed(b"\n\n") == [("", b"trailing, incomplete")]
    assert d.buffered == 0


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"], ids=["lf", "crlf", "cr"])
@pytest.mark.parametrize("name", STREAMS)
def test_split_at_every_offset_and_byte_by_byte(impl: ModuleType, name: str, eol: bytes) -> None:
    data, _, buffered = STREAMS[name]
    data = data.replace(b"\n", eol)
    expected = impl.SseDecoder().feed(data)
    assert expected
    assert decode(impl, [data[i : i + 1] for i in range(len(data))]) == (expected, buffered)
    for k in range(len(data) + 1):
        assert decode(impl, [data[:k], data[k:]]) == (expected, buffered), k


def test_mixed_line_endings(impl: ModuleType) -> None:
    data = b"data: a\r\ndata: b\rdata: c\n\r\ndata: d\r\r\n\n"
    assert impl.SseDecoder().feed(data) == [("", b"a\nb\nc"), ("", b"d")]


def test_crlf_split_between_feeds(impl: ModuleType) -> None:
    d = impl.SseDecoder()
    assert d.feed(b"data: x\r") == []
    assert d.buffered == len(b"data: x\r")
    assert d.feed(b"\n") == []  # the pair of that \r, not a blank line
    assert d.buffered == len(b"data: x\r\n")
    assert d.feed(b"\r") == [("", b"x")]
    assert d.buffered == 0
    assert d.feed(b"\n") == []  # the pair of the blank line's \r: not counted
    assert d.buffered == 0
    assert d.feed(b"\n") == []  # a blank line of its own: an empty event, not returned
    assert d.feed(b"data: y\n\n") == [("", b"y")]


def test_buffered_grows_with_the_incomplete_event(impl: ModuleType) -> None:
    d = impl.SseDecoder()
    d.feed(b": c\n")
    assert d.buffered == 4
    d.feed(b"event: e\ndata: ab")
    assert d.buffered == 4 + 9 + 8
    d.feed(b"c\n")
    assert d.buffered == 4 + 9 + 10
    assert d.feed(b"\n") == [("e", b"abc")]
    assert d.buffered == 0


def test_empty_feeds(impl: ModuleType) -> None:
    d = impl.SseDecoder()
    assert d.feed(b"") == []
    assert d.feed(b"data: a\r") == []
    assert d.feed(b"") == []
    assert d.feed(b"\n\n") == [("", b"a")]


def test_event_name_resets_after_each_event(impl: ModuleType) -> None:
    data = b"event: one\ndata: 1\n\ndata: 2\n\nevent: three\nevent: 3\ndata: 3\n\n"
    assert impl.SseDecoder().feed(data) == [("one", b"1"), ("", b"2"), ("3", b"3")]


def test_large_event_across_many_reads(impl: ModuleType) -> None:
    payload = b"x" * (1 << 20)
    data = b"event: big\ndata: " + payload + b"\n\ndata: small\n\n"
    d = impl.SseDecoder()
    events: Events = []
    for i in range(0, len(data), 1 << 14):
        events += d.feed(data[i : i + (1 << 14)])
    assert events == [("big", payload), ("", b"small")]
    assert impl.SseDecoder().feed(data) == events  # one large read (the native one releases the GIL)


def test_the_openai_decoder_frames_the_same_way(impl: ModuleType) -> None:
    # Payloads the generic decoder returns are exactly what the OpenAI one parses.
    data = b'event: x\r\ndata: {"choices":\r\ndata: [{"text":"a"}]}\r\n\r\n'
    assert impl.SseDecoder().feed(data) == [("x", b'{"choices":\n[{"text":"a"}]}')]
    assert impl.OpenAIStreamDecoder().feed(data)[0] == "a"
