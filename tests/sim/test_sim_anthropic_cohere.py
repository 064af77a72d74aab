"""Anthropic with the official SDK; Cohere with raw aiohttp and an SSE parser."""

from __future__ import annotations

import aiohttp
import anthropic
import pytest

from backends.sim import LOREM, Simulator
from tests.sim.simtools import StartSim, parse

USER = [{"role": "user", "content": "Tell me a story"}]


def claude(sim: Simulator, api_key: str = "ak-test") -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=sim.url, api_key=api_key, max_retries=0)


async def test_anthropic_stream_text_usage_and_stop_reason(start_sim: StartSim) -> None:
    sim = await start_sim(protocol="anthropic", models=["claude-sim"], tokens=6, api_key="ak-test")
    async with (
        claude(sim) as c,
        c.messages.stream(
            model="claude-sim", max_tokens=100, messages=USER, system="You are terse."
        ) as stream,
    ):
        text = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_message()
    assert text == " ".join(LOREM[:6])
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 6
    assert final.usage.input_tokens == 4 + 3 + 2  # words of both texts + user message + system
    body = sim.stats.last_request
    assert body is not None and body["body"]["system"] == "You are terse."
    assert "x-api-key" not in body["headers"]
    assert body["headers"]["anthropic-version"]


async def test_anthropic_max_tokens_stop_sequence_and_non_stream(start_sim: StartSim) -> None:
    sim = await start_sim(protocol="anthropic", tokens=8)
    async with claude(sim) as c:
        async with c.messages.stream(model="sim-model", max_tokens=3, messages=USER) as stream:
            capped = await stream.get_final_message()
        stopped = await c.messages.create(
            model="sim-model", max_tokens=50, messages=USER, stop_sequences=[LOREM[3]]
        )
    assert capped.stop_reason == "max_tokens"
    assert capped.content[0].text == " ".join(LOREM[:3])
    assert stopped.stop_reason == "stop_sequence"
    assert stopped.stop_sequence == LOREM[3]
    assert stopped.content[0].text == " ".join(LOREM[:3])
    assert stopped.usage.output_tokens == 3


async def test_anthropic_errors(start_sim: StartSim) -> None:
    sim = await start_sim(protocol="anthropic", api_key="good")
    async with claude(sim, api_key="bad") as c:
        with pytest.raises(anthropic.AuthenticationError) as auth:
            await c.messages.create(model="sim-model", max_tokens=5, messages=USER)
    assert auth.value.body == {
        "type": "error",
        "error": {"type": "authentication_error", "message": "invalid x-api-key"},
    }
    async with claude(sim, api_key="good") as c:
        with pytest.raises(anthropic.RateLimitError):
            await c.messages.create(model="error-429", max_tokens=5, messages=USER)
        with pytest.raises(anthropic.InternalServerError) as overloaded:
            await c.messages.create(model="error-529", max_tokens=5, messages=USER)
        with pytest.raises(anthropic.NotFoundError):
            await c.messages.create(model="unknown", max_tokens=5, messages=USER)
        with pytest.raises(anthropic.APIStatusError):
            async with c.messages.stream(model="fail-1", max_tokens=5, messages=USER) as stream:
                async for _ in stream.text_stream:
                    pass
    assert overloaded.value.status_code == 529
    assert sim.stats.streams_failed == 1


async def test_anthropic_requires_version_header(start_sim: StartSim, http: aiohttp.ClientSession) -> None:
    sim = await start_sim(protocol="anthropic")
    body = {"model": "sim-model", "max_tokens": 5, "messages": USER}
    async with http.post(sim.origin + "/v1/messages", json=body) as response:
        assert response.status == 400
        error = await response.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"


async def cohere_chat(
    http: aiohttp.ClientSession, sim: Simulator, body: dict[str, object], key: str = "co-key"
) -> tuple[int, bytes]:
    async with http.post(sim.origin + "/v2/chat", json=body, headers={"Authorization": f"Bearer {key}"}) as r:
        return r.status, await r.read()


async def test_cohere_stream_events(start_sim: StartSim, http: aiohttp.ClientSession) -> None:
    sim = await start_sim(protocol="cohere", models=["command-sim"], tokens=4, api_key="co-key")
    status, raw = await cohere_chat(http, sim, {"model": "command-sim", "messages": USER, "stream": True})
    assert status == 200
    events = parse(raw)
    names = [e.event for e in events]
    assert names == ["message-start", "content-start", *["content-delta"] * 4, "content-end", "message-end"]
    assert all(e.json()["type"] == e.event for e in events)
    text = "".join(
        e.json()["delta"]["message"]["content"]["text"] for e in events if e.event == "content-delta"
    )
    assert text == " ".join(LOREM[:4])
    end = events[-1].json()["delta"]
    assert end["finish_reason"] == "COMPLETE"
    assert end["usage"]["tokens"] == {"input_tokens": 4 + 1, "output_tokens": 4}
    assert end["usage"]["billed_units"] == {"input_tokens": 5, "output_tokens": 4}
    assert raw.endswith(b"\n\n") and b"[DONE]" not in raw


async def test_cohere_max_tokens_non_stream_and_errors(
    start_sim: StartSim, http: aiohttp.ClientSession
) -> None:
    sim = await start_sim(protocol="cohere", tokens=4, api_key="co-key")
    status, raw = await cohere_chat(http, sim, {"model": "sim-model", "messages": USER, "max_tokens": 2})
    assert status == 200
    import json

    whole = json.loads(raw)
    assert whole["finish_reason"] == "MAX_TOKENS"
    assert whole["message"]["content"] == [{"type": "text", "text": " ".join(LOREM[:2])}]
    status, raw = await cohere_chat(http, sim, {"model": "sim-model", "messages": USER}, key="wrong")
    assert status == 401 and set(json.loads(raw)) == {"id", "message"}
    status, raw = await cohere_chat(http, sim, {"model": "error-429", "messages": USER})
    assert status == 429
    status, raw = await cohere_chat(http, sim, {"model": "fail-1", "messages": USER, "stream": True})
    end = parse(raw)[-1]
    assert end.event == "message-end" and end.json()["delta"]["finish_reason"] == "ERROR"
