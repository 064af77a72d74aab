"""The application client: status → error class, message forms, keys, streams.

The wire tests run the clients against a fake gateway on 127.0.0.1:0 whose
behaviour is chosen by route name; the real gateway's end-to-end tests live
in tests/integration.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio
import pytest

from router._proto.meshgate.v1 import admin_pb2 as apb
from router._proto.meshgate.v1 import admin_pb2_grpc, gateway_pb2_grpc
from router._proto.meshgate.v1 import gateway_pb2 as pb
from router.client import (
    AdminClient,
    ChatChunk,
    GatewayClient,
    RouteDef,
    SyncAdminClient,
    SyncGatewayClient,
    TargetDef,
    from_rpc_error,
    to_messages,
)
from router.domain import BackendLoad, Message, Usage
from router.errors import (
    BY_STATUS,
    InvalidRequest,
    MeshgateError,
    NotFound,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)

KEY = "mg-test-client-0123456789"
ADMIN = "mg-test-admin-0123456789"
WAIT_S = 10  # an upper bound on waiting for an event, never a pause


# --------------------------------------------------------------------------- status → class


class FakeRpcError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode, details: str | None, trailing: Any = ()) -> None:
        self._code, self._details, self._trailing = code, details, trailing

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str | None:
        return self._details

    def trailing_metadata(self) -> Any:
        return self._trailing


@pytest.mark.parametrize("name", sorted(BY_STATUS))
def test_every_status_maps_to_its_class(name: str) -> None:
    error = from_rpc_error(FakeRpcError(grpc.StatusCode[name], f"details for {name}"))
    assert type(error) is BY_STATUS[name]
    assert error.status == name
    assert str(error) == error.message == f"details for {name}"
    assert error.retry_after_s is None


@pytest.mark.parametrize("name", ["UNIMPLEMENTED", "UNKNOWN", "ABORTED", "OUT_OF_RANGE", "DATA_LOSS"])
def test_other_statuses_fall_back_to_the_base_class_keeping_their_code(name: str) -> None:
    error = from_rpc_error(FakeRpcError(grpc.StatusCode[name], "odd"))
    assert type(error) is MeshgateError
    assert error.status == name
    assert MeshgateError.status == "INTERNAL"  # the instance attribute did not leak into the class


@pytest.mark.parametrize(
    ("trailing", "expected"),
    [
        ((("retry-after-s", "2.5"),), 2.5),
        ((("other", "x"), ("retry-after-s", b"7")), 7.0),
        (grpc.aio.Metadata(("retry-after-s", "0")), 0.0),
        ((("retry-after-s", "soon"),), None),
        ((("retry-after-s", "-1"),), None),
        ((), None),
        (None, None),
    ],
)
def test_retry_after_comes_from_trailing_metadata(trailing: Any, expected: float | None) -> None:
    error = from_rpc_error(FakeRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, "slow down", trailing))
    assert isinstance(error, ResourceExhausted)
    assert error.retry_after_s == expected


def test_empty_details_fall_back_to_the_status_name() -> None:
    assert str(from_rpc_error(FakeRpcError(grpc.StatusCode.UNAVAILABLE, ""))) == "UNAVAILABLE"
    assert str(from_rpc_error(FakeRpcError(grpc.StatusCode.UNAVAILABLE, None))) == "UNAVAILABLE"


# --------------------------------------------------------------------------- message forms


def test_the_three_message_forms_normalise_to_messages() -> None:
    assert to_messages(
        [
            Message("system", "be brief"),
            ("user", "hi"),
            {"role": "assistant", "content": "hello", "name": "ignored"},
            ["user", "list form"],
        ]
    ) == (
        Message("system", "be brief"),
        Message("user", "hi"),
        Message("assistant", "hello"),
        Message("user", "list form"),
    )
    assert to_messages(iter([("user", "from a generator")])) == (Message("user", "from a generator"),)
    assert to_messages([]) == ()


@pytest.mark.parametrize(
    ("bad", "where"),
    [
        ([("user",)], "messages[0]"),
        ([("user", "a", "b")], "messages[0]"),
        ([("user", 3)], "messages[0]"),
        ([("user", "ok"), {"role": "user"}], "messages[1]"),
        ([("user", "ok"), {"content": "x"}], "messages[1]"),
        ([42], "messages[0]"),
        ([None], "messages[0]"),
    ],
)
def test_a_malformed_message_is_an_invalid_request_naming_it(bad: Any, where: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        to_messages(bad)
    assert info.value.status == "INVALID_ARGUMENT"
    assert str(info.value).startswith(f"{where}: expected a Message, a (role, content) tuple")


def test_a_bare_string_is_refused_with_a_hint() -> None:
    with pytest.raises(InvalidRequest, match=r"\[\('user', text\)\]"):
        to_messages("hello")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- keys


def test_a_missing_key_fails_before_any_call(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MESHGATE_KEY", raising=False)
    monkeypatch.delenv("MESHGATE_ADMIN_KEY", raising=False)
    # Port 9 (discard) is never contacted: the key check comes first.
    client = GatewayClient("127.0.0.1:9")
    with pytest.raises(Unauthenticated, match="MESHGATE_KEY"):
        client.chat("r", [("user", "hi")])
    with pytest.raises(Unauthenticated, match="MESHGATE_KEY"):
        SyncGatewayClient("127.0.0.1:9").list_routes()
    with pytest.raises(Unauthenticated, match="MESHGATE_ADMIN_KEY"):
        SyncAdminClient("127.0.0.1:9", key="").list_keys()
    assert client._channel is None  # nothing was opened


async def test_a_missing_key_fails_async_unary_calls(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MESHGATE_ADMIN_KEY", raising=False)
    async with AdminClient("127.0.0.1:9") as admin:
        with pytest.raises(Unauthenticated, match="admin key"):
            await admin.list_backends()


def test_keys_default_to_their_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESHGATE_KEY", "from-env")
    monkeypatch.setenv("MESHGATE_ADMIN_KEY", "admin-from-env")
    assert GatewayClient()._metadata() == (("authorization", "Bearer from-env"),)
    assert SyncAdminClient()._metadata() == (("authorization", "Bearer admin-from-env"),)
    assert GatewayClient(key="explicit")._metadata() == (("authorization", "Bearer explicit"),)
    assert "from-env" not in repr(GatewayClient())


# --------------------------------------------------------------------------- over the wire


class FakeGateway(gateway_pb2_grpc.GatewayServicer):
    """Behaviour by route: "ok", "status-<CODE>", "cut", "nofinish", "forever"."""

    def __init__(self) -> None:
        self.cancelled: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)
        self.requests: list[Any] = []
        self.authorization: list[str] = []

    def _seen(self, request: Any, context: grpc.aio.ServicerContext) -> None:
        self.requests.append(request)
        self.authorization.append(dict(context.invocation_metadata()).get("authorization", ""))

    async def _refuse(self, route: str, context: grpc.aio.ServicerContext) -> None:
        if route.startswith("status-"):
            await context.abort(
                grpc.StatusCode[route.removeprefix("status-")],
                f"refused by {route}",
                trailing_metadata=(("retry-after-s", "2.5"),),
            )

    async def Chat(
        self, request: pb.ChatRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ChatChunk]:
        self._seen(request, context)
        async for chunk in self._stream(request.route, request.request_id, context):
            yield chunk

    async def Complete(
        self, request: pb.CompleteRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ChatChunk]:
        self._seen(request, context)
        async for chunk in self._stream(request.route, request.request_id, context):
            yield chunk

    async def _stream(
        self, route: str, request_id: str, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ChatChunk]:
        # The client's cancellation lands in this generator (CancelledError) or in
        # the server's write (the generator is then closed): either way, `finally`.
        answered = False
        try:
            async for chunk in self._answer(route, request_id, context):
                yield chunk
            answered = True
        finally:
            if not answered:
                self.cancelled[request_id].set()

    async def _answer(
        self, route: str, request_id: str, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ChatChunk]:
        await self._refuse(route, context)
        yield pb.ChatChunk(text="Hel")
        yield pb.ChatChunk(text="lo")
        if route == "cut":
            await context.abort(grpc.StatusCode.UNAVAILABLE, "the upstream broke the stream")
        if route == "nofinish":
            return
        if route == "forever":
            await asyncio.Event().wait()
        yield pb.ChatChunk(
            text="!",
            finish_reason=pb.FINISH_REASON_LENGTH,
            usage=pb.Usage(prompt_tokens=5, completion_tokens=3, cached_prompt_tokens=1),
            model="sim-llama",
            backend="vllm-a",
            request_id=request_id or "gen-1",
        )

    async def Embed(self, request: pb.EmbedRequest, context: grpc.aio.ServicerContext) -> pb.EmbedResponse:
        self._seen(request, context)
        await self._refuse(request.route, context)
        return pb.EmbedResponse(
            embeddings=[pb.Embedding(values=[float(len(text)), 0.5]) for text in request.inputs],
            usage=pb.Usage(prompt_tokens=len(request.inputs), estimated=True),
            model="embed-sim",
            backend="vllm-a",
            request_id="gen-2",
        )

    async def ListRoutes(
        self, request: pb.ListRoutesRequest, context: grpc.aio.ServicerContext
    ) -> pb.ListRoutesResponse:
        self._seen(request, context)
        return pb.ListRoutesResponse(
            routes=[
                pb.RouteInfo(name="chat", type=pb.ROUTE_TYPE_CHAT, models=["a", "b"]),
                pb.RouteInfo(name="embed", type=pb.ROUTE_TYPE_EMBEDDING, models=["e"]),
            ]
        )


class FakeAdmin(admin_pb2_grpc.AdminServicer):
    async def RegisterBackend(self, request: apb.RegisterBackendRequest, context: Any) -> apb.Backend:
        return apb.Backend(
            id="reg-1",
            url=request.url,
            models=request.models,
            protocol=request.protocol,
            labels=request.labels,
            state=apb.BACKEND_STATE_HEALTHY,
            lease_expires_unix_ms=1_000 * request.lease_ttl_s,
        )

    async def Heartbeat(self, request: apb.HeartbeatRequest, context: Any) -> apb.HeartbeatResponse:
        if request.backend_id != "reg-1":
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no backend {request.backend_id}: register again")
        return apb.HeartbeatResponse(lease_expires_unix_ms=int(request.load.running_requests))

    async def ListBackends(self, request: apb.ListBackendsRequest, context: Any) -> apb.ListBackendsResponse:
        configured = apb.Backend(
            id="openai",
            url="https://api.example/v1",
            models=["gpt"],
            protocol="openai",
            state=apb.BACKEND_STATE_HEALTHY,
            configured=True,
        )
        registered = apb.Backend(
            id="reg-1",
            url="http://10.0.0.7:8000/v1",
            models=["llama"],
            protocol="vllm",
            labels={"gpu": "h100"},
            state=apb.BACKEND_STATE_DRAINING,
            lease_expires_unix_ms=99,
            load=apb.BackendLoad(running_requests=3, waiting_requests=1, kv_cache_usage=0.5),
            in_flight=2,
        )
        return apb.ListBackendsResponse(backends=[configured, registered])

    async def CreateKey(self, request: apb.CreateKeyRequest, context: Any) -> apb.CreateKeyResponse:
        key = apb.Key(id="key_1", name=request.name, team=request.team, created_unix_ms=5, prefix="mg-AbCd")
        return apb.CreateKeyResponse(key=key, secret="mg-AbCd-secret")

    async def UpsertRoute(self, request: apb.UpsertRouteRequest, context: Any) -> apb.Route:
        return request.route

    async def DeleteRoute(self, request: apb.DeleteRouteRequest, context: Any) -> apb.DeleteRouteResponse:
        await context.abort(grpc.StatusCode.NOT_FOUND, f"no route {request.name!r}")
        raise AssertionError("abort returned")


@pytest.fixture(scope="module")
async def fake() -> AsyncIterator[tuple[str, FakeGateway]]:
    server = grpc.aio.server()
    gateway = FakeGateway()
    gateway_pb2_grpc.add_GatewayServicer_to_server(gateway, server)
    admin_pb2_grpc.add_AdminServicer_to_server(FakeAdmin(), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield f"127.0.0.1:{port}", gateway
    await server.stop(grace=None)


async def test_chat_streams_plain_chunks_with_the_key(fake: tuple[str, FakeGateway]) -> None:
    target, gateway = fake
    async with GatewayClient(target, KEY) as client:
        chunks = [c async for c in client.chat("ok", [("user", "hi")], max_tokens=8, tags={"p": "x"})]
    assert chunks[:2] == [ChatChunk("Hel"), ChatChunk("lo")]
    assert chunks[2] == ChatChunk("!", "length", Usage(5, 3, 1, False), "sim-llama", "vllm-a", "gen-1")
    assert gateway.authorization[-1] == f"Bearer {KEY}"
    request = gateway.requests[-1]
    assert (
        request.max_tokens == 8 and not request.HasField("temperature") and dict(request.tags) == {"p": "x"}
    )


async def test_chat_text_collects_the_answer(fake: tuple[str, FakeGateway]) -> None:
    async with GatewayClient(fake[0], KEY) as client:
        answer = await client.chat_text("ok", [{"role": "user", "content": "hi"}], request_id="mine")
    assert (answer.text, answer.finish_reason, answer.request_id) == ("Hello!", "length", "mine")
    assert answer.usage == Usage(5, 3, 1, False)
    assert 0 <= answer.ttft_s <= answer.total_s


@pytest.mark.parametrize("name", ["RESOURCE_EXHAUSTED", "PERMISSION_DENIED", "NOT_FOUND", "INVALID_ARGUMENT"])
async def test_a_refused_stream_raises_the_typed_error(fake: tuple[str, FakeGateway], name: str) -> None:
    async with GatewayClient(fake[0], KEY) as client:
        with pytest.raises(BY_STATUS[name]) as info:
            async for _ in client.chat(f"status-{name}", [("user", "hi")]):
                pass
    assert str(info.value) == f"refused by status-{name}"
    assert info.value.retry_after_s == 2.5
    assert isinstance(info.value.__cause__, grpc.RpcError)


async def test_an_error_mid_stream_comes_after_the_text(fake: tuple[str, FakeGateway]) -> None:
    texts: list[str] = []
    async with GatewayClient(fake[0], KEY) as client:
        with pytest.raises(Unavailable, match="broke the stream"):
            async for chunk in client.complete("cut", "prompt"):
                texts.append(chunk.text)
    assert texts == ["Hel", "lo"]


async def test_a_stream_ending_without_a_finish_reason_raises(fake: tuple[str, FakeGateway]) -> None:
    async with GatewayClient(fake[0], KEY) as client:
        with pytest.raises(Unavailable, match="without a finish reason"):
            await client.chat_text("nofinish", [("user", "hi")])


async def test_breaking_out_cancels_the_call(fake: tuple[str, FakeGateway]) -> None:
    target, gateway = fake
    async with GatewayClient(target, KEY) as client:
        async for chunk in client.chat("forever", [("user", "hi")], request_id="break-1"):
            assert chunk.text == "Hel"
            break
        await asyncio.wait_for(gateway.cancelled["break-1"].wait(), WAIT_S)

        stream = client.chat("forever", [("user", "hi")], request_id="aclose-1")
        assert (await anext(stream)).text == "Hel"
        await stream.aclose()
        await stream.aclose()  # idempotent
        await asyncio.wait_for(gateway.cancelled["aclose-1"].wait(), WAIT_S)
        assert [c async for c in stream] == []


async def test_cancelling_the_consuming_task_cancels_the_call(fake: tuple[str, FakeGateway]) -> None:
    target, gateway = fake
    first = asyncio.Event()

    async def consume(client: GatewayClient) -> None:
        async for _ in client.chat("forever", [("user", "hi")], request_id="task-1"):
            first.set()

    async with GatewayClient(target, KEY) as client:
        task = asyncio.create_task(consume(client))
        await asyncio.wait_for(first.wait(), WAIT_S)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(gateway.cancelled["task-1"].wait(), WAIT_S)


async def test_embed_and_list_routes(fake: tuple[str, FakeGateway]) -> None:
    async with GatewayClient(fake[0], KEY) as client:
        result = await client.embed("embed", ["ab", "abc"])
        single = await client.embed("embed", "abcd")
        routes = await client.list_routes()
        with pytest.raises(ResourceExhausted) as info:
            await client.embed("status-RESOURCE_EXHAUSTED", ["x"])
    assert result.vectors == [[2.0, 0.5], [3.0, 0.5]]
    assert result.usage == Usage(prompt_tokens=2, estimated=True)
    assert (result.model, result.backend, result.request_id) == ("embed-sim", "vllm-a", "gen-2")
    assert single.vectors == [[4.0, 0.5]]
    assert [(r.name, r.type, r.models) for r in routes] == [
        ("chat", "chat", ("a", "b")),
        ("embed", "embedding", ("e",)),
    ]
    assert info.value.retry_after_s == 2.5


async def test_the_sync_client_streams_raises_and_cancels(fake: tuple[str, FakeGateway]) -> None:
    target, gateway = fake

    def work() -> tuple[str, str]:
        with SyncGatewayClient(target, KEY) as client:
            answer = client.chat_text("ok", [("user", "hi")])
            try:
                for _ in client.chat("status-RESOURCE_EXHAUSTED", [("user", "hi")]):
                    pass
            except ResourceExhausted as exc:
                refused = f"{exc.status} {exc.retry_after_s}"
            for _ in client.chat("forever", [("user", "hi")], request_id="sync-break-1"):
                break
            return answer.text, refused

    assert await asyncio.to_thread(work) == ("Hello!", "RESOURCE_EXHAUSTED 2.5")
    await asyncio.wait_for(gateway.cancelled["sync-break-1"].wait(), WAIT_S)


async def test_admin_results_are_plain_objects(fake: tuple[str, FakeGateway]) -> None:
    async with AdminClient(fake[0], ADMIN) as admin:
        backend = await admin.register_backend("http://h:8000/v1", ["m"], labels={"a": "b"}, lease_ttl_s=30)
        assert await admin.heartbeat("reg-1", BackendLoad(running_requests=4)) == 4
        with pytest.raises(NotFound, match="register again"):
            await admin.heartbeat("reg-gone")
        configured, registered = await admin.list_backends()
        key, secret = await admin.create_key("svc", "eng")
        route = RouteDef("r", "chat", (TargetDef("m", "p", 3), TargetDef("n")), ("eng",))
        stored = await admin.upsert_route(route)
        with pytest.raises(NotFound):
            await admin.delete_route("missing")
    assert (backend.id, backend.models, backend.labels, backend.lease_expires_unix_ms) == (
        "reg-1",
        ("m",),
        {"a": "b"},
        30_000,
    )
    assert (configured.configured, configured.load, configured.state) == (True, None, "healthy")
    assert registered.load == BackendLoad(3, 1, 0.5)
    assert (registered.state, registered.in_flight, registered.labels) == ("draining", 2, {"gpu": "h100"})
    assert (key.id, key.name, key.team, key.prefix, key.revoked, secret) == (
        "key_1",
        "svc",
        "eng",
        "mg-AbCd",
        False,
        "mg-AbCd-secret",
    )
    assert stored == route


async def test_the_sync_admin_client(fake: tuple[str, FakeGateway]) -> None:
    def work() -> tuple[str, int]:
        with SyncAdminClient(fake[0], ADMIN) as admin:
            key, _ = admin.create_key("svc", "eng")
            return key.id, len(admin.list_backends())

    assert await asyncio.to_thread(work) == ("key_1", 2)


async def test_an_unreachable_gateway_is_unavailable() -> None:
    async with GatewayClient("127.0.0.1:9", KEY) as client:
        with pytest.raises(Unavailable):
            await client.list_routes(timeout_s=WAIT_S)
