"""The application client without a gateway: status → error class, retry hints,
message forms, keys, and the end-of-stream contract.

Everything here is pure: gRPC's own objects (an ``RpcError``, a call's reads)
appear as data. The client against the real gateway is tested in
tests/integration/test_client.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import grpc
import grpc.aio
import pytest

from router._proto.meshgate.v1 import gateway_pb2 as pb
from router.client import (
    AdminClient,
    ChatChunk,
    ChatStream,
    GatewayClient,
    SyncAdminClient,
    SyncChatStream,
    SyncGatewayClient,
    from_rpc_error,
    to_messages,
)
from router.domain import Message
from router.errors import (
    BY_STATUS,
    InvalidRequest,
    MeshgateError,
    ResourceExhausted,
    Unauthenticated,
    Unavailable,
)

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
        ((("retry-after-s", "inf"),), None),
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


# --------------------------------------------------------------------------- end of stream
# The gateway always ends a stream with a finish reason or a status, so the
# client's guard against a stream that just stops cannot be reached through it;
# these feed the streams gRPC's reads as data instead.


class ScriptedCall:
    """What ``Gateway.Chat`` returns, reduced to the reads a stream makes."""

    def __init__(self, *messages: Any) -> None:
        self._messages = list(messages)
        self.cancelled = False

    async def read(self) -> Any:
        return self._messages.pop(0)

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        if not self._messages:
            raise StopIteration
        return self._messages.pop(0)

    def cancel(self) -> None:
        self.cancelled = True


async def test_an_async_stream_ending_without_a_finish_reason_is_unavailable() -> None:
    stream = ChatStream(lambda: ScriptedCall(pb.ChatChunk(text="Hel"), grpc.aio.EOF))
    assert await anext(stream) == ChatChunk("Hel")
    with pytest.raises(Unavailable, match="without a finish reason"):
        await anext(stream)
    assert [c async for c in stream] == []


async def test_an_async_stream_ending_after_its_finish_reason_ends_cleanly() -> None:
    last = pb.ChatChunk(text="!", finish_reason=pb.FINISH_REASON_STOP, model="m", backend="b")
    stream = ChatStream(lambda: ScriptedCall(pb.ChatChunk(text="Hi"), last, grpc.aio.EOF))
    chunks = [c async for c in stream]
    assert [(c.text, c.finish_reason, c.backend) for c in chunks] == [("Hi", None, ""), ("!", "stop", "b")]


def test_a_sync_stream_ending_without_a_finish_reason_is_unavailable() -> None:
    stream = SyncChatStream(lambda: ScriptedCall(pb.ChatChunk(text="Hel")))
    assert next(stream) == ChatChunk("Hel")
    with pytest.raises(Unavailable, match="without a finish reason"):
        next(stream)
    assert list(stream) == []


def test_a_stream_starts_its_call_on_the_first_read_only() -> None:
    started: list[ScriptedCall] = []

    def start() -> ScriptedCall:
        started.append(ScriptedCall(pb.ChatChunk(text="x", finish_reason=pb.FINISH_REASON_LENGTH)))
        return started[-1]

    stream = SyncChatStream(start)
    assert started == []
    assert next(stream).finish_reason == "length"
    assert len(started) == 1
    stream.close()
    assert started[0].cancelled
