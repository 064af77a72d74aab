"""The OpenAI family: OpenAI itself here; vLLM (``_vllm``) and Azure (``_azure``)
are subclasses that override the hooks below, never the flow.

Framing follows reference §4.1: ``data: `` + compact JSON + blank line, the
same ``id``/``created`` on every chunk, a role chunk, one chunk per token, a
finish chunk with an empty delta, ``"usage":null`` on every chunk, the usage
chunk (``choices: []``) only with ``stream_options.include_usage``, then
``data: [DONE]``.

Hooks (what a dialect may override): ``envelope``, ``choice``, ``usage``,
``whole``, ``head_events``, ``final_has_text``, ``embeddings_body``,
``usage_options``, ``model_of``, ``check_lengths``, error shapes, auth and
routes.
"""

from __future__ import annotations

import base64
import struct
import time
import uuid
from typing import Any, ClassVar, Literal

import orjson
from aiohttp import web

from backends.sim._answers import (
    Answer,
    embedding,
    estimate_prompt_tokens,
    token_json,
)
from backends.sim._flavour import (
    BODY_KEY,
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
from backends.sim._sse import DONE, TEXT, USAGE, Template, data_event, dumps

ChoiceKind = Literal["role", "token", "final"]


class _Omit:
    """Marks a field left out of a chunk (not even ``null``)."""


OMIT: Any = _Omit()

COMPLETIONS_DEFAULT_MAX_TOKENS = 16
"""OpenAI's and vLLM's default ``max_tokens`` for /v1/completions."""

_OBJECTS: dict[Endpoint, tuple[str, str, str]] = {
    # endpoint: (id prefix, chunk object, whole-answer object)
    "chat": ("chatcmpl-", "chat.completion.chunk", "chat.completion"),
    "completion": ("cmpl-", "text_completion", "text_completion"),
}

_OPENAI_ERRORS: dict[int, tuple[str, str | None, str]] = {
    # status: (type, code, message)
    400: ("invalid_request_error", None, "Invalid request."),
    401: (
        "invalid_request_error",
        "invalid_api_key",
        "Incorrect API key provided. You can find your API key at https://platform.openai.com/account/api-keys.",
    ),
    403: ("invalid_request_error", "unsupported_country_region_territory", "Forbidden."),
    404: (
        "invalid_request_error",
        "model_not_found",
        "The model does not exist or you do not have access to it.",
    ),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests. Please try again in 1s."),
    500: ("server_error", None, "The server had an error while processing your request. Sorry about that!"),
    503: ("server_error", None, "The engine is currently overloaded, please try again later."),
}


class Ids:
    """What every chunk of one answer repeats."""

    __slots__ = ("created", "id", "model", "object")

    def __init__(self, id_: str, obj: str, created: int, model: str) -> None:
        self.id = id_
        self.object = obj
        self.created = created
        self.model = model


class OpenAIFlavour(Flavour):
    """OpenAI's Chat Completions, Completions and Embeddings under ``/v1``."""

    protocol: ClassVar[str] = "openai"
    url_path: ClassVar[str] = "/v1"
    sort_keys: ClassVar[bool] = False
    final_has_text: ClassVar[bool] = False
    """True where the last token rides in the finish chunk (vLLM)."""
    system_fingerprint: ClassVar[str | None] = "fp_meshgatesim"
    _engine: Admission

    # ----- routes, auth, errors -------------------------------------------------

    def add_routes(self, app: web.Application, engine: Admission) -> None:
        self._engine = engine
        app.router.add_post("/v1/chat/completions", engine.handler("chat"), name="api:chat")
        app.router.add_post("/v1/completions", engine.handler("completion"), name="api:completion")
        app.router.add_post("/v1/embeddings", self.embeddings, name="api:embeddings")
        app.router.add_get("/v1/models", self.models)

    def authorized(self, request: web.Request, api_key: str) -> bool:
        return key_matches(bearer_token(request), api_key)

    def error_object(self, error: SimError) -> dict[str, Any]:
        """The JSON of an error, in the body and in an in-band event."""
        kind, code, message = _OPENAI_ERRORS.get(
            error.status,
            (
                "server_error" if error.status >= 500 else "invalid_request_error",
                None,
                f"Error {error.status}.",
            ),
        )
        return {
            "error": {
                "message": error.message or message,
                "type": kind,
                "param": error.param,
                "code": error.code or code,
            }
        }

    def error_headers(self, error: SimError) -> dict[str, str]:
        if error.status == 429:
            return {"retry-after": str(self.ctx.config.retry_after_s), "x-ratelimit-remaining-requests": "0"}
        return {}

    def error_response(self, error: SimError) -> web.StreamResponse:
        return json_response(
            dumps(self.error_object(error), sort_keys=self.sort_keys), error.status, self.error_headers(error)
        )

    def error_event(self, error: SimError) -> list[bytes]:
        """An in-band error: the SDKs raise when a data event has an ``error`` key."""
        return [data_event(dumps(self.error_object(error), sort_keys=self.sort_keys))]

    def model_not_found(self, model: str) -> SimError:
        return SimError(
            404,
            f"The model `{model}` does not exist or you do not have access to it.",
            code="model_not_found",
        )

    # ----- parsing ----------------------------------------------------------------

    def model_of(self, body: dict[str, Any], request: web.Request) -> str:
        return required_str(body, "model", "you must provide a model parameter")

    def usage_options(self, options: dict[str, Any] | None) -> tuple[bool, bool]:
        """``(include_usage, continuous_usage)`` from ``stream_options``."""
        if options is None:
            return False, False
        return bool(options.get("include_usage", False)), False

    def check_lengths(self, prompt_tokens: int, max_tokens: int | None) -> None:
        """Refuse prompts the model could not take (vLLM only)."""

    def parse(self, endpoint: Endpoint, body: Any, request: web.Request) -> Generation:
        b = body_object(body)
        model = self.model_of(b, request)
        stream = b.get("stream") is True
        options = b.get("stream_options")
        if options is not None:
            require(isinstance(options, dict), "stream_options must be an object", "stream_options")
            require(
                stream,
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                "stream_options",
            )
        include_usage, continuous = self.usage_options(options)
        if endpoint == "chat":
            texts, digest_text = chat_texts(b, "messages must be a non-empty list of messages with roles")
            prompt_tokens = estimate_prompt_tokens(texts, len(texts))
            max_tokens = opt_int(b, "max_completion_tokens", "max_tokens")
        else:
            digest_text, prompt_tokens = _prompt(b.get("prompt"))
            max_tokens = opt_int(b, "max_tokens")
            if max_tokens is None:
                max_tokens = COMPLETIONS_DEFAULT_MAX_TOKENS
        self.check_lengths(prompt_tokens, max_tokens)
        return Generation(
            endpoint=endpoint,
            model=model,
            stream=stream,
            max_tokens=max_tokens,
            stop=stop_list(b.get("stop"), "stop"),
            prompt_tokens=prompt_tokens,
            digest_text=digest_text,
            include_usage=include_usage,
            continuous_usage=continuous,
            extra={"request_id": b.get("request_id")},
        )

    # ----- chunk shapes -----------------------------------------------------------

    def ids(self, gen: Generation, *, whole: bool = False) -> Ids:
        """Id, object name, creation time and model of one answer."""
        prefix, chunk_object, whole_object = _OBJECTS[gen.endpoint]
        return Ids(
            prefix + self.response_id(gen),
            whole_object if whole else chunk_object,
            int(time.time()),
            gen.model,
        )

    def response_id(self, gen: Generation) -> str:
        return uuid.uuid4().hex

    def envelope(
        self, ids: Ids, choices: list[Any], *, usage: Any = OMIT, first: bool = False
    ) -> dict[str, Any]:
        """A chunk around ``choices``; ``usage`` OMIT = no usage to report."""
        return {
            "id": ids.id,
            "object": ids.object,
            "created": ids.created,
            "model": ids.model,
            "system_fingerprint": self.system_fingerprint,
            "choices": choices,
            "usage": None if usage is OMIT else usage,
        }

    def choice(
        self,
        endpoint: Endpoint,
        kind: ChoiceKind,
        text: Any,
        finish: str | None = None,
        stop_reason: str | None = None,
    ) -> dict[str, Any] | None:
        """One choice of a chunk; ``None`` where the endpoint has no such chunk."""
        if endpoint == "chat":
            if kind == "role":
                return {
                    "index": 0,
                    "delta": {"role": "assistant", "content": "", "refusal": None},
                    "logprobs": None,
                    "finish_reason": None,
                }
            if kind == "token":
                return {"index": 0, "delta": {"content": text}, "logprobs": None, "finish_reason": None}
            return {"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish}
        if kind == "role":
            return None
        if kind == "token":
            return {"text": text, "index": 0, "logprobs": None, "finish_reason": None}
        return {"text": "", "index": 0, "logprobs": None, "finish_reason": finish}

    def usage(self, prompt: int, completion: int, *, whole: bool = False) -> dict[str, Any]:
        """The usage object, in a stream's usage chunk or a whole answer."""
        return {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        }

    def head_events(self, ids: Ids) -> list[bytes]:
        """Events before the role chunk (Azure's prompt filter results)."""
        return []

    def finish_reason(self, answer: Answer) -> str:
        return "length" if answer.finish == "length" else "stop"

    def frames(self, gen: Generation, answer: Answer) -> Frames:
        return OpenAIFrames(self, gen, answer)

    def whole(self, gen: Generation, ids: Ids, answer: Answer) -> dict[str, Any]:
        """A complete (non-streamed) answer."""
        finish = self.finish_reason(answer)
        if gen.endpoint == "chat":
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": answer.text, "refusal": None, "annotations": []},
                "logprobs": None,
                "finish_reason": finish,
            }
        else:
            choice = {"text": answer.text, "index": 0, "logprobs": None, "finish_reason": finish}
        return {
            "id": ids.id,
            "object": ids.object,
            "created": ids.created,
            "model": ids.model,
            "choices": [choice],
            "usage": self.usage(answer.prompt_tokens, answer.completion_tokens, whole=True),
            "system_fingerprint": self.system_fingerprint,
        }

    def body(self, gen: Generation, answer: Answer) -> bytes:
        ids = self.ids(gen, whole=True)
        return dumps(self.whole(gen, ids, answer), sort_keys=self.sort_keys)

    def in_band_error(self, status: int) -> str:
        return "The server had an error while processing your request (simulated fail fault)."

    # ----- other endpoints ---------------------------------------------------------

    def embeddings_body(self, model: str, vectors: list[Any], prompt_tokens: int) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)],
            "model": model,
            "usage": {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens},
        }

    async def embeddings(self, request: web.Request) -> web.StreamResponse:
        """``POST .../embeddings``: one unit vector per input, float or base64."""
        b = body_object(request[BODY_KEY])
        model = self.model_of(b, request)
        raw = b.get("input")
        if isinstance(raw, str):
            inputs: list[str] = [raw]
        elif isinstance(raw, list) and raw and all(isinstance(x, str) for x in raw):
            inputs = list(raw)
        elif isinstance(raw, list) and raw and all(isinstance(x, int) for x in raw):
            inputs = [" ".join(map(str, raw))]
        elif isinstance(raw, list) and raw and all(isinstance(x, list) for x in raw):
            inputs = [" ".join(map(str, x)) for x in raw]
        else:
            raise SimError(
                400, "input must be a string, a list of strings or a list of token lists", param="input"
            )
        encoding = b.get("encoding_format") or "float"
        require(
            encoding in ("float", "base64"), "encoding_format must be 'float' or 'base64'", "encoding_format"
        )
        dim = self.ctx.config.embedding_dim
        wanted = opt_int(b, "dimensions")
        if wanted is not None:
            require(1 <= wanted <= dim, f"dimensions must be between 1 and {dim}", "dimensions")
            dim = wanted
        self._engine.admit(model)
        full = self.ctx.config.embedding_dim
        vectors: list[Any] = []
        for text in inputs:
            vector = embedding(text, full)[:dim]
            if encoding == "base64":
                vectors.append(base64.b64encode(struct.pack(f"<{dim}f", *vector)).decode())
            else:
                vectors.append(vector)
        prompt_tokens = estimate_prompt_tokens(inputs, len(inputs))
        return json_response(
            dumps(self.embeddings_body(model, vectors, prompt_tokens), sort_keys=self.sort_keys)
        )

    def model_card(self, model: str, created: int) -> dict[str, Any]:
        return {"id": model, "object": "model", "created": created, "owned_by": "meshgate-sim"}

    async def models(self, request: web.Request) -> web.StreamResponse:
        """``GET /v1/models``: the configured models."""
        created = int(time.time())
        return json_response(
            orjson.dumps(
                {"object": "list", "data": [self.model_card(m, created) for m in self.ctx.config.models]}
            )
        )


