"""Metrics and logs: every request counted, no credential anywhere."""

from __future__ import annotations

import contextlib
import logging
import urllib.request

import grpc
import pytest

from router._proto.meshgate.v1 import gateway_pb2 as pb

from .conftest import ALICE_KEY, PROVIDER_KEY, ROUTES, Stack, auth, make_config, sim_providers, start_gateway
from .test_streaming import chat_request, collect


async def scrape(port: int) -> str:
    import asyncio

    return await asyncio.to_thread(
        lambda: urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
    )


def sample(metrics: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in metrics.splitlines():
        if line.startswith(name + "{"):
            metric, _, value = line.rpartition(" ")
            got = ",".join(sorted(metric[len(name) + 1 : -1].split(",")))
            if got == wanted:
                return float(value)
    return 0.0


async def test_requests_and_tokens_are_counted_per_route_and_outcome(stack: Stack, tmp_path: object) -> None:
    sims = {"vllm": stack.vllm, "vllm_b": stack.vllm_b, "openai": stack.openai, "azure": stack.azure,
            "anthropic": stack.anthropic, "cohere": stack.cohere}  # fmt: skip
    config = make_config(str(tmp_path), sim_providers(sims), ROUTES, metrics_listen="127.0.0.1:0")
    gateway = await start_gateway(config)
    try:
        async with grpc.aio.insecure_channel(gateway.address) as channel:
            from router._proto.meshgate.v1 import gateway_pb2_grpc

            stub = gateway_pb2_grpc.GatewayStub(channel)
            for _ in range(3):
                await collect(stub.Chat(chat_request("chat", "count me"), metadata=auth(ALICE_KEY)))
            with pytest.raises(grpc.aio.AioRpcError):
                await collect(stub.Chat(chat_request("dead", "count me"), metadata=auth(ALICE_KEY)))
            with pytest.raises(grpc.aio.AioRpcError):
                await collect(stub.Chat(chat_request("chat", "x"), metadata=auth("mg-wrong")))
        metrics = await scrape(gateway.metrics_port)
    finally:
        await gateway.stop(grace_s=1)
    assert sample(metrics, "meshgate_requests_total", route="chat", kind="chat", outcome="OK") == 3
    assert sample(metrics, "meshgate_requests_total", route="dead", kind="chat", outcome="UNAVAILABLE") == 1
    assert sample(metrics, "meshgate_rejected_total", stage="authenticate", outcome="UNAUTHENTICATED") == 1
    assert sample(metrics, "meshgate_tokens_total", route="chat", direction="completion") == 36
    assert sample(metrics, "meshgate_requests_in_flight", route="chat") == 0
    assert PROVIDER_KEY not in metrics
    assert ALICE_KEY not in metrics


async def test_no_log_record_holds_a_credential(stack: Stack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    for route in ("bad-openai-key", "gpt", "claude", "command", "azure"):
        with contextlib.suppress(grpc.aio.AioRpcError):
            await collect(stack.gw.Chat(chat_request(route, "hello"), metadata=auth(ALICE_KEY)))
    assert caplog.records, "the failing route should have logged its upstream failure"
    assert PROVIDER_KEY not in caplog.text
    assert ALICE_KEY not in caplog.text
    assert any("openai" in r.getMessage() for r in caplog.records)


async def test_a_chunk_never_carries_finish_fields_before_the_end(stack: Stack) -> None:
    _, chunks = await collect(stack.gw.Chat(chat_request("chat", "fields"), metadata=auth(ALICE_KEY)))
    for chunk in chunks[:-1]:
        assert not chunk.HasField("usage")
        assert chunk.model == "" and chunk.backend == "" and chunk.request_id == ""
    assert chunks[-1].HasField("usage")
    assert isinstance(chunks[-1], pb.ChatChunk)
