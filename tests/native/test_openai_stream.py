"""OpenAIStreamDecoder, against both implementations (``impl``, see conftest).

The streams are the examples of /work/shared/reference/wire-protocols.md
(vLLM 1.3/1.4, OpenAI 4.1, Azure 4.5), fed whole, split at every byte
offset, byte by byte, and with every line ending.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from types import ModuleType

import pytest

Result = tuple[str, str | None, tuple[int, int, int] | None, str | None, bool, bytes | None]


def sse(*payloads: str | bytes, eol: bytes = b"\n") -> bytes:
    """An SSE stream of ``data:`` events, one per payload."""
    out = b""
    for p in payloads:
        raw = p.encode() if isinstance(p, str) else p
        out += b"data: " + raw + eol + eol
    return out


VLLM_CHAT = sse(
    '{"id":"chatcmpl-8b1…","object":"chat.completion.chunk","created":1767225600,"model":"Qwen/Qwen3-0.6B",'
    '"choices":[{"index":0,"delta":{"role":"assistant","content":"","reasoning_content":null},"logprobs":null,'
    '"finish_reason":null}],"prompt_token_ids":null}',
    '{"id":"chatcmpl-8b1…","object":"chat.completion.chunk","created":1767225600,"model":"Qwen/Qwen3-0.6B",'
    '"choices":[{"index":0,"delta":{"content":"Hello","reasoning_content":null},"logprobs":null,'
    '"finish_reason":null,"token_ids":null}]}',
    '{"id":"chatcmpl-8b1…","object":"chat.completion.chunk","created":1767225600,"model":"Qwen/Qwen3-0.6B",'
    '"choices":[{"index":0,"delta":{"content":"!","reasoning_content":null},"logprobs":null,'
    '"finish_reason":"stop","stop_reason":null,"token_ids":null}]}',
    '{"id":"chatcmpl-8b1…","object":"chat.completion.chunk","created":1767225600,"model":"Qwen/Qwen3-0.6B",'
    '"choices":[],"usage":{"prompt_tokens":9,"total_tokens":11,"completion_tokens":2}}',
    "[DONE]",
)

VLLM_COMPLETIONS = sse(
    '{"id":"cmpl-8b1","object":"text_completion","created":1767225600,"model":"Qwen/Qwen3-0.6B",'
    '"choices":[{"index":0,"text":"Once","logprobs":null,"finish_reason":null,"stop_reason":null}]}',
    '{"id":"cmpl-8b1","object":"text_completion","created":1767225600,"model":"Qwen/Qwen3-0.6B",'
    '"choices":[{"index":0,"text":" upon","logprobs":null,"finish_reason":null,"stop_reason":null,'
    '"prompt_token_ids":null,"token_ids":null}]}',
    '{"id":"cmpl-8b1","object":"text_completion","created":1767225600,"model":"Qwen/Qwen3-0.6B",'
    '"choices":[{"index":0,"text":" a time","logprobs":null,"finish_reason":"length","stop_reason":null}]}',
    '{"id":"cmpl-8b1","object":"text_completion","created":1767225600,"model":"Qwen/Qwen3-0.6B",'
    '"choices":[],"usage":{"prompt_tokens":4,"total_tokens":7,"completion_tokens":3,'
    '"prompt_tokens_details":{"cached_tokens":2}}}',
    "[DONE]",
)

VLLM_ERROR_BODY = (
    b'{"error": {"message": "This model\'s maximum context length is 4096 tokens.", '
    b'"type": "BadRequestError", "param": null, "code": 400}}'
)
VLLM_ERROR = sse(VLLM_ERROR_BODY, "[DONE]")

# Tokens, then an in-band error mid-stream (vLLM always sends [DONE] after it).
VLLM_MIDSTREAM_ERROR = sse(
    '{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
    '"delta":{"content":"partial"},"finish_reason":null}]}',
    VLLM_ERROR_BODY,
    '{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,'
    '"delta":{"content":"ignored"},"finish_reason":"stop"}]}',
    "[DONE]",
)

OPENAI_CHAT = sse(
    '{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini",'
    '"system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{"role":"assistant","content":"",'
    '"refusal":null},"logprobs":null,"finish_reason":null}],"usage":null}',
    '{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini",'
    '"system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{"content":"Hi"},"logprobs":null,'
    '"finish_reason":null}],"usage":null}',
    '{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini",'
    '"system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{},"logprobs":null,'
    '"finish_reason":"stop"}],"usage":null}',
    '{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini",'
    '"system_fingerprint":"fp_44709d6fcb","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":2,'
    '"total_tokens":11,"prompt_tokens_details":{"cached_tokens":0},'
    '"completion_tokens_details":{"reasoning_tokens":0}}}',
    "[DONE]",
)

OPENAI_TOOLS = sse(
    '{"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,'
    '"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_abc","type":"function",'
    '"function":{"name":"get_weather","arguments":""}}]},"finish_reason":null}]}',
    '{"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,'
    '"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\\"city\\":\\"Pa"}}]},"finish_reason":null}]}',
    '{"id":"chatcmpl-9","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{"index":0,'
    '"delta":{},"finish_reason":"tool_calls"}]}',
    "[DONE]",
)

_FILTER = (
    '{"hate":{"filtered":false,"severity":"safe"},"self_harm":{"filtered":false,"severity":"safe"},'
    '"sexual":{"filtered":false,"severity":"safe"},"violence":{"filtered":false,"severity":"safe"}}'
)
# Azure: keys in alphabetical order, a first chunk with model "" and no choices.
AZURE_CHAT = sse(
    '{"choices":[],"created":0,"id":"","model":"","object":"","prompt_filter_results":[{"prompt_index":0,'
    f'"content_filter_results":{_FILTER}}}]}}',
    '{"choices":[{"content_filter_results":{},"delta":{"content":"","refusal":null,"role":"assistant"},'
    '"finish_reason":null,"index":0,"logprobs":null}],"created":1727000000,"id":"chatcmpl-A1",'
    '"model":"gpt-4o-2024-08-06","object":"chat.completion.chunk","system_fingerprint":"fp_b2ffeb16ee"}',
    f'{{"choices":[{{"content_filter_results":{_FILTER},"delta":{{"content":"Bonjour"}},"finish_reason":null,'
    '"index":0,"logprobs":null}],"created":1727000000,"id":"chatcmpl-A1","model":"gpt-4o-2024-08-06",'
    '"object":"chat.completion.chunk","system_fingerprint":"fp_b2ffeb16ee"}',
    f'{{"choices":[{{"content_filter_results":{_FILTER},"delta":{{"content":" à tous"}},"finish_reason":null,'
    '"index":0,"logprobs":null}],"created":1727000000,"id":"chatcmpl-A1","model":"gpt-4o-2024-08-06",'
    '"object":"chat.completion.chunk","system_fingerprint":"fp_b2ffeb16ee"}',
    '{"choices":[{"content_filter_results":{},"delta":{},"finish_reason":"stop","index":0,"logprobs":null}],'
    '"created":1727000000,"id":"chatcmpl-A1","model":"gpt-4o-2024-08-06","object":"chat.completion.chunk",'
    '"system_fingerprint":"fp_b2ffeb16ee"}',
    '{"choices":[],"created":1727000000,"id":"chatcmpl-A1","model":"gpt-4o-2024-08-06",'
    '"object":"chat.completion.chunk","system_fingerprint":"fp_b2ffeb16ee","usage":{"completion_tokens":3,'
    '"completion_tokens_details":{"reasoning_tokens":0},"prompt_tokens":12,'
    '"prompt_tokens_details":{"cached_tokens":4},"total_tokens":15}}',
    "[DONE]",
)

STREAMS: dict[str, tuple[bytes, Result]] = {
    "vllm-chat": (VLLM_CHAT, ("Hello!", "stop", (9, 2, 0), "Qwen/Qwen3-0.6B", True, None)),
    "vllm-completions": (
        VLLM_COMPLETIONS,
        ("Once upon a time", "length", (4, 3, 2), "Qwen/Qwen3-0.6B", True, None),
    ),
    "vllm-error": (VLLM_ERROR, ("", None, None, None, False, VLLM_ERROR_BODY)),
    "vllm-midstream-error": (VLLM_MIDSTREAM_ERROR, ("partial", None, None, "m", False, VLLM_ERROR_BODY)),
    "openai-chat": (OPENAI_CHAT, ("Hi", "stop", (9, 2, 0), "gpt-4o-mini", True, None)),
    "openai-tools": (OPENAI_TOOLS, ("", "tool_calls", None, "gpt-4o", True, None)),
    "azure-chat": (AZURE_CHAT, ("Bonjour à tous", "stop", (12, 3, 4), "gpt-4o-2024-08-06", True, None)),
}


def decode(impl: ModuleType, parts: Sequence[bytes]) -> tuple[Result, int]:
    """Feeds ``parts`` to one decoder; merges the per-feed results as a caller would,
    checking the per-feed invariants on the way. Returns the merged result and
    ``buffered`` at the end."""
    d = impl.OpenAIStreamDecoder()
    text: list[str] = []
    finish = usage = model = error = None
    done = False
    for part in parts:
        t, f, u, m, dn, e = d.feed(part)
        assert type(t) is str
        assert type(dn) is bool
        assert not (done and not dn), "done is sticky"
        text.append(t)
        finish = f if f is not None else finish
        usage = u if u is not None else usage
        if m is not None:
            assert model is None, "model is returned once"
            model = m
        if e is not None:
            assert error is None, "an error is returned once"
            error = e
        done = dn
    return ("".join(text), finish, usage, model, done, error), d.buffered


def two_part_splits(data: bytes) -> Iterator[list[bytes]]:
    for k in range(len(data) + 1):
        yield [data[:k], data[k:]]


def bytewise(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


# ---------------------------------------------------------------- the reference streams


@pytest.mark.parametrize("name", STREAMS)
def test_reference_stream_fed_whole(impl: ModuleType, name: str) -> None:
    data, expected = STREAMS[name]
    assert impl.OpenAIStreamDecoder().feed(data) == expected


@pytest.mark.parametrize("name", STREAMS)
def test_reference_stream_split_at_every_offset(impl: ModuleType, name: str) -> None:
    data, expected = STREAMS[name]
    for parts in two_part_splits(data):
        assert decode(impl, parts) == (expected, 0), parts


@pytest.mark.parametrize("name", STREAMS)
def test_reference_stream_fed_byte_by_byte(impl: ModuleType, name: str) -> None:
    data, expected = STREAMS[name]
    assert decode(impl, bytewise(data)) == (expected, 0)


@pytest.mark.parametrize("eol", [b"\r\n", b"\r"], ids=["crlf", "cr"])
@pytest.mark.parametrize("name", STREAMS)
def test_reference_stream_with_other_line_endings(impl: ModuleType, name: str, eol: bytes) -> None:
    data, expected = STREAMS[name]
    data = data.replace(b"\n", eol)
    assert impl.OpenAIStreamDecoder().feed(data) == expected
    assert decode(impl, bytewise(data)) == (expected, 0)
    for parts in two_part_splits(data):
        assert decode(impl, parts) == (expected, 0), parts


def test_one_feed_per_event(impl: ModuleType) -> None:
    events = [e + b"\n\n" for e in AZURE_CHAT.split(b"\n\n") if e]
    d = impl.OpenAIStreamDecoder()
    results = [d.feed(e) for e in events]
    assert results == [
        ("", None, None, None, False, None),  # Azure's empty first chunk: no model yet
        ("", None, None, "gpt-4o-2024-08-06", False, None),
        ("Bonjour", None, None, None, False, None),
        (" à tous", None, None, None, False, None),
        ("", "stop", None, None, False, None),
        ("", None, (12, 3, 4), None, False, None),
        ("", None, None, None, True, None),
    ]


def test_data_without_a_space_and_the_no_space_done(impl: ModuleType) -> None:
    data = b'data:{"choices":[{"index":0,"text":"x"}]}\n\ndata:[DONE]\n\n'
    assert impl.OpenAIStreamDecoder().feed(data) == ("x", None, None, None, True, None)


# ---------------------------------------------------------------- end of stream


def test_nothing_is_decoded_after_done(impl: ModuleType) -> None:
    d = impl.OpenAIStreamDecoder()
    assert d.feed(b'data: [DONE]\n\ndata: {"choices":[{"delta":{"content":"late"}}]}\n\ndata: {oops')[4]
    assert d.buffered == 0
    assert d.feed(b"data: {not json}\n\n") == ("", None, None, None, True, None)
    assert d.buffered == 0


def test_error_event_stops_decoding(impl: ModuleType) -> None:
    d = impl.OpenAIStreamDecoder()
    first = d.feed(sse('{"choices":[{"delta":{"content":"a"}}]}', '{"error":{"message":"boom"}}', "{bad"))
    assert first == ("a", None, None, None, False, b'{"error":{"message":"boom"}}')
    assert d.feed(sse("[DONE]")) == ("", None, None, None, False, None)
    assert d.buffered == 0


def test_error_null_is_not_an_error(impl: ModuleType) -> None:
    data = sse('{"error":null,"choices":[{"index":0,"delta":{"content":"ok"}}]}')
    assert impl.OpenAIStreamDecoder().feed(data) == ("ok", None, None, None, False, None)


def test_error_key_decides_even_when_last(impl: ModuleType) -> None:
    body = (
        b'{"model":"m","choices":[{"index":0,"delta":{"content":"x"},"finish_reason":"stop"}],'
        b'"error":{"c":1}}'
    )
    assert impl.OpenAIStreamDecoder().feed(sse(body)) == ("", None, None, None, False, body)


def test_buffered_counts_the_incomplete_event(impl: ModuleType) -> None:
    d = impl.OpenAIStreamDecoder()
    d.feed(b'data: {"choices":[]}\n\ndata: {"cho')
    assert d.buffered == len(b'data: {"cho')
    d.feed(b'ices":[]}\r')
    assert d.buffered == len(b'data: {"choices":[]}\r')
    d.feed(b"\n")
    assert d.buffered == len(b'data: {"choices":[]}\r\n')
    d.feed(b"\r\n")
    assert d.buffered == 0


# ---------------------------------------------------------------- framing inside the stream


def test_comments_ids_retries_and_unknown_fields_are_ignored(impl: ModuleType) -> None:
    data = (
        b": keep-alive\n\n"
        b"id: 1\nretry: 3000\nevent: completion\nfoo: bar\n"
        b'data: {"choices":[{"index":0,"delta":{"content":"a"}}]}\n'
        b": a comment inside an event\n\n"
        b"id: 2\n\n"
        b'data: {"choices":[{"index":0,"delta":{"content":"b"}}]}\n\n'
        b"data: [DONE]\n\n"
    )
    assert impl.OpenAIStreamDecoder().feed(data) == ("ab", None, None, None, True, None)


def test_multi_line_data_is_joined_with_newlines(impl: ModuleType) -> None:
    data = b'data: {"choices":\ndata: [{"index":0,\ndata:"delta":{"content":"joined"}}]\ndata: }\n\n'
    assert impl.OpenAIStreamDecoder().feed(data)[0] == "joined"


def test_blank_payloads_are_skipped(impl: ModuleType) -> None:
    data = b"data:\n\ndata: \n\ndata:  \t\n\n" + sse('{"choices":[{"index":0,"text":"t"}]}')
    assert impl.OpenAIStreamDecoder().feed(data) == ("t", None, None, None, False, None)


# ---------------------------------------------------------------- strings


ESCAPED = r'"\" \\ \/ \b \f \n \r \t \u00e9 \u20AC \ud83d\ude00 \uD834\uDD1E \u0000 \u001f"'
UNESCAPED = '" \\ / \b \f \n \r \t é € 😀 𝄞 \x00 \x1f'


def test_every_json_escape(impl: ModuleType) -> None:
    data = sse(f'{{"choices":[{{"index":0,"delta":{{"content":{ESCAPED}}}}}],"model":{ESCAPED}}}')
    text, _, _, model, _, _ = impl.OpenAIStreamDecoder().feed(data)
    assert text == UNESCAPED
    assert model == UNESCAPED


@pytest.mark.parametrize("ensure_ascii", [True, False], ids=["escaped", "raw-utf8"])
def test_multibyte_text_split_at_every_offset(impl: ModuleType, ensure_ascii: bool) -> None:
    words = ["Grüße", " 世界", " 😀", " Ünïcødé", " \u2028", " 𝄞"]
    payloads = [
        json.dumps({"choices": [{"index": 0, "delta": {"content": w}}]}, ensure_ascii=ensure_ascii)
        for w in words
    ]
    data = sse(*payloads, "[DONE]")
    expected = ("".join(words), None, None, None, True, None)
    assert impl.OpenAIStreamDecoder().feed(data) == expected
    for parts in two_part_splits(data):
        assert decode(impl, parts) == (expected, 0)
    assert decode(impl, bytewise(data)) == (expected, 0)


def test_keys_with_escapes_match(impl: ModuleType) -> None:
    data = sse(r'{"ch\u006fices":[{"ind\u0065x":0,"d\u0065lta":{"c\u006fntent":"k"}}],"\u006dodel":"m"}')
    assert impl.OpenAIStreamDecoder().feed(data) == ("k", None, None, "m", False, None)


# ---------------------------------------------------------------- what is and isn't extracted


def test_unknown_and_nested_fields_are_skipped(impl: ModuleType) -> None:
    body = {
        "id": "chatcmpl-1",
        "nested": {"model": "not-this", "choices": [{"index": 0, "delta": {"content": "nor this"}}]},
        "choices": [
            {
                "logprobs": {
                    "content": [
                        {
                            "token": "x",
                            "logprob": -0.0123,
                            "bytes": [120, 3.5e-7, -1e300],
                            "top_logprobs": [{"token": "y", "logprob": -2.5, "text": "no", "index": 0}],
                        }
                    ]
                },
                "content_filter_results": {"hate": {"filtered": False, "severity": "safe"}},
                "delta": {
                    "role": "assistant",
                    "tool_calls": [{"index": 0, "function": {"name": "f", "arguments": '{"content":"no"}'}}],
                    "reasoning_content": None,
                    "usage": {"prompt_tokens": 99},
                    "error": {"message": "not an error event"},
                    "content": "yes",
                },
                "finish_reason": None,
                "token_ids": [1, 2, 3],
                "index": 0,
            },
            {"index": 1, "delta": {"content": "other choice"}, "finish_reason": "length"},
            "not an object",
            None,
            {"index": 0.0, "text": "!", "finish_reason": "stop"},
            {"text": " (no index)"},
            {"index": "0", "text": "string index"},
            {"index": True, "text": "bool index"},
            {"index": -0, "delta": {"content": 5}, "finish_reason": 7},
        ],
        "usage": None,
        "model": "the-model",
        "empty": {},
        "empty_list": [],
        "literals": [True, False, None, 0, -0.0, 1e-400, 123456789012345678901234567890],
    }
    data = sse(json.dumps(body))
    assert impl.OpenAIStreamDecoder().feed(data) == (
        "yes! (no index)",
        "stop",
        None,
        "the-model",
        False,
        None,
    )


def test_index_after_delta(impl: ModuleType) -> None:
    data = sse(
        '{"choices":[{"delta":{"content":"a"},"finish_reason":"x","index":1},'
        '{"delta":{"content":"b"},"finish_reason":"stop","index":0}]}'
    )
    assert impl.OpenAIStreamDecoder().feed(data) == ("b", "stop", None, None, False, None)


def test_finish_reason_is_the_last_in_the_feed(impl: ModuleType) -> None:
    data = sse(
        '{"choices":[{"index":0,"finish_reason":"length"}]}',
        '{"choices":[{"index":0,"finish_reason":null}]}',
        '{"choices":[{"index":0,"finish_reason":"stop"}]}',
        '{"choices":[{"index":0,"finish_reason":null}]}',
    )
    assert impl.OpenAIStreamDecoder().feed(data)[1] == "stop"


def test_usage_is_the_last_in_the_feed_and_tolerant(impl: ModuleType) -> None:
    def usage_of(*payloads: str) -> object:
        return impl.OpenAIStreamDecoder().feed(sse(*payloads))[2]

    assert usage_of('{"usage":{"prompt_tokens":5,"completion_tokens":1}}', '{"usage":null}') == (5, 1, 0)
    assert usage_of(
        '{"usage":{"prompt_tokens":5,"completion_tokens":1}}',
        '{"usage":{"prompt_tokens":5,"completion_tokens":2,"prompt_tokens_details":{"cached_tokens":3}}}',
    ) == (5, 2, 3)
    assert usage_of('{"usage":{}}') == (0, 0, 0)
    assert usage_of('{"usage":"n/a"}') is None
    assert usage_of('{"usage":[]}') is None
    assert usage_of(
        '{"usage":{"prompt_tokens":9.0,"completion_tokens":-1,"prompt_tokens_details":{"cached_tokens":"3"}}}'
    ) == (0, 0, 0)
    big = '{"usage":{"prompt_tokens":9223372036854775807,"completion_tokens":9223372036854775808}}'
    assert usage_of(big) == (9223372036854775807, 0, 0)
    assert usage_of(
        '{"usage":{"prompt_tokens":1e2,"completion_tokens":-0,"prompt_tokens_details":null}}'
    ) == (0, 0, 0)


def test_duplicate_keys_last_one_wins(impl: ModuleType) -> None:
    data = sse(
        '{"model":"first","model":"second",'
        '"choices":[{"index":0,"delta":{"content":"dropped"},"finish_reason":"length"}],'
        '"choices":[{"index":1,"index":0,"delta":{"content":"no"},"delta":{"content":"kept"},'
        '"text":"a","text":"b","finish_reason":"stop","finish_reason":null}],'
        '"usage":{"prompt_tokens":1,"prompt_tokens":2},"usage":{"completion_tokens":3,"completion_tokens":4},'
        '"error":{"x":1},"error":null}'
    )
    assert impl.OpenAIStreamDecoder().feed(data) == ("keptb", None, (0, 4, 0), "second", False, None)


def test_model_is_reported_once(impl: ModuleType) -> None:
    d = impl.OpenAIStreamDecoder()
    assert d.feed(sse('{"model":""}', '{"model":null}', '{"model":7}')) == ("", None, None, None, False, None)
    assert d.feed(sse('{"model":"a"}', '{"model":"b"}'))[3] == "a"
    assert d.feed(sse('{"model":"c"}'))[3] is None


def test_whitespace_wherever_json_allows_it(impl: ModuleType) -> None:
    body = ' \t{ "choices" :\t[ { "index" : 0 , "delta" : { "content" : "w" } } ] ,\t"model" : "m" } \t'
    assert impl.OpenAIStreamDecoder().feed(sse(body)) == ("w", None, None, "m", False, None)
    # A \r\n in a data line ends the line: it can't be JSON whitespace.
    multi = b'data: {\ndata: "choices"\ndata:\t:\r\n\r\ndata: x\n\n'
    with pytest.raises(ValueError):
        impl.OpenAIStreamDecoder().feed(multi)


def test_valid_edge_documents(impl: ModuleType) -> None:
    deep = '{"x":' + "[" * 1023 + "]" * 1023 + ',"choices":[{"index":0,"text":"deep"}]}'
    numbers = '{"n":[0,-0,1.5e308,-1e-400,1E+2,0.0e-0,18446744073709551616,' + "9" * 308 + '],"choices":[]}'
    data = sse(deep, numbers)
    assert impl.OpenAIStreamDecoder().feed(data) == ("deep", None, None, None, False, None)


# ---------------------------------------------------------------- malformed input


MALFORMED = [
    b"{",
    b'{"choices":[}',
    b'{"choices":[],}',
    b"{'choices':[]}",
    b'{"a":NaN}',
    b'{"a":Infinity}',
    b'{"a":1e400}',
    b'{"a":-' + b"9" * 400 + b"}",
    b'{"a":01}',
    b'{"a":1.}',
    b'{"a":.5}',
    b'{"a":+1}',
    b'{"a":1e}',
    b'{"a":tru}',
    b'{"a":nulls}',
    b'{"a":"\\x"}',
    b'{"a":"\\u12G4"}',
    b'{"a":"\\ud800"}',
    b'{"a":"\\udc00"}',
    b'{"a":"\\ud800\\u0041"}',
    b'{"a":"\x01"}',
    b'{"a":"\xff"}',
    b'{"a":"\xc0\x80"}',
    b'{"a":"\xed\xa0\x80"}',
    b'{"a":"\xf4\x90\x80\x80"}',
    b'{"a":"\xe2\x82"}',
    b'{"a":"unterminated}',
    b'{"a":1} {"b":2}',
    b'{"a":1}x',
    b"\xef\xbb\xbf{}",
    b"[]",
    b'"a string"',
    b"42",
    b"null",
    b'{"a":' * 1025 + b"1" + b"}" * 1025,
    b'{"choices":[' + b"[" * 1023 + b"]" * 1023 + b"]}",
]


@pytest.mark.parametrize("payload", MALFORMED, ids=lambda p: repr(p[:40]))
def test_malformed_json_raises_value_error(impl: ModuleType, payload: bytes) -> None:
    d = impl.OpenAIStreamDecoder()
    with pytest.raises(ValueError):
        d.feed(sse('{"choices":[{"index":0,"text":"before"}]}', payload))
    with pytest.raises(ValueError):  # and the decoder stays failed
        d.feed(sse("[DONE]"))


def test_done_is_trimmed_of_json_whitespace(impl: ModuleType) -> None:
    assert impl.OpenAIStreamDecoder().feed(b"data:  [DONE] \t\n\n")[4] is True


def test_error_message_is_short(impl: ModuleType) -> None:
    payload = b'{"choices":[{"delta":{"content":"' + b"x" * 5000 + b'"}}], oops}'
    with pytest.raises(ValueError) as info:
        impl.OpenAIStreamDecoder().feed(sse(payload))
    message = str(info.value)
    assert "x" * 200 not in message
    assert len(message) < 400


@pytest.mark.parametrize(
    ("raw", "decoded"),
    [
        (b"\\n", "\n"),
        (b"\\u00e9", "é"),
        ("é".encode(), "é"),
        ("😀".encode(), "😀"),
        (b"\x7f", "\x7f"),
        (b'\\"', '"'),
    ],
    ids=["escape", "u-escape", "2-byte", "4-byte", "del", "quote"],
)
def test_special_bytes_at_every_position_of_a_string(impl: ModuleType, raw: bytes, decoded: str) -> None:
    # The native scanner reads strings 8 bytes at a time: try every alignment.
    for before in range(18):
        for after in (0, 1, 7, 8, 9):
            content = b"a" * before + raw + b"b" * after
            data = b'data: {"choices":[{"index":0,"delta":{"content":"' + content + b'"}}]}\n\n'
            assert impl.OpenAIStreamDecoder().feed(data)[0] == "a" * before + decoded + "b" * after


@pytest.mark.parametrize("bad", [b"\x01", b"\x1f", b"\xff", b"\xc3", b"\xe2\x82", b"\xed\xb0\x80"], ids=repr)
def test_bad_bytes_at_every_position_of_a_string(impl: ModuleType, bad: bytes) -> None:
    for before in range(18):
        for after in (0, 1, 8):
            content = b"a" * before + bad + b"b" * after
            with pytest.raises(ValueError):
                impl.OpenAIStreamDecoder().feed(
                    b'data: {"choices":[{"delta":{"content":"' + content + b'"}}]}\n\n'
                )
