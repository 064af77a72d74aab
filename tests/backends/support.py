"""Test support for the adapter tests: the test credential, settings, and a
scripted upstream on 127.0.0.1:0 for the edge cases a simulator can't play.

Each test sets ``upstream.handler`` to a coroutine answering an aiohttp
request (``stream``/``reply`` below build the common ones). The server records
every request, the client port of every connection, and sets ``disconnected``
when a client closes a connection while its handler is still running (the
server runs with ``handler_cancellation``: a closed client connection cancels
the handler, as it stops generation in vLLM).
"""

from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from backends.base import ProviderSettings
from router.domain import Chunk
from router.secrets import SecretRef

KEY = "sk-test-SECRET-0123456789abcdef"
"""The provider credential every test backend sends; it must never show up in an error."""


def settings_for(kind: str, base_url: str, **overrides: Any) -> ProviderSettings:
    values: dict[str, Any] = {"kind": kind, "base_url": base_url, "api_key": SecretRef(KEY)}
    values.update(overrides)
    return ProviderSettings(**values)


async def collect(stream: AsyncIterator[Chunk]) -> list[Chunk]:
    return [chunk async for chunk in stream]


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any
    port: int


class Wait:
    """A step of ``stream``: wait for the test to set this event."""

    def __init__(self) -> None:
        self.event = asyncio.Event()

    def set(self) -> None:
        self.event.set()


CUT = "cut"  # close the socket mid-body
RESET = "reset"  # send a TCP RST mid-body
STALL = "stall"  # never send another byte
EOF = "eof"  # end the body cleanly (the default)

Step = bytes | Wait | str


@dataclass
class FakeUpstream:
    handler: Handler | None = None
    seen: list[Seen] = field(default_factory=list)
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)
    cancelled_handlers: int = 0
    url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> FakeUpstream:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = raw
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.seen.append(
            Seen(
                method=request.method,
                path=request.path,
                query=dict(request.query),
                headers={k.lower(): v for k, v in request.headers.items()},
                body=body,
                port=peer[1] if peer else 0,
            )
        )
        assert self.handler is not None, "set upstream.handler first"
        try:
            return await self.handler(request)
        except asyncio.CancelledError:
            self.cancelled_handlers += 1
            self.disconnected.set()
            raise

    @property
    def last(self) -> Seen:
        return self.seen[-1]


def reply(status: int, body: bytes | str | dict[str, Any], headers: dict[str, str] | None = None) -> Handler:
    """A handler answering one fixed response."""
    data = orjson.dumps(body) if isinstance(body, dict) else body.encode() if isinstance(body, str) else body

    async def handle(request: web.Request) -> web.StreamResponse:
        return web.Response(status=status, body=data, headers=headers, content_type="application/json")

    return handle


def stream(*steps: Step, content_type: str = "text/event-stream") -> Handler:
    """A handler streaming ``steps``: each ``bytes`` is one write (one TCP send),
    a ``Wait`` pauses until the test sets it, then CUT/RESET/STALL/EOF."""

    async def handle(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(headers={"Content-Type": content_type})
        await resp.prepare(request)
        for step in steps:
            if isinstance(step, bytes):
                await resp.write(step)
            elif isinstance(step, Wait):
                await step.event.wait()
            elif step == STALL:
                await asyncio.Event().wait()
            elif step in (CUT, RESET):
                transport = request.transport
                assert transport is not None
                if step == RESET:
                    sock = transport.get_extra_info("socket")
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                transport.abort()
                return resp
        await resp.write_eof()
        return resp

    return handle


def sse(*events: dict[str, Any] | str, named: bool = False) -> bytes:
    """SSE bytes for ``events``: ``data: <json>`` (``event: <type>`` first when
    ``named``), a ``str`` event is sent as it is (``[DONE]``)."""
    out = bytearray()
    for event in events:
        if isinstance(event, str):
            out += b"data: " + event.encode() + b"\n\n"
            continue
        if named:
            out += b"event: " + str(event["type"]).encode() + b"\n"
        out += b"data: " + orjson.dumps(event) + b"\n\n"
    return bytes(out)
