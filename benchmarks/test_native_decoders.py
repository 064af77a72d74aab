"""Stream decoders, compiled against the pure-Python twin, in the same run.

A realistic vLLM chat stream (role chunk, 64 token chunks, a finish chunk, a
usage chunk, [DONE], framed byte for byte as vLLM frames it) decoded as it
arrives from the network: (a) one read per event, (b) 8 events per read; and
an Anthropic stream of 64 deltas through the generic SseDecoder. Each group
holds one benchmark per implementation; benchmarks/conftest.py prints the
python/native ratio of each group after the table.

    .venv/bin/pytest benchmarks/test_native_decoders.py
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Callable
from types import ModuleType

import pytest
from pytest_benchmark.fixture import BenchmarkFixture

TOKENS = 64
WORDS = [
    "The",
    " quick",
    " brown",
    " fox",
    " jumps",
    " over",
    " the",
    " lazy",
    " dog",
    ",",
    " and",
    " é",
    "🙂",
]


def _vllm_chunk(delta: dict[str, object], finish: str | None = None) -> bytes:
    choice: dict[str, object] = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
    if finish is not None:
        choice["stop_reason"] = None
    choice["token_ids"] = None
    body = {
        "id": "chatcmpl-8b1c2f9e6a7d4e0b9c3a5f1e2d4c6b8a",
        "object": "chat.completion.chunk",
        "created": 1767225600,
        "model": "Qwen/Qwen3-0.6B",
        "choices": [choice],
    }
    return b"data: " + json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode() + b"\n\n"


def vllm_chat_events() -> list[bytes]:
    events = [_vllm_chunk({"role": "assistant", "content": "", "reasoning_content": None})]
    events += [
        _vllm_chunk({"content": WORDS[i % len(WORDS)], "reasoning_content": None}) for i in range(TOKENS)
    ]
    events.append(_vllm_chunk({"content": "", "reasoning_content": None}, finish="stop"))
    usage = {"prompt_tokens": 23, "total_tokens": 23 + TOKENS, "completion_tokens": TOKENS}
    events.append(
        b'data: {"id":"chatcmpl-8b1c2f9e6a7d4e0b9c3a5f1e2d4c6b8a","object":"chat.completion.chunk",'
        b'"created":1767225600,"model":"Qwen/Qwen3-0.6B","choices":[],"usage":'
        + json.dumps(usage, separators=(",", ":")).encode()
        + b"}\n\n"
    )
    events.append(b"data: [DONE]\n\n")
    return events


def anthropic_events() -> list[bytes]:
    events = [
        b"event: message_start\ndata: "
        b'{"type":"message_start","message":{"id":"msg_01XFD","type":"message","role":"assistant","content":[],'
        b'"model":"claude-sonnet-4-5","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":25,'
        b'"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"output_tokens":1}}}\n\n',
        b"event: content_block_start\ndata: "
        b'{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n',
    ]
    for i in range(TOKENS):
        delta = {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": WORDS[i % 13]},
        }
        events.append(
            b"event: content_block_delta\ndata: "
            + json.dumps(delta, separators=(",", ":")).encode()
            + b"\n\n"
        )
    events.append(b'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n')
    events.append(
        b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn",'
        b'"stop_sequence":null},"usage":{"output_tokens":64}}\n\n'
    )
    events.append(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
    return events


def reads_of(events: list[bytes], per_read: int) -> list[bytes]:
    return [b"".join(events[i : i + per_read]) for i in range(0, len(events), per_read)]


def load(name: str) -> ModuleType:
    try:
        return importlib.import_module(f"router.native.{name}")
    except ImportError as exc:
        pytest.skip(f"router.native._native is not built ({exc}); build it with `pip install -e .`")


IMPLS = pytest.mark.parametrize("impl_name", ["_py", "_native"], ids=["python", "native"])
EXPECTED_TEXT = "".join(WORDS[i % len(WORDS)] for i in range(TOKENS))


def decode_openai(impl: ModuleType, reads: list[bytes]) -> Callable[[], str]:
    decoder_cls = impl.OpenAIStreamDecoder

    def run() -> str:
        d = decoder_cls()
        text = []
        for r in reads:
            t, _finish, _usage, _model, _done, _error = d.feed(r)
            text.append(t)  # what an adapter does per read
        return "".join(text)

    return run


def _bench(
    benchmark: BenchmarkFixture, impl_name: str, group: str, reads: list[bytes], run: Callable[[], object]
) -> object:
    benchmark.group = group
    benchmark.extra_info["implementation"] = "native" if impl_name == "_native" else "python"
    benchmark.extra_info["reads_per_stream"] = len(reads)
    benchmark.extra_info["bytes_per_stream"] = sum(map(len, reads))
    return benchmark(run)


@IMPLS
@pytest.mark.parametrize("per_read", [1, 8], ids=["1-event-per-read", "8-events-per-read"])
def test_openai_decoder_vllm_chat(benchmark: BenchmarkFixture, impl_name: str, per_read: int) -> None:
    impl = load(impl_name)
    reads = reads_of(vllm_chat_events(), per_read)
    group = f"OpenAIStreamDecoder: vLLM chat, {TOKENS} tokens, {per_read} event(s)/read"
    assert _bench(benchmark, impl_name, group, reads, decode_openai(impl, reads)) == EXPECTED_TEXT


@IMPLS
def test_sse_decoder_anthropic(benchmark: BenchmarkFixture, impl_name: str) -> None:
    impl = load(impl_name)
    reads = reads_of(anthropic_events(), 1)
    decoder_cls = impl.SseDecoder

    def run() -> int:
        d = decoder_cls()
        return sum(len(d.feed(r)) for r in reads)

    group = f"SseDecoder: Anthropic, {TOKENS} deltas, 1 event/read (framing only)"
    assert _bench(benchmark, impl_name, group, reads, run) == len(reads)
