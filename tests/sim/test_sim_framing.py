"""Byte-level framing against the wire reference (§1.3, §1.4, §1.1, §4.1, §4.3)."""

from __future__ import annotations

import json
import re
from typing import Any

import aiohttp
import pytest

from backends.sim import LOREM, Simulator
from tests.sim.simtools import StartSim, parse

EIGHT_WORDS = [{"role": "user", "content": "a b c d e f g h"}]  # 8 words + 1 message = 9 prompt tokens


async def post(
    http: aiohttp.ClientSession, url: str, body: dict[str, Any], headers: dict[str, str] | None = None
) -> tuple[int, bytes, aiohttp.typedefs.LooseHeaders]:
    async with http.post(url, json=body, headers=headers) as response:
        return response.status, await response.read(), response.headers


@pytest.fixture
async def vllm(start_sim: StartSim) -> Simulator:
    return await start_sim(protocol="vllm", models=["sim-llama"], tokens=2)


async def test_vllm_chat_stream_matches_the_reference_byte_for_byte(
    vllm: Simulator, http: aiohttp.ClientSession
) -> None:
    status, raw, headers = await post(
        http,
        vllm.url + "/chat/completions",
        {
            "model": "sim-llama",
            "messages": EIGHT_WORDS,
            "stream": True,
            "stream_options": {},
            "request_id": "8b1",
        },
    )
    assert status == 200
    assert headers["Content-Type"].startswith("text/event-stream")
    created = re.search(rb'"created":(\d+)', raw)
    assert created is not None
    head = (
        f'"id":"chatcmpl-8b1","object":"chat.completion.chunk","created":{created.group(1).decode()},'
        '"model":"sim-llama"'
    )
    expected = (
        f'data: {{{head},"choices":[{{"index":0,"delta":{{"role":"assistant","content":"",'
        '"reasoning_content":null},"logprobs":null,"finish_reason":null}],"prompt_token_ids":null}\n\n'
        f'data: {{{head},"choices":[{{"index":0,"delta":{{"content":"Lorem","reasoning_content":null}},'
        '"logprobs":null,"finish_reason":null,"token_ids":null}]}\n\n'
        f'data: {{{head},"choices":[{{"index":0,"delta":{{"content":" ipsum","reasoning_content":null}},'
        '"logprobs":null,"finish_reason":"stop","stop_reason":null,"token_ids":null}]}\n\n'
        f'data: {{{head},"choices":[],'
        '"usage":{"prompt_tokens":9,"total_tokens":11,"completion_tokens":2}}\n\n'
        "data: [DONE]\n\n"
    )
    assert raw.decode() == expected


@pytest.mark.parametrize(
    ("options", "usage_chunk", "continuous"),
    [
        (None, False, False),  # no stream_options: no usage at all
        ({}, True, False),  # vLLM quirk: include_usage defaults to true
        ({"include_usage": False}, False, False),
        ({"include_usage": True}, True, False),
        ({"continuous_usage_stats": True}, True, True),
    ],
)
async def test_vllm_stream_options_rules(
    vllm: Simulator,
    http: aiohttp.ClientSession,
    options: dict[str, Any] | None,
    usage_chunk: bool,
    continuous: bool,
) -> None:
    body: dict[str, Any] = {"model": "sim-llama", "messages": EIGHT_WORDS, "stream": True}
    if options is not None:
        body["stream_options"] = options
    _, raw, _ = await post(http, vllm.url + "/chat/completions", body)
    events = parse(raw)
    assert events[-1].data == "[DONE]"
    chunks = [e.json() for e in events[:-1]]
    assert (chunks[-1]["choices"] == []) is usage_chunk
    if usage_chunk:
        assert chunks[-1]["usage"] == {"prompt_tokens": 9, "total_tokens": 11, "completion_tokens": 2}
    generation = chunks[:-1] if usage_chunk else chunks
    if continuous:
        assert [c["usage"]["completion_tokens"] for c in generation] == [0, 1, 2]
    else:
        assert all("usage" not in c for c in generation)


async def test_vllm_completions_stream(vllm: Simulator, http: aiohttp.ClientSession) -> None:
    _, raw, _ = await post(
        http,
        vllm.url + "/completions",
        {"model": "sim-llama", "prompt": "x y", "stream": True, "max_tokens": 1},
    )
    events = parse(raw)
    assert [e.data for e in events][-1] == "[DONE]"
    (only,) = [e.json() for e in events[:-1]]
    assert list(only) == ["id", "object", "created", "model", "choices"]
    assert only["id"].startswith("cmpl-") and only["object"] == "text_completion"
    assert only["choices"] == [
        {"index": 0, "text": "Lorem", "logprobs": None, "finish_reason": "length", "stop_reason": None}
    ]


async def test_vllm_stop_sequence_sets_stop_reason(start_sim: StartSim, http: aiohttp.ClientSession) -> None:
    sim = await start_sim(protocol="vllm", tokens=10)
    _, raw, _ = await post(
        http, sim.url + "/chat/completions", {"messages": EIGHT_WORDS, "stream": True, "stop": ["sit amet"]}
    )
    chunks = [e.json() for e in parse(raw)[:-1]]
    text = "".join(c["choices"][0]["delta"]["content"] for c in chunks)
    # The token that would complete the stop sequence (" amet") is not sent; the ones before it are.
    assert text == " ".join(LOREM[:4])
    last = chunks[-1]["choices"][0]
    assert (last["finish_reason"], last["stop_reason"]) == ("stop", "sit amet")


