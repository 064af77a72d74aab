"""The Admin service: keys, routes and registered backends, through the real gateway."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from backends.sim import SimConfig, Simulator
from router._proto.meshgate.v1 import admin_pb2 as apb
from router._proto.meshgate.v1 import gateway_pb2 as pb

from .conftest import ADMIN_KEY, ALICE_KEY, PROVIDER_KEY, Stack, auth
from .test_streaming import chat_request, collect

ADMIN = auth(ADMIN_KEY)


async def test_only_admin_keys_may_use_the_admin_service(stack: Stack) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.admin.ListKeys(apb.ListKeysRequest(), metadata=auth(ALICE_KEY))
    assert caught.value.code() == grpc.StatusCode.PERMISSION_DENIED
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.admin.ListKeys(apb.ListKeysRequest())
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_a_created_key_works_at_once_is_shown_once_and_dies_when_revoked(stack: Stack) -> None:
    created = await stack.admin.CreateKey(apb.CreateKeyRequest(name="carol", team="eng"), metadata=ADMIN)
    assert created.secret.startswith("mg-")
    assert created.key.id.startswith("key_")
    text, _ = await collect(stack.gw.Chat(chat_request("chat", "hi"), metadata=auth(created.secret)))
    assert text
    listed = await stack.admin.ListKeys(apb.ListKeysRequest(team="eng"), metadata=ADMIN)
    assert "carol" in [k.name for k in listed.keys]
    assert created.secret not in str(listed)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.admin.CreateKey(apb.CreateKeyRequest(name="carol", team="eng"), metadata=ADMIN)
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS

    revoked = await stack.admin.RevokeKey(apb.RevokeKeyRequest(key_id=created.key.id), metadata=ADMIN)
    assert revoked.revoked_unix_ms > 0
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await collect(stack.gw.Chat(chat_request("chat", "hi"), metadata=auth(created.secret)))
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_bad_key_requests_are_refused(stack: Stack) -> None:
    for request, code in [
        (apb.CreateKeyRequest(name="dave", team="no-such-team"), grpc.StatusCode.INVALID_ARGUMENT),
        (apb.CreateKeyRequest(name="bad name!", team="eng"), grpc.StatusCode.INVALID_ARGUMENT),
    ]:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stack.admin.CreateKey(request, metadata=ADMIN)
        assert caught.value.code() == code
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.admin.RevokeKey(apb.RevokeKeyRequest(key_id="key_doesnotexist"), metadata=ADMIN)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_routes_made_through_admin_serve_and_can_be_deleted(stack: Stack) -> None:
    route = apb.Route(
        name="made-live",
        type="chat",
        targets=[apb.Target(provider="vllm-b", model="sim-llama")],
        allow=["eng"],
    )
    stored = await stack.admin.UpsertRoute(apb.UpsertRouteRequest(route=route), metadata=ADMIN)
    assert stored.name == "made-live"
    assert not stored.configured
    _, chunks = await collect(stack.gw.Chat(chat_request("made-live", "hi"), metadata=auth(ALICE_KEY)))
    assert chunks[-1].backend == "vllm-b"
    await stack.admin.DeleteRoute(apb.DeleteRouteRequest(name="made-live"), metadata=ADMIN)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await collect(stack.gw.Chat(chat_request("made-live", "hi"), metadata=auth(ALICE_KEY)))
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_invalid_and_configured_routes_cannot_be_upserted(stack: Stack) -> None:
    bad = apb.Route(
        name="broken", type="chat", targets=[apb.Target(provider="no-such", model="m")], allow=["eng"]
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.admin.UpsertRoute(apb.UpsertRouteRequest(route=bad), metadata=ADMIN)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "no-such" in (caught.value.details() or "")
    configured = apb.Route(
        name="chat", type="chat", targets=[apb.Target(provider="vllm-b", model="m")], allow=["*"]
    )
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.admin.UpsertRoute(apb.UpsertRouteRequest(route=configured), metadata=ADMIN)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_a_registered_host_joins_the_pool_of_its_model_and_leaves_on_deregister(stack: Stack) -> None:
    host = Simulator(SimConfig(protocol="vllm", models=("hosted-model",), tokens=4))
    await host.start()
    try:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await collect(stack.gw.Chat(chat_request("registered", "hi"), metadata=auth(ALICE_KEY)))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE

        backend = await stack.admin.RegisterBackend(
            apb.RegisterBackendRequest(url=host.url, models=["hosted-model"], labels={"gpu": "h100"}),
            metadata=ADMIN,
        )
        assert backend.id.startswith("reg-")
        assert backend.state == apb.BACKEND_STATE_HEALTHY
        _, chunks = await collect(stack.gw.Chat(chat_request("registered", "hi"), metadata=auth(ALICE_KEY)))
        assert chunks[-1].backend == backend.id
        assert chunks[-1].usage.completion_tokens == 4

        beat = await stack.admin.Heartbeat(
            apb.HeartbeatRequest(backend_id=backend.id, load=apb.BackendLoad(running_requests=3)),
            metadata=ADMIN,
        )
        assert beat.lease_expires_unix_ms >= backend.lease_expires_unix_ms
        listed = await stack.admin.ListBackends(apb.ListBackendsRequest(), metadata=ADMIN)
        mine = next(b for b in listed.backends if b.id == backend.id)
        assert mine.load.running_requests == 3
        assert dict(mine.labels) == {"gpu": "h100"}

        removed = await stack.admin.DeregisterBackend(
            apb.DeregisterBackendRequest(backend_id=backend.id), metadata=ADMIN
        )
        assert removed.removed
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await collect(stack.gw.Chat(chat_request("registered", "hi"), metadata=auth(ALICE_KEY)))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await host.stop()


async def test_a_missed_lease_removes_the_backend(stack: Stack) -> None:
    host = Simulator(SimConfig(protocol="vllm", models=("hosted-model",), tokens=4))
    await host.start()
    try:
        backend = await stack.admin.RegisterBackend(
            apb.RegisterBackendRequest(url=host.url, models=["hosted-model"], lease_ttl_s=1), metadata=ADMIN
        )

        async def gone() -> None:
            while True:
                listed = await stack.admin.ListBackends(apb.ListBackendsRequest(), metadata=ADMIN)
                if backend.id not in [b.id for b in listed.backends]:
                    return
                await asyncio.sleep(0.1)

        await asyncio.wait_for(gone(), timeout=10)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stack.admin.Heartbeat(apb.HeartbeatRequest(backend_id=backend.id), metadata=ADMIN)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        await host.stop()


async def test_registration_is_validated(stack: Stack) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.admin.RegisterBackend(
            apb.RegisterBackendRequest(url="ftp://x", models=[], lease_ttl_s=99999), metadata=ADMIN
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    details = caught.value.details() or ""
    assert "url" in details and "models" in details and "lease_ttl_s" in details


async def test_no_admin_read_shows_a_provider_credential(stack: Stack) -> None:
    backends = await stack.admin.ListBackends(apb.ListBackendsRequest(), metadata=ADMIN)
    routes = await stack.admin.ListAllRoutes(apb.ListAllRoutesRequest(), metadata=ADMIN)
    assert {"openai", "anthropic", "vllm-a"} <= {b.id for b in backends.backends}
    for message in (backends, routes):
        assert PROVIDER_KEY.encode() not in message.SerializeToString()


async def test_health_and_reflection_are_served(stack: Stack) -> None:
    health = health_pb2_grpc.HealthStub(stack.channel)
    for service in ("", "meshgate.v1.Gateway"):
        response = await health.Check(health_pb2.HealthCheckRequest(service=service))
        assert response.status == health_pb2.HealthCheckResponse.SERVING
    reflection = reflection_pb2_grpc.ServerReflectionStub(stack.channel)
    call = reflection.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
    response = await call.read()
    names = {s.name for s in response.list_services_response.service}
    assert {"meshgate.v1.Gateway", "meshgate.v1.Admin", "grpc.health.v1.Health"} <= names
    call.cancel()


async def test_list_routes_needs_a_key(stack: Stack) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.gw.ListRoutes(pb.ListRoutesRequest())
    assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
