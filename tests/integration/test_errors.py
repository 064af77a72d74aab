"""Bad input and upstream failures end with the precise status and a message a person can act on."""

from __future__ import annotations

import grpc
import pytest

from router._proto.meshgate.v1 import gateway_pb2 as pb

from .conftest import ALICE_KEY, BOB_KEY, PROVIDER_KEY, Stack, auth
from .test_streaming import chat_request, collect


async def chat_error(stack: Stack, request: pb.ChatRequest, metadata: object = None) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await collect(stack.gw.Chat(request, metadata=auth(ALICE_KEY) if metadata is None else metadata))
    return caught.value


async def test_missing_and_wrong_keys_are_unauthenticated(stack: Stack) -> None:
    missing = await chat_error(stack, chat_request("chat", "hi"), metadata=())
    assert missing.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "authorization: Bearer" in (missing.details() or "")
    wrong = await chat_error(stack, chat_request("chat", "hi"), metadata=auth("mg-not-a-real-key"))
    assert wrong.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "mg-not-a-real-key" not in (wrong.details() or "")


async def test_unknown_route_is_not_found(stack: Stack) -> None:
    error = await chat_error(stack, chat_request("no-such-route", "hi"))
    assert error.code() == grpc.StatusCode.NOT_FOUND
    assert "no-such-route" in (error.details() or "")


async def test_a_route_outside_the_keys_groups_is_permission_denied(stack: Stack) -> None:
    error = await chat_error(stack, chat_request("chat", "hi"), metadata=auth(BOB_KEY))
    assert error.code() == grpc.StatusCode.PERMISSION_DENIED
    assert "chat" in (error.details() or "")


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.ChatRequest(route="chat"), "messages"),
        (pb.ChatRequest(route="chat", messages=[pb.Message(role="wizard", content="hi")]), "role"),
        (pb.ChatRequest(route="chat", messages=[pb.Message(role="user", content="")]), "content"),
        (chat_request("chat", "hi", max_tokens=-1), "max_tokens"),
        (chat_request("chat", "hi", max_tokens=10**9), "max_tokens"),
        (chat_request("chat", "hi", temperature=7.0), "temperature"),
        (chat_request("chat", "hi", top_p=0.0), "top_p"),
        (chat_request("chat", "hi", stop=["a", "b", "c", "d", "e"]), "stop"),
        (chat_request("chat", "x" * (1024 * 1024 + 1)), "bytes"),
        (chat_request("chat", "hi", tags={f"k{i}": "v" for i in range(40)}), "tags"),
        (chat_request("", "hi"), "route"),
    ],
)
async def test_invalid_requests_say_which_field_is_wrong(
    stack: Stack, request_: pb.ChatRequest, field: str
) -> None:
    error = await chat_error(stack, request_)
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert field in (error.details() or "")


async def test_a_message_over_the_grpc_size_limit_is_refused(stack: Stack) -> None:
    error = await chat_error(stack, chat_request("chat", "x" * (5 * 1024 * 1024)))
    assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


async def test_calling_a_route_of_another_type_is_invalid(stack: Stack) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stack.gw.Embed(pb.EmbedRequest(route="chat", inputs=["x"]), metadata=auth(ALICE_KEY))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Chat" in (caught.value.details() or "")


async def test_every_target_down_is_unavailable_and_names_the_backend(stack: Stack) -> None:
    error = await chat_error(stack, chat_request("dead", "hi"))
    assert error.code() == grpc.StatusCode.UNAVAILABLE
    assert "nowhere" in (error.details() or "")


async def test_provider_rejecting_our_credentials_names_the_provider_never_the_key(stack: Stack) -> None:
    error = await chat_error(stack, chat_request("bad-openai-key", "hi"))
    assert error.code() in (grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.UNAVAILABLE)
    details = error.details() or ""
    assert "openai" in details
    assert PROVIDER_KEY not in details
    assert PROVIDER_KEY[:12] not in details


async def test_the_server_serves_normally_after_every_error(stack: Stack) -> None:
    for request_ in (pb.ChatRequest(route="chat"), chat_request("dead", "hi"), chat_request("nope", "x")):
        await chat_error(stack, request_)
    text, chunks = await collect(
        stack.gw.Chat(chat_request("chat", "still alive?"), metadata=auth(ALICE_KEY))
    )
    assert chunks[-1].finish_reason == pb.FINISH_REASON_STOP
    assert text
