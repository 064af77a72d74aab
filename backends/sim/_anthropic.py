"""Anthropic's Messages API (reference §4.3): ``POST /v1/messages``.

Headers ``x-api-key`` (or ``Authorization: Bearer``, which current SDKs
send) and ``anthropic-version`` (400 without it). Events, each
named after its ``type``: ``message_start`` (usage with ``input_tokens``),
``content_block_start``, ``ping``, one ``content_block_delta`` per token,
``content_block_stop``, ``message_delta`` (``stop_reason`` ``end_turn`` |
``max_tokens`` | ``stop_sequence``, cumulative ``usage.output_tokens``),
``message_stop``. The ``fail`` fault sends ``event: error`` with an
``overloaded_error``. Errors: ``{"type":"error","error":{"type","message"}}``.
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

from aiohttp import web

from backends.sim._answers import Answer, content_text, estimate_prompt_tokens, token_json
from backends.sim._flavour import (
    Admission,
    Endpoint,
    Flavour,
    Frames,
    Generation,
    SimError,
    bearer_token,
    body_object,
    chat_texts,
    json_response,
    key_matches,
    opt_int,
    require,
    required_str,
    stop_list,
)
from backends.sim._sse import TEXT, Template, dumps, named_event

_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "Not found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: ("rate_limit_error", "Number of requests has exceeded your per-minute rate limit."),
    500: ("api_error", "Internal server error"),
    529: ("overloaded_error", "Overloaded"),
}
_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "stop_sequence": "stop_sequence"}

PING = named_event(b"ping", b'{"type":"ping"}')
MESSAGE_STOP = named_event(b"message_stop", b'{"type":"message_stop"}')
BLOCK_STOP = named_event(b"content_block_stop", b'{"type":"content_block_stop","index":0}')
BLOCK_START = named_event(
    b"content_block_start",
    b'{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}',
)
_DELTA = Template(
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": TEXT}},
    event=b"content_block_delta",
)


def _usage(answer: Answer, output_tokens: int) -> dict[str, int]:
    return {
        "input_tokens": answer.prompt_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": output_tokens,
    }


class AnthropicFlavour(Flavour):
    """Anthropic Messages, streamed and not."""

    protocol: ClassVar[str] = "anthropic"

    def add_routes(self, app: web.Application, engine: Admission) -> None:
        app.router.add_post("/v1/messages", engine.handler("chat"), name="api:messages")
        app.router.add_get("/v1/models", self.models)

    def authorized(self, request: web.Request, api_key: str) -> bool:
        # The API takes x-api-key; current SDKs send the key as a Bearer token.
        given = request.headers.get("x-api-key")
        return key_matches(given if given is not None else bearer_token(request), api_key)

    def check_request(self, request: web.Request) -> None:
        if not request.headers.get("anthropic-version"):
            raise SimError(400, "anthropic-version: header is required")

    def error_object(self, error: SimError) -> dict[str, Any]:
        kind, message = _ERRORS.get(
            error.status,
            ("api_error" if error.status >= 500 else "invalid_request_error", f"Error {error.status}."),
        )
        return {"type": "error", "error": {"type": kind, "message": error.message or message}}

    def error_response(self, error: SimError) -> web.StreamResponse:
        headers = {"retry-after": str(self.ctx.config.retry_after_s)} if error.status == 429 else None
        return json_response(dumps(self.error_object(error)), error.status, headers)

    def model_not_found(self, model: str) -> SimError:
        return SimError(404, f"model: {model}")

    def in_band_error(self, status: int) -> str:
        return "Overloaded"

    def parse(self, endpoint: Endpoint, body: Any, request: web.Request) -> Generation:
        b = body_object(body)
        model = required_str(b, "model", "model: Field required")
        max_tokens = opt_int(b, "max_tokens")
        require(max_tokens is not None and max_tokens >= 1, "max_tokens: Field required (an integer >= 1)")
        texts, last_user = chat_texts(
            b,
            "messages: a non-empty list of user and assistant messages is required",
            roles=("user", "assistant"),
        )
        system = content_text(b.get("system"))
        count = len(texts)
        if system:
            texts.append(system)
            count += 1
        return Generation(
            endpoint=endpoint,
            model=model,
            stream=b.get("stream") is True,
            max_tokens=max_tokens,
            stop=stop_list(b.get("stop_sequences"), "stop_sequences"),
            prompt_tokens=estimate_prompt_tokens(texts, count),
            digest_text=last_user,
        )

    def frames(self, gen: Generation, answer: Answer) -> Frames:
        return _AnthropicFrames(gen, answer)

    def body(self, gen: Generation, answer: Answer) -> bytes:
        return dumps(
            {
                "id": _message_id(),
                "type": "message",
                "role": "assistant",
                "model": gen.model,
                "content": [{"type": "text", "text": answer.text}],
                "stop_reason": _STOP_REASONS[answer.finish],
                "stop_sequence": answer.stop_sequence,
                "usage": _usage(answer, answer.completion_tokens),
            }
        )

    async def models(self, request: web.Request) -> web.StreamResponse:
        data = [
            {"type": "model", "id": m, "display_name": m, "created_at": "2025-01-01T00:00:00Z"}
            for m in self.ctx.config.models
        ]
        return json_response(
            dumps({"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[-1]["id"]})
        )


def _message_id() -> str:
    return "msg_" + uuid.uuid4().hex[:24]


class _AnthropicFrames(Frames):
    def __init__(self, gen: Generation, answer: Answer) -> None:
        self._gen = gen
        self._answer = answer

    def head(self) -> list[bytes]:
        start = {
            "type": "message_start",
            "message": {
                "id": _message_id(),
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": self._gen.model,
                "stop_reason": None,
                "stop_sequence": None,
                "usage": _usage(self._answer, 1),
            },
        }
        return [named_event(b"message_start", dumps(start)), BLOCK_START, PING]

    def token(self, text: str, sent: int) -> bytes:
        return _DELTA.fill(token_json(text))

    def finish(self, last: str | None) -> list[bytes]:
        answer = self._answer
        events = [] if last is None else [self.token(last, answer.completion_tokens)]
        delta = {
            "type": "message_delta",
            "delta": {"stop_reason": _STOP_REASONS[answer.finish], "stop_sequence": answer.stop_sequence},
            "usage": {"output_tokens": answer.completion_tokens},
        }
        events += [BLOCK_STOP, named_event(b"message_delta", dumps(delta)), MESSAGE_STOP]
        return events

    def error(self, message: str) -> list[bytes]:
        return [
            named_event(
                b"error", dumps({"type": "error", "error": {"type": "overloaded_error", "message": message}})
            )
        ]