async def test_vllm_in_band_error_uses_json_dumps_spacing_then_done(
    vllm: Simulator, http: aiohttp.ClientSession
) -> None:
    status, raw, _ = await post(
        http, vllm.url + "/chat/completions", {"model": "fail-1", "messages": EIGHT_WORDS, "stream": True}
    )
    assert status == 200
    error = json.dumps(
        {
            "error": {
                "message": "The engine failed this request (simulated fail fault).",
                "type": "InternalServerError",
                "param": None,
                "code": 500,
            }
        }
    )
    assert raw.endswith(f"data: {error}\n\ndata: [DONE]\n\n".encode())
    assert b'{"error": {"message": ' in raw  # the spacing, spelled out


async def test_vllm_errors_are_error_responses(vllm: Simulator, http: aiohttp.ClientSession) -> None:
    status, raw, _ = await post(
        http, vllm.url + "/chat/completions", {"model": "gpt-9", "messages": EIGHT_WORDS}
    )
    assert status == 404
    assert (
        raw == b'{"error":{"message":"The model `gpt-9` does not exist.","type":"NotFoundError",'
        b'"param":null,"code":404}}'
    )
    status, raw, _ = await post(
        http,
        vllm.url + "/chat/completions",
        {"messages": EIGHT_WORDS, "stream_options": {"include_usage": True}},
    )
    assert status == 400
    assert json.loads(raw)["error"]["type"] == "BadRequestError"
    assert json.loads(raw)["error"]["code"] == 400
    vllm.set(max_model_len=10)
    status, raw, _ = await post(
        http, vllm.url + "/chat/completions", {"messages": EIGHT_WORDS, "max_tokens": 5}
    )
    assert status == 400 and "maximum context length is 10 tokens" in json.loads(raw)["error"]["message"]


async def test_vllm_auth_guards_only_the_api_prefixes(
    start_sim: StartSim, http: aiohttp.ClientSession
) -> None:
    sim = await start_sim(protocol="vllm", api_key="k1")
    body = {"messages": EIGHT_WORDS}
    for url in (sim.url + "/chat/completions", sim.url + "/embeddings"):
        status, raw, _ = await post(http, url, body, {"Authorization": "Bearer wrong"})
        assert (status, raw) == (401, b'{"error":"Unauthorized"}')
    async with http.get(sim.url + "/models") as response:
        assert (response.status, await response.read()) == (401, b'{"error":"Unauthorized"}')
    status, _, _ = await post(http, sim.url + "/chat/completions", body, {"Authorization": "bearer k1"})
    assert status == 200
    for path in ("/health", "/metrics", "/version", "/ping", "/load"):
        async with http.get(sim.origin + path) as response:
            assert response.status == 200, path
    status, _, _ = await post(http, sim.origin + "/tokenize", {"prompt": "hi"})
    assert status == 200


async def test_vllm_health_models_and_version(start_sim: StartSim, http: aiohttp.ClientSession) -> None:
    sim = await start_sim(protocol="vllm", models=["m-a", "m-b"], max_model_len=4096)
    async with http.get(sim.origin + "/health") as response:
        assert (response.status, await response.read()) == (200, b"")
    sim.set(unhealthy=True)
    async with http.get(sim.origin + "/health") as response:
        assert (response.status, await response.read()) == (503, b"")
    async with http.get(sim.url + "/models") as response:
        cards = (await response.json())["data"]
    assert [c["id"] for c in cards] == ["m-a", "m-b"]
    assert all(c["max_model_len"] == 4096 and c["owned_by"] == "vllm" and c["root"] == "m-a" for c in cards)
    async with http.get(sim.origin + "/version") as response:
        assert "version" in await response.json()


async def test_vllm_metrics(start_sim: StartSim, http: aiohttp.ClientSession) -> None:
    sim = await start_sim(protocol="vllm", models=["sim-llama"], tokens=3)
    await post(http, sim.url + "/chat/completions", {"messages": EIGHT_WORDS, "stream": True})
    await post(http, sim.url + "/chat/completions", {"messages": EIGHT_WORDS, "max_tokens": 1})
    sim.set(waiting_requests=4, kv_cache_usage=0.25)
    for path in ("/metrics", "/metrics/"):
        async with http.get(sim.origin + path) as response:
            assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
            text = await response.text()
        label = 'model_name="sim-llama"'
        samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
        assert samples[f"vllm:num_requests_running{{{label}}}"] == "0.0"
        assert samples[f"vllm:num_requests_waiting{{{label}}}"] == "4.0"
        assert samples[f"vllm:kv_cache_usage_perc{{{label}}}"] == "0.25"
        assert samples[f"vllm:prompt_tokens_total{{{label}}}"] == "18.0"
        assert samples[f"vllm:generation_tokens_total{{{label}}}"] == "4.0"
        assert samples[f'vllm:request_success_total{{finished_reason="stop",{label}}}'] == "1.0"
        assert samples[f'vllm:request_success_total{{finished_reason="length",{label}}}'] == "1.0"
        assert samples[f'vllm:request_success_total{{finished_reason="abort",{label}}}'] == "0.0"
        assert samples[f"vllm:time_to_first_token_seconds_count{{{label}}}"] == "2.0"
        assert f'vllm:time_to_first_token_seconds_bucket{{{label},le="+Inf"}}' in samples
        assert "# TYPE vllm:time_to_first_token_seconds histogram" in text


