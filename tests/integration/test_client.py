"""``router.client`` against the real gateway: streams, results, typed errors,
cancellation reaching the upstream, and the control plane.

The async clients run on the test's loop, beside the gateway. The sync ones
block, so they run in a worker thread (``asyncio.to_thread``) while the loop
keeps serving.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc
import pytest

from backends.sim import SimConfig, Simulator
from router.client import (
    AdminClient,
    BackendInfo,
    ChatChunk,
    GatewayClient,
    RouteDef,
    SyncAdminClient,
    SyncChatStream,
    SyncGatewayClient,
    TargetDef,
)
from router.domain import BackendLoad, Message
from router.errors import (
    AlreadyExists,
    DeadlineExceeded,
    InvalidRequest,
    MeshgateError,
    NotFound,
    PermissionDenied,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)

from .conftest import ADMIN_KEY, ALICE_KEY, BOB_KEY, PROVIDER_KEY, ROUTES, Stack
from .test_streaming import digest

WAIT_S = 10  # an upper bound on waiting for an event, never a pause


def gateway(stack: Stack, key: str = ALICE_KEY) -> GatewayClient:
    return GatewayClient(stack.gateway.address, key)


def admin(stack: Stack, key: str = ADMIN_KEY) -> AdminClient:
    return AdminClient(stack.gateway.address, key)


def alices_routes() -> set[str]:
    return {name for name, route in ROUTES.items() if {"eng", "*"} & set(route["allow"])}


@contextlib.asynccontextmanager
async def hosted(stack: Stack, **config: Any) -> AsyncIterator[Simulator]:
    """A vLLM simulator serving "hosted-model" (the model of route "registered");
    on the way out it is deregistered if a test left it registered, so a failed
    test cannot leave a dead host in the shared gateway's pool."""
    host = Simulator(SimConfig(protocol="vllm", models=("hosted-model",), **config))
    await host.start()
    try:
        yield host
    finally:
        async with admin(stack) as control:
            for backend in await control.list_backends():
                if backend.url == host.url:
                    await control.deregister_backend(backend.id)
        await host.stop()


async def consume(stream: AsyncIterator[ChatChunk]) -> list[ChatChunk]:
    return [chunk async for chunk in stream]


async def upstream_aborted(stack: Stack, before: int) -> None:
    """Wait until the vLLM simulator has seen one more client go away mid-answer."""
    await stack.vllm.wait_for(lambda s: s.streams_aborted > before, timeout_s=WAIT_S)


# --------------------------------------------------------------------------- data plane, async


async def test_chat_streams_plain_chunks_and_the_last_one_carries_the_outcome(stack: Stack) -> None:
    prompt = "Where is my parcel?"
    async with gateway(stack) as client:
        chunks = [c async for c in client.chat("chat", [("user", prompt)], request_id="client-chat-1")]
    assert "".join(c.text for c in chunks).startswith(digest(prompt))
    *body, last = chunks  # the gateway may join tokens that arrive together into one chunk
    assert all(c == ChatChunk(c.text) for c in body)
    assert last.finish_reason == "stop"
    assert last.usage is not None
    assert (last.usage.completion_tokens, last.usage.estimated) == (12, False)
    assert last.usage.prompt_tokens > 0
    assert (last.model, last.backend, last.request_id) == ("sim-llama", "vllm-a", "client-chat-1")


async def test_every_message_form_and_the_sampling_options_reach_the_upstream(stack: Stack) -> None:
    messages: list[Any] = [
        Message("system", "Be brief."),
        ("assistant", "Hello."),
        {"role": "user", "content": "Say hello", "name": "ignored"},
    ]
    async with gateway(stack) as client:
        chunks = [
            c
            async for c in client.chat(
                "chat", messages, max_tokens=5, temperature=0.2, top_p=0.9, seed=7, stop=["zz"]
            )
        ]
    assert chunks[-1].finish_reason == "length"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5
    assert "".join(c.text for c in chunks).startswith(digest("Say hello"))
    sent = stack.vllm.stats.last_request
    assert sent is not None
    body = sent["body"]
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Say hello"},
    ]
    assert (body["max_tokens"], body["seed"], body["stop"]) == (5, 7, ["zz"])
    assert body["temperature"] == pytest.approx(0.2)
    assert body["top_p"] == pytest.approx(0.9)


