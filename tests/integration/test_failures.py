"""Failover before the first token; broken streams, cancellation and deadlines after it."""

from __future__ import annotations

import grpc
import pytest

from router._proto.meshgate.v1 import gateway_pb2 as pb

from .conftest import ALICE_KEY, Stack, auth
from .test_streaming import chat_request, collect, digest


async def test_a_failing_first_target_fails_over_to_the_next(stack: Stack) -> None:
    tried_before = stack.vllm.stats.requests
    for i in range(5):
        prompt = f"failover {i}"
        text, chunks = await collect(
            stack.gw.Chat(chat_request("failover", prompt), metadata=auth(ALICE_KEY))
        )
        assert text.startswith(digest(prompt))
        assert chunks[-1].backend == "vllm-b"
        assert chunks[-1].finish_reason == pb.FINISH_REASON_STOP
    # The 503-answering target (weight 1000 : 1) was tried, and failed over from.
    assert stack.vllm.stats.requests > tried_before


async def test_a_stream_cut_mid_answer_ends_with_an_error_not_a_clean_end(stack: Stack) -> None:
    call = stack.gw.Chat(chat_request("cut", "tell me a story"), metadata=auth(ALICE_KEY))
    received: list[pb.ChatChunk] = []
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        async for chunk in call:
            received.append(chunk)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert "vllm-a" in (caught.value.details() or "")
    assert "".join(c.text for c in received)
    assert all(c.finish_reason == pb.FINISH_REASON_UNSPECIFIED for c in received)


async def test_cancelling_the_call_closes_the_upstream_connection(stack: Stack) -> None:
    aborted = stack.vllm.stats.streams_aborted
    call = stack.gw.Chat(chat_request("stall", "wait for it"), metadata=auth(ALICE_KEY))
    first = await call.read()
    assert first.text
    call.cancel()
    await stack.vllm.wait_for(lambda s: s.streams_aborted > aborted, timeout_s=10)


async def test_a_passed_deadline_ends_the_call_and_the_upstream_request(stack: Stack) -> None:
    aborted = stack.vllm.stats.streams_aborted
    call = stack.gw.Chat(chat_request("stall", "slow one"), metadata=auth(ALICE_KEY), timeout=1.0)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await collect(call)
    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await stack.vllm.wait_for(lambda s: s.streams_aborted > aborted, timeout_s=10)
