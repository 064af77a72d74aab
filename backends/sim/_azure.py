"""Azure OpenAI (reference §4.5), as a dialect of the OpenAI family.

Routes are ``/openai/deployments/{deployment}/chat/completions|completions|
embeddings?api-version=...``; the deployment name plays the model (the body's
``model`` is ignored). Auth is the ``api-key`` header (a Bearer token with
the same value is accepted too, standing in for Entra ID). A missing
``api-version`` is a 400. The stream starts with a chunk with ``choices: []``
and ``prompt_filter_results``; content chunks carry ``content_filter_results``;
keys are sorted, as Azure's service writes them. Errors are
``{"error":{"code","message"}}``; 429 adds ``retry-after`` and
``retry-after-ms``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from aiohttp import web

from backends.sim._flavour import (
    Admission,
    Endpoint,
    SimError,
    bearer_token,
    key_matches,
)
from backends.sim._openai import ChoiceKind, Ids, OpenAIFlavour
from backends.sim._sse import data_event, dumps

_SAFE = {"filtered": False, "severity": "safe"}
FILTERS: dict[str, Any] = {"hate": _SAFE, "self_harm": _SAFE, "sexual": _SAFE, "violence": _SAFE}

_AZURE_ERRORS: dict[int, tuple[str, str]] = {
    400: ("BadRequest", "The request is invalid."),
    401: (
        "401",
        "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a "
        "valid key for an active subscription and use a correct regional API endpoint for your resource.",
    ),
    403: ("403", "Forbidden."),
    404: (
        "DeploymentNotFound",
        "The API deployment for this resource does not exist. If you created the "
        "deployment within the last 5 minutes, please wait a moment and try again.",
    ),
    429: (
        "429",
        "Requests to the ChatCompletions_Create Operation under Azure OpenAI API have exceeded the rate "
        "limit of your current pricing tier. Please retry after 1 second.",
    ),
    500: ("InternalServerError", "The server had an error while processing your request."),
    503: (
        "ServiceUnavailable",
        "The service is temporarily unable to process your request. Please try again.",
    ),
}


class AzureFlavour(OpenAIFlavour):
    """Azure OpenAI's deployment routes."""

    protocol: ClassVar[str] = "azure"
    url_path: ClassVar[str] = ""
    guarded_prefixes: ClassVar[tuple[str, ...]] = ("/openai",)
    sort_keys: ClassVar[bool] = True

    def add_routes(self, app: web.Application, engine: Admission) -> None:
        self._engine = engine
        base = "/openai/deployments/{deployment}"
        app.router.add_post(base + "/chat/completions", engine.handler("chat"), name="api:chat")
        app.router.add_post(base + "/completions", engine.handler("completion"), name="api:completion")
        app.router.add_post(base + "/embeddings", self.embeddings, name="api:embeddings")

    def authorized(self, request: web.Request, api_key: str) -> bool:
        given = request.headers.get("api-key")
        return key_matches(given if given is not None else bearer_token(request), api_key)

    def check_request(self, request: web.Request) -> None:
        if not request.query.get("api-version"):
            raise SimError(
                400,
                "The api-version query parameter (?api-version=) is required for all requests.",
                code="MissingApiVersionParameter",
            )

    def error_object(self, error: SimError) -> dict[str, Any]:
        code, message = _AZURE_ERRORS.get(error.status, (str(error.status), f"Error {error.status}."))
        return {"error": {"code": error.code or code, "message": error.message or message}}

    def error_headers(self, error: SimError) -> dict[str, str]:
        if error.status == 429:
            seconds = self.ctx.config.retry_after_s
            return {"retry-after": str(seconds), "retry-after-ms": str(seconds * 1000)}
        return {}

    def model_not_found(self, model: str) -> SimError:
        return SimError(404)

    def model_of(self, body: dict[str, Any], request: web.Request) -> str:
        return request.match_info["deployment"]

    def choice(
        self,
        endpoint: Endpoint,
        kind: ChoiceKind,
        text: Any,
        finish: str | None = None,
        stop_reason: str | None = None,
    ) -> dict[str, Any] | None:
        choice = super().choice(endpoint, kind, text, finish, stop_reason)
        if choice is not None:
            choice["content_filter_results"] = FILTERS if kind == "token" else {}
        return choice

    def head_events(self, ids: Ids) -> list[bytes]:
        first = {
            "choices": [],
            "created": 0,
            "id": "",
            "model": "",
            "object": "",
            "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": FILTERS}],
        }
        return [data_event(dumps(first, sort_keys=True))]

    def whole(self, gen: Any, ids: Ids, answer: Any) -> dict[str, Any]:
        body = super().whole(gen, ids, answer)
        body["choices"][0]["content_filter_results"] = FILTERS
        body["prompt_filter_results"] = [{"prompt_index": 0, "content_filter_results": FILTERS}]
        return body