async def test_chat_text_collects_the_same_answer_the_stream_gives(stack: Stack) -> None:
    prompt = "Tell me about the weather"
    async with gateway(stack) as client:
        streamed = "".join([c.text async for c in client.chat("chat", [("user", prompt)])])
        answer = await client.chat_text("chat", [{"role": "user", "content": prompt}])
    assert answer.text == streamed
    assert answer.text.startswith(digest(prompt))
    assert answer.finish_reason == "stop"
    assert (answer.usage.completion_tokens, answer.model, answer.backend) == (12, "sim-llama", "vllm-a")
    assert len(answer.request_id) >= 16  # made by the gateway


async def test_complete_streams_a_completion(stack: Stack) -> None:
    prompt = "Once upon a time"
    async with gateway(stack) as client:
        chunks = [c async for c in client.complete("complete", prompt)]
    assert "".join(c.text for c in chunks).startswith(digest(prompt))
    assert chunks[-1].finish_reason == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 12
    sent = stack.vllm.stats.last_request
    assert sent is not None
    assert sent["path"] == "/v1/completions"
    assert sent["body"]["prompt"] == prompt


async def test_embed_returns_one_vector_per_input_in_order(stack: Stack) -> None:
    async with gateway(stack) as client:
        both = await client.embed("embed", ["first text", "second text"])
        single = await client.embed("embed", "second text")
    assert [len(v) for v in both.vectors] == [384, 384]
    assert both.vectors[0] != both.vectors[1]
    assert single.vectors == [both.vectors[1]]  # a string is one input; equal texts, equal vectors
    assert both.usage.prompt_tokens > 0
    assert (both.model, both.backend) == ("sim-llama", "vllm-a")
    assert both.request_id


async def test_list_routes_shows_the_routes_of_the_key(stack: Stack) -> None:
    async with gateway(stack) as alice, gateway(stack, BOB_KEY) as bob:
        alices = await alice.list_routes()
        bobs = await bob.list_routes()
    names = [r.name for r in alices]
    assert names == sorted(names)
    assert alices_routes() <= set(names)
    assert "ops-only" not in names
    by_name = {r.name: (r.type, r.models) for r in alices}
    assert by_name["chat"] == ("chat", ("sim-llama",))
    assert by_name["complete"] == ("completion", ("sim-llama",))
    assert by_name["embed"] == ("embedding", ("sim-llama",))
    assert by_name["registered"] == ("chat", ("hosted-model",))
    assert {"ops-only", "everyone"} <= {r.name for r in bobs}
    assert "chat" not in {r.name for r in bobs}


# --------------------------------------------------------------------------- typed errors

REFUSALS: list[tuple[str, str, dict[str, Any], type[MeshgateError], str]] = [
    ("no-such-route", ALICE_KEY, {}, NotFound, "no-such-route"),
    ("chat", "mg-not-a-real-key", {}, Unauthenticated, "key"),
    ("chat", BOB_KEY, {}, PermissionDenied, "chat"),
    ("chat", ALICE_KEY, {"max_tokens": -1}, InvalidRequest, "max_tokens"),
    ("dead", ALICE_KEY, {}, Unavailable, "nowhere"),
]


def check_refusal(error: MeshgateError, cls: type[MeshgateError], hint: str) -> None:
    assert type(error) is cls
    assert hint in str(error)
    cause = error.__cause__
    assert isinstance(cause, grpc.RpcError)
    assert cause.code().name == error.status == cls.status


@pytest.mark.parametrize(("route", "key", "options", "cls", "hint"), REFUSALS)
async def test_a_refused_stream_raises_the_class_of_its_status(
    stack: Stack, route: str, key: str, options: dict[str, Any], cls: type[MeshgateError], hint: str
) -> None:
    received: list[ChatChunk] = []
    async with gateway(stack, key) as client:
        with pytest.raises(MeshgateError) as caught:
            async for chunk in client.chat(route, [("user", "hi")], **options):
                received.append(chunk)
    assert received == []
    check_refusal(caught.value, cls, hint)


@pytest.mark.parametrize(("route", "key", "options", "cls", "hint"), REFUSALS)
async def test_the_sync_client_raises_the_same_classes(
    stack: Stack, route: str, key: str, options: dict[str, Any], cls: type[MeshgateError], hint: str
) -> None:
    def call() -> MeshgateError:
        with SyncGatewayClient(stack.gateway.address, key) as client:
            try:
                client.chat_text(route, [("user", "hi")], **options)
            except MeshgateError as exc:
                return exc
        raise AssertionError("the call succeeded")

    check_refusal(await asyncio.to_thread(call), cls, hint)


async def test_unary_calls_raise_typed_errors(stack: Stack) -> None:
    async with gateway(stack, "mg-not-a-real-key") as stranger, gateway(stack) as alice:
        with pytest.raises(Unauthenticated):
            await stranger.list_routes()
        with pytest.raises(Unauthenticated):
            await stranger.embed("embed", "x")
        with pytest.raises(InvalidRequest, match="Chat"):
            await alice.embed("chat", "x")  # a chat route cannot embed
        with pytest.raises(NotFound):
            await alice.embed("no-such-route", "x")


