"""vLLM's OpenAI-compatible server (reference §1), as a dialect of the OpenAI family.

Differences from OpenAI, all from the reference: chunks carry
``reasoning_content``/``token_ids`` nulls, the role chunk carries
``prompt_token_ids``, the last token rides in the finish chunk with
``stop_reason``; usage objects are ``prompt, total, completion`` without
nulls; any ``stream_options`` turns usage on (``include_usage`` defaults to
true) and ``continuous_usage_stats`` puts usage on every chunk; ``[DONE]``
always ends the stream, also after an in-band error, which is written with
``json.dumps`` spacing. Errors are ``ErrorResponse`` (``code`` = the HTTP
status) except authentication, which answers ``{"error":"Unauthorized"}``
and guards only ``/v1``, ``/v2``, ``/inference`` and ``/cohere``.

Also served: ``/health``, ``/ping``, ``/load``, ``/version``, ``/metrics``
(and ``/metrics/``), ``/tokenize``, ``/detokenize``.
"""

from __future__ import annotations

import json
import time
import uuid
from http import HTTPStatus
from typing import Any, ClassVar

import orjson
from aiohttp import web

from backends.sim._answers import Answer, detokenize, tokenize
from backends.sim._flavour import (
    BODY_KEY,
    Admission,
    Endpoint,
    Generation,
    SimError,
    body_object,
    chat_texts,
    health_response,
    json_response,
    require,
    required_str,
)
from backends.sim._metrics import CONTENT_TYPE
from backends.sim._openai import OMIT, ChoiceKind, Ids, OpenAIFlavour
from backends.sim._sse import DONE, data_event

VLLM_VERSION = "0.11.0"
UNAUTHORIZED = b'{"error":"Unauthorized"}'


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"Error {status}"


def error_type(status: int) -> str:
    """vLLM's error ``type`` for a status: ``BadRequestError``, ``NotFoundError``..."""
    name = _phrase(status).replace(" ", "").replace("-", "")
    return name if name.endswith("Error") else name + "Error"


