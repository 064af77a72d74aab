"""Cohere's v2 chat (reference §4.4): ``POST /v2/chat``.

``Authorization: Bearer``; ``model`` required. Events, each named after its
``type``: ``message-start`` (the generation id), ``content-start``, one
``content-delta`` per token, ``content-end``, ``message-end`` with
``finish_reason`` (``COMPLETE`` | ``MAX_TOKENS`` | ``STOP_SEQUENCE``, and
``ERROR`` with ``error`` for the ``fail`` fault) and usage (``billed_units``
and ``tokens``). No ``[DONE]``: the stream ends after ``message-end``.
Errors: ``{"id","message"}``.
"""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

from aiohttp import web

from backends.sim._answers import Answer, estimate_prompt_tokens, token_json
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
    required_str,
    stop_list,
)
from backends.sim._sse import TEXT, Template, dumps, named_event

_MESSAGES: dict[int, str] = {
    400: "invalid request",
    401: "invalid api token",
    404: "not found",
    429: "You are past the per-minute request limit, please wait and try again later.",
    500: "internal server error, this has been reported to our developers",
    503: "service unavailable, please try again later",
}
_FINISH = {"stop": "COMPLETE", "length": "MAX_TOKENS", "stop_sequence": "STOP_SEQUENCE"}

CONTENT_START = named_event(
    b"content-start",
    b'{"type":"content-start","index":0,"delta":{"message":{"content":{"type":"text","text":""}}}}',
)
CONTENT_END = named_event(b"content-end", b'{"type":"content-end","index":0}')
_DELTA = Template(
    {"type": "content-delta", "index": 0, "delta": {"message": {"content": {"text": TEXT}}}},
    event=b"content-delta",
)


def _usage(answer: Answer, output_tokens: int) -> dict[str, Any]:
    counts = {"input_tokens": answer.prompt_tokens, "output_tokens": output_tokens}
    return {"billed_units": counts, "tokens": dict(counts)}


class CohereFlavour(Flavour):
    """Cohere v2 chat, streamed and not."""

    protocol: ClassVar[str] = "cohere"
    guarded_prefixes: ClassVar[tuple[str, ...]] = ("/v1", "/v2")

    def add_routes(self, app: web.Application, engine: Admission) -> None:
        app.router.add_post("/v2/chat", engine.handler("chat"), name="api:chat")
        app.router.add_get("/v1/models", self.models)

    def authorized(self, request: web.Request, api_key: str) -> bool:
        return key_matches(bearer_token(request), api_key)

    def error_response(self, error: SimError) -> web.StreamResponse:
        message = error.message or _MESSAGES.get(error.status, f"error {error.status}")
        headers = {"retry-after": str(self.ctx.config.retry_after_s)} if error.status == 429 else None
        return json_response(dumps({"id": str(uuid.uuid4()), "message": message}), error.status, headers)

    def model_not_found(self, model: str) -> SimError:
        return SimError(
            404,
            f"model '{model}' not found, make sure the correct model ID was used and that you "
            "have access to the model.",
        )

    def parse(self, endpoint: Endpoint, body: Any, request: web.Request) -> Generation:
        b = body_object(body)
        model = required_str(b, "model", "invalid request: model must be specified")
        texts, last_user = chat_texts(
            b, "invalid request: messages must be a non-empty list of messages with roles"
        )
        return Generation(
            endpoint=endpoint,
            model=model,
            stream=b.get("stream") is True,
            max_tokens=opt_int(b, "max_tokens"),
            stop=stop_list(b.get("stop_sequences"), "stop_sequences"),
            prompt_tokens=estimate_prompt_tokens(texts, len(texts)),
            digest_text=last_user,
        )

    def frames(self, gen: Generation, answer: Answer) -> Frames:
        return _CohereFrames(answer)

    def body(self, gen: Generation, answer: Answer) -> bytes:
        return dumps(
            {
                "id": str(uuid.uuid4()),
                "message": {"role": "assistant", "content": [{"type": "text", "text": answer.text}]},
                "finish_reason": _FINISH[answer.finish],
                "usage": _usage(answer, answer.completion_tokens),
            }
        )

    async def models(self, request: web.Request) -> web.StreamResponse:
        return json_response(
            dumps(
                {
                    "models": [
                        {"name": m, "endpoints": ["chat"], "finetuned": False} for m in self.ctx.config.models
                    ]
                }
            )
        )


class _CohereFrames(Frames):
    def __init__(self, answer: Answer) -> None:
        self._answer = answer

    def head(self) -> list[bytes]:
        start = {
            "id": str(uuid.uuid4()),
            "type": "message-start",
            "delta": {
                "message": {
                    "role": "assistant",
                    "content": [],
                    "tool_plan": "",
                    "tool_calls": [],
                    "citations": [],
                }
            },
        }
        return [named_event(b"message-start", dumps(start)), CONTENT_START]

    def token(self, text: str, sent: int) -> bytes:
        return _DELTA.fill(token_json(text))

    def finish(self, last: str | None) -> list[bytes]:
        answer = self._answer
        events = [] if last is None else [self.token(last, answer.completion_tokens)]
        end = {
            "type": "message-end",
            "delta": {
                "finish_reason": _FINISH[answer.finish],
                "usage": _usage(answer, answer.completion_tokens),
            },
        }
        events += [CONTENT_END, named_event(b"message-end", dumps(end))]
        return events

    def error(self, message: str) -> list[bytes]:
        end = {"type": "message-end", "delta": {"finish_reason": "ERROR", "error": message}}
        return [CONTENT_END, named_event(b"message-end", dumps(end))]