async def test_retry_after_comes_back_from_the_gateway(stack: Stack) -> None:
    # The OpenAI simulator answers model "error-429" with HTTP 429 and retry-after: 1.
    route = RouteDef("client-rate-limited", "chat", (TargetDef("error-429", "openai"),), ("eng",))
    async with admin(stack) as control, gateway(stack) as client:
        await control.upsert_route(route)
        try:
            with pytest.raises(ResourceExhausted) as caught:
                await client.chat_text(route.name, [("user", "hi")])
        finally:
            await control.delete_route(route.name)
    assert caught.value.retry_after_s == 1.0


async def test_an_error_mid_stream_comes_after_the_text_received(stack: Stack) -> None:
    prompt = "tell me a long story"
    received: list[ChatChunk] = []
    async with gateway(stack) as client:
        with pytest.raises(Unavailable, match="vllm-a"):
            async for chunk in client.chat("cut", [("user", prompt)]):
                received.append(chunk)
    assert "".join(c.text for c in received).startswith(digest(prompt))
    assert all(c == ChatChunk(c.text) for c in received)  # no finish reason, no usage: not an answer


async def test_the_sync_client_raises_mid_stream_after_the_text(stack: Stack) -> None:
    prompt = "tell me another story"

    def work() -> tuple[list[str], MeshgateError]:
        texts: list[str] = []
        with SyncGatewayClient(stack.gateway.address, ALICE_KEY) as client:
            try:
                for chunk in client.chat("cut", [("user", prompt)]):
                    texts.append(chunk.text)
            except MeshgateError as exc:
                return texts, exc
        raise AssertionError("the cut stream ended cleanly")

    texts, error = await asyncio.to_thread(work)
    assert "".join(texts).startswith(digest(prompt))
    assert isinstance(error, Unavailable)


async def test_timeout_s_ends_a_stalled_stream_and_stops_the_upstream(stack: Stack) -> None:
    before = stack.vllm.stats.streams_aborted
    async with gateway(stack) as client:
        stream = client.chat("stall", [("user", "hi")], timeout_s=0.5)
        with pytest.raises(DeadlineExceeded) as caught:
            # Without the deadline this would wait for ever; WAIT_S turns that into a failure.
            await asyncio.wait_for(consume(stream), WAIT_S)
    assert caught.value.status == "DEADLINE_EXCEEDED"
    await upstream_aborted(stack, before)


async def test_an_unreachable_gateway_is_unavailable() -> None:
    # Nothing listens on the discard port.
    async with GatewayClient("127.0.0.1:9", ALICE_KEY) as client:
        with pytest.raises(Unavailable):
            await client.list_routes(timeout_s=WAIT_S)


# --------------------------------------------------------------------------- cancellation


async def test_breaking_out_of_the_loop_cancels_the_upstream(stack: Stack) -> None:
    before = stack.vllm.stats.streams_aborted
    async with gateway(stack) as client:
        async for chunk in client.chat("stall", [("user", "wait for it")]):
            assert chunk == ChatChunk(chunk.text) and chunk.text
            break
        await upstream_aborted(stack, before)


async def test_aclose_cancels_the_upstream_and_ends_the_stream(stack: Stack) -> None:
    before = stack.vllm.stats.streams_aborted
    async with gateway(stack) as client:
        stream = client.chat("stall", [("user", "wait for it")])
        assert (await anext(stream)).text
        await stream.aclose()
        await stream.aclose()  # idempotent
        await upstream_aborted(stack, before)
        assert [c async for c in stream] == []


async def test_leaving_the_async_with_block_cancels_the_upstream(stack: Stack) -> None:
    before = stack.vllm.stats.streams_aborted
    async with gateway(stack) as client:
        async with client.chat("stall", [("user", "wait for it")]) as stream:
            assert (await anext(stream)).text
        await upstream_aborted(stack, before)


async def test_cancelling_the_consuming_task_cancels_the_upstream(stack: Stack) -> None:
    before = stack.vllm.stats.streams_aborted
    first = asyncio.Event()

    async def consume(client: GatewayClient) -> None:
        async for _ in client.chat("stall", [("user", "wait for it")]):
            first.set()

    async with gateway(stack) as client:
        task = asyncio.create_task(consume(client))
        await asyncio.wait_for(first.wait(), WAIT_S)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await upstream_aborted(stack, before)