class VllmFlavour(OpenAIFlavour):
    """``vllm serve``: the OpenAI family plus vLLM's quirks and extra endpoints."""

    protocol: ClassVar[str] = "vllm"
    guarded_prefixes: ClassVar[tuple[str, ...]] = ("/v1", "/v2", "/inference", "/cohere")
    final_has_text: ClassVar[bool] = True
    system_fingerprint: ClassVar[str | None] = None

    def add_routes(self, app: web.Application, engine: Admission) -> None:
        super().add_routes(app, engine)
        router = app.router
        router.add_post("/tokenize", self.tokenize, name="api:tokenize")
        router.add_post("/detokenize", self.detokenize, name="api:detokenize")
        router.add_get("/version", self.version)
        router.add_get("/load", self.load)
        router.add_get("/metrics", self.metrics)
        router.add_get("/metrics/", self.metrics)
        router.add_route("*", "/ping", self.ping)

    # ----- auth and errors ----------------------------------------------------------

    def unauthorized(self) -> web.StreamResponse:
        return json_response(UNAUTHORIZED, 401)

    def error_object(self, error: SimError) -> dict[str, Any]:
        return {
            "error": {
                "message": error.message or _phrase(error.status),
                "type": error_type(error.status),
                "param": error.param,
                "code": error.status,
            }
        }

    def error_headers(self, error: SimError) -> dict[str, str]:
        return {"retry-after": str(self.ctx.config.retry_after_s)} if error.status == 429 else {}

    def error_event(self, error: SimError) -> list[bytes]:
        # vLLM builds this one with json.dumps: spaces after ':' and ','.
        return [data_event(json.dumps(self.error_object(error)).encode()), DONE]

    def model_not_found(self, model: str) -> SimError:
        return SimError(404, f"The model `{model}` does not exist.")

    # ----- parsing ----------------------------------------------------------------

    def model_of(self, body: dict[str, Any], request: web.Request) -> str:
        model = body.get("model")
        if model is None:
            return self.ctx.config.models[0]
        require(isinstance(model, str), "model must be a string", "model")
        assert isinstance(model, str)
        return model

    def usage_options(self, options: dict[str, Any] | None) -> tuple[bool, bool]:
        if options is None:
            return False, False
        include = bool(options.get("include_usage", True))
        return include, include and bool(options.get("continuous_usage_stats", False))

    def check_lengths(self, prompt_tokens: int, max_tokens: int | None) -> None:
        limit = self.ctx.config.max_model_len
        if prompt_tokens > limit:
            raise SimError(
                400,
                f"This model's maximum context length is {limit} tokens. However, your request "
                f"has {prompt_tokens} input tokens. Please reduce the length of the input messages.",
            )
        if max_tokens is not None and prompt_tokens + max_tokens > limit:
            raise SimError(
                400,
                f"This model's maximum context length is {limit} tokens. However, you requested "
                f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the messages, "
                f"{max_tokens} in the completion). Please reduce the length of the messages "
                "or completion.",
                param="max_tokens",
            )

    def response_id(self, gen: Generation) -> str:
        request_id = gen.extra.get("request_id")
        return request_id if isinstance(request_id, str) and request_id else super().response_id(gen)

    # ----- chunk shapes -----------------------------------------------------------

    def envelope(
        self, ids: Ids, choices: list[Any], *, usage: Any = OMIT, first: bool = False
    ) -> dict[str, Any]:
        chunk: dict[str, Any] = {
            "id": ids.id,
            "object": ids.object,
            "created": ids.created,
            "model": ids.model,
            "choices": choices,
        }
        if usage is not OMIT:
            chunk["usage"] = usage
        if first:
            chunk["prompt_token_ids"] = None
        return chunk

    def choice(
        self,
        endpoint: Endpoint,
        kind: ChoiceKind,
        text: Any,
        finish: str | None = None,
        stop_reason: str | None = None,
    ) -> dict[str, Any] | None:
        if endpoint == "chat":
            if kind == "role":
                return {
                    "index": 0,
                    "delta": {"role": "assistant", "content": "", "reasoning_content": None},
                    "logprobs": None,
                    "finish_reason": None,
                }
            if kind == "token":
                return {
                    "index": 0,
                    "delta": {"content": text, "reasoning_content": None},
                    "logprobs": None,
                    "finish_reason": None,
                    "token_ids": None,
                }
            return {
                "index": 0,
                "delta": {"content": text, "reasoning_content": None},
                "logprobs": None,
                "finish_reason": finish,
                "stop_reason": stop_reason,
                "token_ids": None,
            }
        if kind == "role":
            return None
        if kind == "token":
            return {"index": 0, "text": text, "logprobs": None, "finish_reason": None, "stop_reason": None}
        return {
            "index": 0,
            "text": text,
            "logprobs": None,
            "finish_reason": finish,
            "stop_reason": stop_reason,
        }

    def usage(self, prompt: int, completion: int, *, whole: bool = False) -> dict[str, Any]:
        usage: dict[str, Any] = {
            "prompt_tokens": prompt,
            "total_tokens": prompt + completion,
            "completion_tokens": completion,
        }
        if whole:
            usage["prompt_tokens_details"] = None
        return usage

    def whole(self, gen: Generation, ids: Ids, answer: Answer) -> dict[str, Any]:
        finish = self.finish_reason(answer)
        usage = self.usage(answer.prompt_tokens, answer.completion_tokens, whole=True)
        head: dict[str, Any] = {
            "id": ids.id,
            "object": ids.object,
            "created": ids.created,
            "model": ids.model,
        }
        if gen.endpoint == "chat":
            message: dict[str, Any] = {
                "role": "assistant",
                "content": answer.text,
                "refusal": None,
                "annotations": None,
                "audio": None,
                "function_call": None,
                "tool_calls": [],
                "reasoning_content": None,
            }
            return {
                **head,
                "choices": [
                    {
                        "index": 0,
                        "message": message,
                        "logprobs": None,
                        "finish_reason": finish,
                        "stop_reason": answer.stop_sequence,
                    }
                ],
                "service_tier": None,
                "system_fingerprint": None,
                "usage": usage,
                "prompt_logprobs": None,
                "kv_transfer_params": None,
            }
        return {
            **head,
            "choices": [
                {
                    "index": 0,
                    "text": answer.text,
                    "logprobs": None,
                    "finish_reason": finish,
                    "stop_reason": answer.stop_sequence,
                    "prompt_logprobs": None,
                }
            ],
            "usage": usage,
            "kv_transfer_params": None,
        }

    def in_band_error(self, status: int) -> str:
        return "The engine failed this request (simulated fail fault)."

    def embeddings_body(self, model: str, vectors: list[Any], prompt_tokens: int) -> dict[str, Any]:
        return {
            "id": "embd-" + uuid.uuid4().hex,
            "object": "list",
            "created": int(time.time()),
            "model": model,
            "data": [{"index": i, "object": "embedding", "embedding": v} for i, v in enumerate(vectors)],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "total_tokens": prompt_tokens,
                "completion_tokens": 0,
                "prompt_tokens_details": None,
            },
        }

    def model_card(self, model: str, created: int) -> dict[str, Any]:
        root = self.ctx.config.models[0]
        return {
            "id": model,
            "object": "model",
            "created": created,
            "owned_by": "vllm",
            "root": root,
            "parent": None,
            "max_model_len": self.ctx.config.max_model_len,
            "permission": [
                {
                    "id": "modelperm-meshgatesim",
                    "object": "model_permission",
                    "created": created,
                    "allow_create_engine": False,
                    "allow_sampling": True,
                    "allow_logprobs": True,
                    "allow_search_indices": False,
                    "allow_view": True,
                    "allow_fine_tuning": False,
                    "organization": "*",
                    "group": None,
                    "is_blocking": False,
                }
            ],
        }

    # ----- vLLM's own endpoints ---------------------------------------------------------

    def _check_model_field(self, body: dict[str, Any]) -> None:
        model = body.get("model")
        if model is not None and model not in self.ctx.config.models:
            raise self.model_not_found(str(model))

    async def tokenize(self, request: web.Request) -> web.StreamResponse:
        """``POST /tokenize``: the prompt or chat form; ``count`` equals the
        prompt tokens a generation request with the same input reports."""
        b = body_object(request[BODY_KEY])
        self._check_model_field(b)
        if "messages" in b:
            texts, _ = chat_texts(b, "messages must be a non-empty list of messages with roles")
        else:
            texts = [required_str(b, "prompt", "prompt must be a non-empty string (or send messages)")]
        ids = tokenize(texts)
        strs = None
        if b.get("return_token_strs"):
            strs = [w for text in texts for w in ("<s>", *text.split())]
        return json_response(
            orjson.dumps(
                {
                    "count": len(ids),
                    "max_model_len": self.ctx.config.max_model_len,
                    "tokens": ids,
                    "token_strs": strs,
                }
            )
        )

    async def detokenize(self, request: web.Request) -> web.StreamResponse:
        """``POST /detokenize``: ids back to words (see ``_answers.detokenize``)."""
        b = body_object(request[BODY_KEY])
        self._check_model_field(b)
        ids = b.get("tokens")
        if not isinstance(ids, list) or not all(isinstance(i, int) for i in ids):
            raise SimError(400, "tokens must be a list of integers", param="tokens")
        return json_response(orjson.dumps({"prompt": detokenize(ids)}))

    async def version(self, request: web.Request) -> web.StreamResponse:
        return json_response(orjson.dumps({"version": VLLM_VERSION}))

    async def load(self, request: web.Request) -> web.StreamResponse:
        return json_response(orjson.dumps({"server_load": self.ctx.board.active_streams}))

    async def ping(self, request: web.Request) -> web.StreamResponse:
        return health_response(self.ctx.config)

    async def metrics(self, request: web.Request) -> web.StreamResponse:
        config = self.ctx.config
        text = self.ctx.metrics.render(
            config.models[0],
            running=self.ctx.board.active_streams,
            waiting=config.waiting_requests,
            kv_cache_usage=config.kv_cache_usage,
        )
        return web.Response(body=text, headers={"Content-Type": CONTENT_TYPE})
