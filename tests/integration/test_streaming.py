"""Chat, Complete, Embed and ListRoutes through the real gateway, per wire protocol."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from router._proto.meshgate.v1 import gateway_pb2 as pb

from .conftest import ALICE_KEY, BOB_KEY, Stack, auth


def digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


async def collect(call: object) -> tuple[str, list[pb.ChatChunk]]:
    chunks = [chunk async for chunk in call]  # type: ignore[attr-defined]
    return "".join(c.text for c in chunks), chunks


def chat_request(route: str, prompt: str, **fields: object) -> pb.ChatRequest:
    return pb.ChatRequest(route=route, messages=[pb.Message(role="user", content=prompt)], **fields)


async def test_chat_streams_the_answer_and_finishes_with_usage(stack: Stack) -> None:
    prompt = "How much are the adidas trainers?"
    text, chunks = await collect(stack.gw.Chat(chat_request("chat", prompt), metadata=auth(ALICE_KEY)))
    last = chunks[-1]
    assert text.startswith(digest(prompt))
    assert last.finish_reason == pb.FINISH_REASON_STOP
    assert last.usage.completion_tokens == 12
    assert last.usage.prompt_tokens > 0
    assert not last.usage.estimated
    assert last.model == "sim-llama"
    assert last.backend == "vllm-a"
    assert len(last.request_id) >= 16
    assert all(c.finish_reason == pb.FINISH_REASON_UNSPECIFIED for c in chunks[:-1])
    assert all(c.text for c in chunks[:-1])


async def test_the_callers_request_id_and_sampling_reach_the_upstream(stack: Stack) -> None:
    request = chat_request(
        "chat",
        "Say hello",
        request_id="req-42",
        max_tokens=5,
        temperature=0.2,
        top_p=0.9,
        seed=7,
        stop=["zz"],
    )
    request.messages.insert(0, pb.Message(role="system", content="Be brief."))
    _, chunks = await collect(stack.gw.Chat(request, metadata=auth(ALICE_KEY)))
    assert chunks[-1].request_id == "req-42"
    assert chunks[-1].finish_reason == pb.FINISH_REASON_LENGTH
    assert chunks[-1].usage.completion_tokens == 5
    sent = stack.vllm.stats.last_request["body"]
    assert sent["model"] == "sim-llama"
    assert sent["max_tokens"] == 5
    assert sent["seed"] == 7
    assert sent["stop"] == ["zz"]
    assert sent["messages"][0] == {"role": "system", "content": "Be brief."}
    assert sent["stream"] is True


async def test_concurrent_streams_each_get_their_own_answer(stack: Stack) -> None:
    prompts = [f"question number {i}" for i in range(24)]
    results = await asyncio.gather(
        *(collect(stack.gw.Chat(chat_request("chat", p), metadata=auth(ALICE_KEY))) for p in prompts)
    )
    for prompt, (text, chunks) in zip(prompts, results, strict=True):
        assert text.startswith(digest(prompt))
        assert chunks[-1].finish_reason == pb.FINISH_REASON_STOP


async def test_complete_on_a_completion_route_and_on_a_chat_route(stack: Stack) -> None:
    for route in ("complete", "chat"):
        call = stack.gw.Complete(
            pb.CompleteRequest(route=route, prompt="Once upon a time"), metadata=auth(ALICE_KEY)
        )
        text, chunks = await collect(call)
        assert text.startswith(digest("Once upon a time"))
        assert chunks[-1].finish_reason == pb.FINISH_REASON_STOP
        assert chunks[-1].usage.completion_tokens == 12


async def test_embed_returns_one_vector_per_input(stack: Stack) -> None:
    response = await stack.gw.Embed(
        pb.EmbedRequest(route="embed", inputs=["first text", "second text"]), metadata=auth(ALICE_KEY)
    )
    assert len(response.embeddings) == 2
    assert len(response.embeddings[0].values) == 384
    assert list(response.embeddings[0].values) != list(response.embeddings[1].values)
    assert response.usage.prompt_tokens > 0
    assert response.backend == "vllm-a"


@pytest.mark.parametrize(
    ("route", "backend", "model"),
    [
        ("gpt", "openai", "gpt-sim"),
        ("azure", "azure", "gpt-sim"),
        ("claude", "anthropic", "claude-sim"),
        ("command", "cohere", "command-sim"),
    ],
)
async def test_every_wire_protocol_streams_through_the_same_interface(
    stack: Stack, route: str, backend: str, model: str
) -> None:
    text, chunks = await collect(stack.gw.Chat(chat_request(route, "Hello there"), metadata=auth(ALICE_KEY)))
    last = chunks[-1]
    assert text.strip()
    assert last.finish_reason == pb.FINISH_REASON_STOP
    assert last.usage.completion_tokens == 8
    assert last.usage.prompt_tokens > 0
    assert not last.usage.estimated
    assert last.backend == backend
    assert last.model == model


async def test_list_routes_shows_only_the_routes_a_key_may_use(stack: Stack) -> None:
    alice = await stack.gw.ListRoutes(pb.ListRoutesRequest(), metadata=auth(ALICE_KEY))
    bob = await stack.gw.ListRoutes(pb.ListRoutesRequest(), metadata=auth(BOB_KEY))
    alice_names = [r.name for r in alice.routes]
    assert alice_names == sorted(alice_names)
    assert {"chat", "complete", "embed", "everyone"} <= set(alice_names)
    assert "ops-only" not in alice_names
    assert {r.name for r in bob.routes} == {"ops-only", "everyone"}
    embed = next(r for r in alice.routes if r.name == "embed")
    assert embed.type == pb.ROUTE_TYPE_EMBEDDING
    assert list(embed.models) == ["sim-llama"]