async def test_closing_the_client_cancels_its_streams(stack: Stack) -> None:
    before = stack.vllm.stats.streams_aborted
    client = gateway(stack)
    stream = client.chat("stall", [("user", "wait for it")])
    assert (await anext(stream)).text
    await client.close()
    await upstream_aborted(stack, before)
    await client.close()  # idempotent


@pytest.mark.parametrize("leave", ["break", "close", "with"])
async def test_the_sync_client_cancels_the_upstream(stack: Stack, leave: str) -> None:
    before = stack.vllm.stats.streams_aborted
    # The client, and a closed stream, stay alive until the upstream has seen the
    # disconnect: closing the channel, or gRPC collecting the call, would cancel
    # it too, and prove nothing about `close()` or the `with` block.
    client = SyncGatewayClient(stack.gateway.address, ALICE_KEY)

    def work() -> tuple[str, SyncChatStream | None]:
        if leave == "break":
            for chunk in client.chat("stall", [("user", "wait for it")]):
                return chunk.text, None
        stream = client.chat("stall", [("user", "wait for it")])
        if leave == "close":
            text = next(stream).text
            stream.close()
            return text, stream
        with stream:
            text = next(stream).text
        return text, stream

    try:
        text, stream = await asyncio.to_thread(work)
        assert text
        await upstream_aborted(stack, before)
        if stream is not None:
            assert list(stream) == []  # a closed stream stays ended
    finally:
        await asyncio.to_thread(client.close)


# --------------------------------------------------------------------------- data plane, sync


async def test_the_sync_client_serves_every_method(stack: Stack) -> None:
    prompt = "How far is the moon?"

    def work() -> tuple[list[ChatChunk], str, str, int, list[str]]:
        with SyncGatewayClient(stack.gateway.address, ALICE_KEY) as client:
            chunks = list(client.chat("chat", [("user", prompt)], request_id="sync-chat-1"))
            answer = client.chat_text("chat", [("user", prompt)])
            completion = "".join(c.text for c in client.complete("complete", prompt))
            embedded = client.embed("embed", ["a", "b", "c"])
            routes = [r.name for r in client.list_routes()]
        return chunks, answer.text, completion, len(embedded.vectors), routes

    chunks, answer, completion, vectors, routes = await asyncio.to_thread(work)
    text = "".join(c.text for c in chunks)
    assert text.startswith(digest(prompt))
    assert answer == text
    assert (chunks[-1].finish_reason, chunks[-1].backend, chunks[-1].request_id) == (
        "stop",
        "vllm-a",
        "sync-chat-1",
    )
    assert all(c.finish_reason is None for c in chunks[:-1])
    assert completion.startswith(digest(prompt))
    assert vectors == 3
    assert alices_routes() <= set(routes)


# --------------------------------------------------------------------------- control plane


async def test_a_created_key_works_lists_without_its_secret_and_dies_when_revoked(stack: Stack) -> None:
    async with admin(stack) as control:
        key, secret = await control.create_key("client-carol", "eng")
        assert key.id.startswith("key_")
        assert (key.name, key.team, key.revoked, key.configured) == ("client-carol", "eng", False, False)
        assert secret.startswith(key.prefix)
        async with gateway(stack, secret) as carol:
            assert (await carol.chat_text("chat", [("user", "hi")])).text.startswith(digest("hi"))

            listed = await control.list_keys(team="eng")
            assert key in listed
            assert secret not in repr(listed)
            with pytest.raises(AlreadyExists):
                await control.create_key("client-carol", "eng")

            revoked = await control.revoke_key(key.id)
            assert revoked.id == key.id and revoked.revoked
            assert await control.revoke_key(key.id) == revoked  # idempotent
            with pytest.raises(Unauthenticated):
                await carol.chat_text("chat", [("user", "hi")])
        assert key.id not in {k.id for k in await control.list_keys(team="eng")}
        assert key.id in {k.id for k in await control.list_keys(team="eng", include_revoked=True)}


async def test_the_admin_service_refuses_a_consumer_key(stack: Stack) -> None:
    async with admin(stack, ALICE_KEY) as control:
        with pytest.raises(PermissionDenied):
            await control.list_keys()
    async with admin(stack, "mg-not-a-real-key") as control:
        with pytest.raises(Unauthenticated):
            await control.list_backends()