async def test_vllm_tokenize_matches_usage(vllm: Simulator, http: aiohttp.ClientSession) -> None:
    _, raw, _ = await post(http, vllm.origin + "/tokenize", {"messages": EIGHT_WORDS})
    chat = json.loads(raw)
    assert chat["count"] == 9 == len(chat["tokens"])
    assert chat["max_model_len"] == 8192
    _, raw, _ = await post(
        http,
        vllm.origin + "/tokenize",
        {"model": "sim-llama", "prompt": "hello big world", "return_token_strs": True},
    )
    prompt = json.loads(raw)
    assert prompt["count"] == 4 and prompt["token_strs"] == ["<s>", "hello", "big", "world"]
    _, raw, _ = await post(http, vllm.url + "/completions", {"prompt": "hello big world", "max_tokens": 1})
    assert json.loads(raw)["usage"]["prompt_tokens"] == prompt["count"]
    _, raw, _ = await post(http, vllm.origin + "/detokenize", {"tokens": prompt["tokens"]})
    assert json.loads(raw) == {"prompt": "hello big world"}
    status, _, _ = await post(http, vllm.origin + "/tokenize", {"model": "nope", "prompt": "x"})
    assert status == 404


async def test_openai_framing(start_sim: StartSim, http: aiohttp.ClientSession) -> None:
    sim = await start_sim(protocol="openai", models=["gpt-sim"], tokens=2)
    body = {"model": "gpt-sim", "messages": EIGHT_WORDS, "stream": True}
    _, plain, _ = await post(http, sim.url + "/chat/completions", body)
    _, with_usage, _ = await post(
        http, sim.url + "/chat/completions", {**body, "stream_options": {"include_usage": True}}
    )
    for raw in (plain, with_usage):
        assert raw.endswith(b"data: [DONE]\n\n")
        assert all(line.startswith(b"data: ") for line in raw.split(b"\n\n") if line)
    chunks = [e.json() for e in parse(plain)[:-1]]
    assert [list(c) for c in chunks] == [
        ["id", "object", "created", "model", "system_fingerprint", "choices", "usage"]
    ] * 4
    assert all(c["usage"] is None for c in chunks)
    assert len({(c["id"], c["created"]) for c in chunks}) == 1
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": "", "refusal": None}
    assert chunks[-1]["choices"][0] == {"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}
    usage_chunks = [e.json() for e in parse(with_usage)[:-1]]
    assert len(usage_chunks) == 5
    assert usage_chunks[-1]["choices"] == []
    assert usage_chunks[-1]["usage"]["total_tokens"] == 11
    assert all(c["usage"] is None for c in usage_chunks[:-1])


async def test_openai_error_shape(start_sim: StartSim, http: aiohttp.ClientSession) -> None:
    sim = await start_sim(protocol="openai", api_key="sk-right")
    status, raw, _ = await post(
        http,
        sim.url + "/chat/completions",
        {"model": "sim-model", "messages": []},
        {"Authorization": "Bearer sk-wrong"},
    )
    assert status == 401
    error = json.loads(raw)["error"]
    assert list(error) == ["message", "type", "param", "code"]
    assert error["code"] == "invalid_api_key" and "sk-right" not in raw.decode()
    status, raw, headers = await post(
        http,
        sim.url + "/chat/completions",
        {"model": "error-429", "messages": EIGHT_WORDS},
        {"Authorization": "Bearer sk-right"},
    )
    assert status == 429 and headers["retry-after"] == "1"
    assert json.loads(raw)["error"]["type"] == "requests"


async def test_anthropic_event_sequence(start_sim: StartSim, http: aiohttp.ClientSession) -> None:
    sim = await start_sim(protocol="anthropic", tokens=2)
    _, raw, _ = await post(
        http,
        sim.url + "/v1/messages",
        {"model": "sim-model", "max_tokens": 10, "messages": EIGHT_WORDS, "stream": True},
        {"anthropic-version": "2023-06-01"},
    )
    events = parse(raw)
    assert [e.event for e in events] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    assert all(e.json()["type"] == e.event for e in events)
    assert raw.startswith(b'event: message_start\ndata: {"type":"message_start","message":{"id":"msg_')
    assert b'event: ping\ndata: {"type":"ping"}\n\n' in raw
    assert events[0].json()["message"]["usage"]["input_tokens"] == 9
    assert events[6].json() == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 2},
    }
    assert raw.endswith(b'event: message_stop\ndata: {"type":"message_stop"}\n\n')