def _prompt(prompt: object) -> tuple[str, int]:
    """A completion prompt's text (for the digest) and token estimate."""
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if isinstance(prompt, str):
        return prompt, estimate_prompt_tokens((prompt,), 1)
    if (
        isinstance(prompt, list)
        and prompt
        and all(isinstance(x, int) and not isinstance(x, bool) for x in prompt)
    ):
        return " ".join(map(str, prompt)), len(prompt)
    raise SimError(
        400,
        "prompt must be a string, a list of one string, or a list of token ids "
        "(the simulator answers one prompt per request)",
        param="prompt",
    )


class OpenAIFrames(Frames):
    """One streamed answer in the OpenAI family, shaped by its flavour's hooks."""

    def __init__(self, fl: OpenAIFlavour, gen: Generation, answer: Answer) -> None:
        self._fl = fl
        self._gen = gen
        self._answer = answer
        self._ids = fl.ids(gen)
        token_choice = fl.choice(gen.endpoint, "token", TEXT)
        if gen.continuous_usage:
            self._template = Template(
                fl.envelope(self._ids, [token_choice], usage=USAGE), (TEXT, USAGE), sort_keys=fl.sort_keys
            )
        else:
            self._template = Template(fl.envelope(self._ids, [token_choice]), sort_keys=fl.sort_keys)

    def _running_usage(self, completion: int) -> Any:
        if self._gen.continuous_usage:
            return self._fl.usage(self._answer.prompt_tokens, completion)
        return OMIT

    def _chunk(self, choices: list[Any], usage: Any, *, first: bool = False) -> bytes:
        return data_event(
            dumps(
                self._fl.envelope(self._ids, choices, usage=usage, first=first), sort_keys=self._fl.sort_keys
            )
        )

    def head(self) -> list[bytes]:
        events = self._fl.head_events(self._ids)
        role = self._fl.choice(self._gen.endpoint, "role", "")
        if role is not None:
            events.append(self._chunk([role], self._running_usage(0), first=True))
        return events

    def token(self, text: str, sent: int) -> bytes:
        if self._gen.continuous_usage:
            usage = dumps(self._fl.usage(self._answer.prompt_tokens, sent))
            return self._template.fill(token_json(text), usage)
        return self._template.fill(token_json(text))

    def finish(self, last: str | None) -> list[bytes]:
        fl, gen, answer = self._fl, self._gen, self._answer
        n = answer.completion_tokens
        reason = fl.finish_reason(answer)
        events: list[bytes] = []
        if fl.final_has_text:
            final = fl.choice(gen.endpoint, "final", last or "", reason, answer.stop_sequence)
        else:
            if last is not None:
                events.append(self.token(last, n))
            final = fl.choice(gen.endpoint, "final", None, reason, answer.stop_sequence)
        events.append(self._chunk([final], self._running_usage(n)))
        if gen.include_usage:
            events.append(self._chunk([], fl.usage(answer.prompt_tokens, n)))
        events.append(DONE)
        return events

    def error(self, message: str) -> list[bytes]:
        return self._fl.error_event(SimError(500, message))