async def test_routes_upserted_serve_list_and_delete(stack: Stack) -> None:
    route = RouteDef("client-made", "chat", (TargetDef("sim-llama", "vllm-b", 3),), ("eng",))
    async with admin(stack) as control, gateway(stack) as client:
        try:
            assert await control.upsert_route(route) == route
            routes = {r.name: r for r in await control.list_all_routes()}
            assert routes["client-made"] == route
            assert routes["chat"] == RouteDef(
                "chat", "chat", (TargetDef("sim-llama", "vllm-a"),), ("eng",), configured=True
            )
            assert set(ROUTES) <= set(routes)
            answer = await client.chat_text("client-made", [("user", "hi")])
            assert answer.backend == "vllm-b"
        finally:
            await control.delete_route("client-made")
        with pytest.raises(NotFound):
            await client.chat_text("client-made", [("user", "hi")])
        with pytest.raises(NotFound):
            await control.delete_route("client-made")
        assert "client-made" not in {r.name for r in await control.list_all_routes()}


async def test_a_registered_backend_serves_heartbeats_and_leaves(stack: Stack) -> None:
    async with hosted(stack, answer="digest", tokens=4) as host, admin(stack) as control:
        backend = await control.register_backend(
            host.url, ["hosted-model"], labels={"gpu": "h100"}, lease_ttl_s=30
        )
        assert backend.id.startswith("reg-")
        assert (backend.url, backend.models, backend.protocol) == (host.url, ("hosted-model",), "vllm")
        assert (backend.state, backend.configured, dict(backend.labels)) == (
            "healthy",
            False,
            {"gpu": "h100"},
        )
        assert backend.lease_expires_unix_ms > 0
        async with gateway(stack) as client:
            answer = await client.chat_text("registered", [("user", "hi")])
            assert (answer.backend, answer.text.split()[0]) == (backend.id, digest("hi"))

            expires = await control.heartbeat(backend.id, BackendLoad(3, 1, 0.5))
            assert expires >= backend.lease_expires_unix_ms
            listed = {b.id: b for b in await control.list_backends()}
            assert listed[backend.id].load == BackendLoad(3, 1, 0.5)
            assert listed[backend.id].lease_expires_unix_ms == expires
            vllm_a = listed["vllm-a"]
            assert (vllm_a.configured, vllm_a.lease_expires_unix_ms, vllm_a.url) == (True, 0, stack.vllm.url)

            assert await control.deregister_backend(backend.id) is True
            assert await control.deregister_backend(backend.id) is False  # idempotent
            with pytest.raises(NotFound):
                await control.heartbeat(backend.id)
            assert backend.id not in {b.id for b in await control.list_backends()}
            with pytest.raises(Unavailable):
                await client.chat_text("registered", [("user", "hi")])


async def test_the_sync_admin_client_covers_keys_routes_and_backends(stack: Stack) -> None:
    route = RouteDef("client-sync-made", "chat", (TargetDef("sim-llama", "vllm-a"),), ("ops",))

    def work(call: Callable[[SyncAdminClient], Any]) -> Any:
        with SyncAdminClient(stack.gateway.address, ADMIN_KEY) as control:
            return call(control)

    async with hosted(stack, tokens=4) as host:
        key, secret = await asyncio.to_thread(work, lambda c: c.create_key("client-sync-dave", "ops"))
        async with gateway(stack, secret) as dave:
            assert (await dave.chat_text("ops-only", [("user", "hi")])).backend == "vllm-a"
            assert key in await asyncio.to_thread(work, lambda c: c.list_keys(team="ops"))
            await asyncio.to_thread(work, lambda c: c.revoke_key(key.id))
            with pytest.raises(Unauthenticated):
                await dave.list_routes()

        assert await asyncio.to_thread(work, lambda c: c.upsert_route(route)) == route
        assert route in await asyncio.to_thread(work, lambda c: c.list_all_routes())
        await asyncio.to_thread(work, lambda c: c.delete_route(route.name))
        assert route not in await asyncio.to_thread(work, lambda c: c.list_all_routes())

        backend: BackendInfo = await asyncio.to_thread(
            work, lambda c: c.register_backend(host.url, ["hosted-model"])
        )
        await asyncio.to_thread(work, lambda c: c.heartbeat(backend.id, BackendLoad(2, 0, 0.25)))
        listed = await asyncio.to_thread(work, lambda c: c.list_backends())
        assert next(b for b in listed if b.id == backend.id).load == BackendLoad(2, 0, 0.25)
        assert await asyncio.to_thread(work, lambda c: c.deregister_backend(backend.id)) is True
        with pytest.raises(NotFound):
            await asyncio.to_thread(work, lambda c: c.heartbeat(backend.id))


async def test_no_client_result_carries_a_provider_credential(stack: Stack) -> None:
    async with admin(stack) as control:
        backends = await control.list_backends()
        routes = await control.list_all_routes()
    assert PROVIDER_KEY not in repr(backends) + repr(routes)
