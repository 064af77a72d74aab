"""The generation path shared by every protocol: admit, answer, pace, fault, count.

Per request the engine parses (through the flavour), resolves the behaviour
once, decides the whole answer, then writes the flavour's events, one write
per event, sleeping only where ``ttft_ms``/``itl_ms`` ask for it. Token ``i``
is due ``i * itl`` after the first, so a slow loop does not accumulate drift.

Cancellation: the server runs handlers with aiohttp's
``handler_cancellation``, so a client that closes its connection cancels the
handler wherever it waits (sleeping between tokens, stalled, or writing);
the ``finally`` below counts that as ``aborted``. Nothing here awaits inside
``finally``.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from backends.sim._answers import Answer, make_answer
from backends.sim._behaviour import Behaviour, is_behaviour_name, resolve
from backends.sim._flavour import (
    BODY_KEY,
    Context,
    Endpoint,
    Flavour,
    Generation,
    Handler,
    SimError,
    json_response,
)
from backends.sim._sse import SSE_HEADERS
from backends.sim._stats import Outcome


class Engine:
    """Serves chat and completion requests for one simulator."""

    def __init__(self, flavour: Flavour, ctx: Context, closing: asyncio.Event) -> None:
        self._flavour = flavour
        self._ctx = ctx
        self._closing = closing

    def handler(self, endpoint: Endpoint) -> Handler:
        """The aiohttp handler for ``endpoint``'s route."""

        async def handle(request: web.Request) -> web.StreamResponse:
            return await self.generate(request, endpoint)

        return handle

    def admit(self, model: str) -> Behaviour:
        """The behaviour for a request to ``model``; raises the 404 for an
        unknown model, or the injected error when the dice (or the name) say so."""
        config = self._ctx.config
        if model not in config.models and not is_behaviour_name(model):
            raise self._flavour.model_not_found(model)
        behaviour = resolve(config, model, self._ctx.rng)
        if behaviour.error_status is not None:
            raise SimError(behaviour.error_status, injected=True)
        return behaviour

    async def generate(self, request: web.Request, endpoint: Endpoint) -> web.StreamResponse:
        gen = self._flavour.parse(endpoint, request[BODY_KEY], request)
        behaviour = self.admit(gen.model)
        answer = make_answer(
            mode=self._ctx.config.answer,
            tokens=behaviour.tokens,
            max_tokens=gen.max_tokens,
            stop=gen.stop,
            digest_text=gen.digest_text,
            prompt_tokens=gen.prompt_tokens,
        )
        if gen.stream:
            return await self._stream(request, gen, answer, behaviour)
        return await self._whole(request, gen, answer, behaviour)

    async def _stream(
        self, request: web.Request, gen: Generation, answer: Answer, behaviour: Behaviour
    ) -> web.StreamResponse:
        frames = self._flavour.frames(gen, answer)
        tokens = answer.tokens
        fault = behaviour.fault
        # With a fault every token sent goes through token(); without one the
        # last goes through finish(), which may merge it with the finish reason.
        shown = len(tokens) if fault is None else min(behaviour.fault_after, len(tokens))
        plain = shown if fault is not None else max(0, shown - 1)
        itl = behaviour.itl_s
        loop = asyncio.get_running_loop()
        started = loop.time()
        outcome: Outcome = "aborted"
        sent = 0
        response = web.StreamResponse(headers=SSE_HEADERS)
        self._ctx.board.stream_started()
        try:
            await response.prepare(request)
            if behaviour.ttft_s > 0:
                await asyncio.sleep(behaviour.ttft_s)
            self._ctx.metrics.first_token(loop.time() - started)
            for event in frames.head():
                await response.write(event)
            due = loop.time()
            for i in range(plain):
                if i and itl > 0:
                    due += itl
                    if (delay := due - loop.time()) > 0:
                        await asyncio.sleep(delay)
                await response.write(frames.token(tokens[i], i + 1))
                sent = i + 1
            if fault is None:
                if plain and itl > 0 and (delay := due + itl - loop.time()) > 0:
                    await asyncio.sleep(delay)
                sent = shown
                for event in frames.finish(tokens[-1] if tokens else None):
                    await response.write(event)
                await response.write_eof()
                outcome = "completed"
            elif fault == "fail":
                for event in frames.error(self._flavour.in_band_error(500)):
                    await response.write(event)
                await response.write_eof()
                outcome = "failed"
            else:
                if fault == "stall":
                    await self._closing.wait()
                _cut(request)
                outcome = "cut"
        except ConnectionError:
            pass  # the client went away while we wrote: counted as aborted
        finally:
            self._finished(outcome, answer, sent, loop.time() - started)
        return response

    async def _whole(
        self, request: web.Request, gen: Generation, answer: Answer, behaviour: Behaviour
    ) -> web.StreamResponse:
        fault = behaviour.fault
        shown = len(answer.tokens) if fault is None else min(behaviour.fault_after, len(answer.tokens))
        loop = asyncio.get_running_loop()
        started = loop.time()
        outcome: Outcome = "aborted"
        self._ctx.board.stream_started()
        try:
            delay = behaviour.ttft_s + behaviour.itl_s * max(0, shown - 1)
            if delay > 0:
                await asyncio.sleep(delay)
            self._ctx.metrics.first_token(behaviour.ttft_s)
            if fault is None:
                response: web.StreamResponse = json_response(self._flavour.body(gen, answer))
                outcome = "completed"
            elif fault == "fail":
                outcome = "failed"
                raise SimError(500, self._flavour.in_band_error(500), injected=True)
            else:
                if fault == "stall":
                    await self._closing.wait()
                _cut(request)
                outcome = "cut"
                response = web.Response()  # never sent: the connection is gone
        finally:
            self._finished(outcome, answer, shown, loop.time() - started)
        return response

    def _finished(self, outcome: Outcome, answer: Answer, sent: int, elapsed_s: float) -> None:
        self._ctx.board.stream_ended(outcome)
        reason = "abort"
        if outcome == "completed":
            reason = "length" if answer.finish == "length" else "stop"
        self._ctx.metrics.finished_request(reason, answer.prompt_tokens, sent, elapsed_s)


def _cut(request: web.Request) -> None:
    """Drop the connection at once: no terminator, no final chunk of the body."""
    transport = request.transport
    if transport is not None:
        transport.abort()
