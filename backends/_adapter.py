"""What the HTTP adapters share beyond the transport: the base class that owns
the ``HttpClient`` and keeps ``health`` from raising, the chat-only base for
providers without a completions or embeddings API, and the mapping of
``Sampling`` onto each protocol's field names.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncGenerator, Iterator, Mapping, Sequence
from typing import Any

import orjson
from yarl import URL

from backends._http import HttpClient
from backends.base import Backend, ProviderSettings
from router.domain import ChatRequest, Chunk, CompletionRequest, Embeddings, Health, Message, Sampling, Usage
from router.errors import FailedPrecondition, UpstreamError
from router.native import SseDecoder

PROBE_READ_S = 5.0
"""A health probe may take the connect timeout plus this long."""


def sampling_fields(sampling: Sampling, names: Mapping[str, str]) -> dict[str, Any]:
    """The set ``Sampling`` fields under their wire names; a field missing from
    ``names`` is one the protocol does not support, and is dropped."""
    values: dict[str, Any] = {
        "max_tokens": sampling.max_tokens,
        "temperature": sampling.temperature,
        "top_p": sampling.top_p,
        "stop": list(sampling.stop) if sampling.stop else None,
        "seed": sampling.seed,
    }
    return {wire: values[field] for field, wire in names.items() if values[field] is not None}


def endpoint(base_url: str, version: str, path: str) -> str:
    """``{base_url}/{path}``, where a base URL without a path (an SDK-style origin,
    ``https://api.anthropic.com``) gets the API's ``version`` prefix first."""
    base = base_url.rstrip("/")
    if URL(base).path in ("", "/"):
        base += "/" + version
    return f"{base}/{path}"


class JsonEventDecoder:
    """Base of the ``StreamDecoder``s for named-event streams whose data is one
    JSON object with a ``type`` (Anthropic, Cohere): ``events`` frames them with
    the native ``SseDecoder`` and parses only the event types in ``wanted``
    (unnamed events are parsed too); subclasses write ``feed`` over it."""

    __slots__ = ("_sse", "_wanted", "done", "finish_reason", "model", "usage")

    def __init__(self, wanted: frozenset[str]) -> None:
        self._sse = SseDecoder()
        self._wanted = wanted
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.model: str | None = None
        self.done = False

    @property
    def buffered(self) -> int:
        return self._sse.buffered

    def events(self, data: bytes) -> Iterator[tuple[str, dict[str, Any], bytes]]:
        """``(type, event, payload)`` of each wanted event ``data`` completes, until ``done``."""
        for name, payload in self._sse.feed(data):
            if self.done:
                return
            if name and name not in self._wanted:
                continue  # pings, and the events this protocol's text and usage don't need
            event = orjson.loads(payload)
            if not isinstance(event, dict):
                raise ValueError(f"event {name or '(unnamed)'} is not a JSON object")
            kind = event.get("type")
            yield (kind if isinstance(kind, str) else name), event, payload


class HttpBackend(Backend):
    """A ``Backend`` over an ``HttpClient``; subclasses write ``_probe``."""

    def __init__(self, name: str, settings: ProviderSettings, http: HttpClient) -> None:
        super().__init__(name, settings)
        self._http = http

    @property
    def probe_timeout_s(self) -> float:
        return self.settings.connect_timeout_s + PROBE_READ_S

    @abc.abstractmethod
    async def _probe(self) -> Health:
        """Probe the upstream; may raise ``UpstreamError``."""

    async def health(self) -> Health:
        try:
            return await self._probe()
        except UpstreamError as exc:  # its message is redacted and names the provider
            return Health(ok=False, detail=exc.message)
        except Exception as exc:  # health never raises; the type alone is safe to show
            return Health(ok=False, detail=f'probing provider "{self.name}" failed: {type(exc).__name__}')

    async def aclose(self) -> None:
        await self._http.aclose()


class ChatOnlyBackend(HttpBackend):
    """A provider with only a chat API: a completion is a one-message chat; no
    embeddings; health is a TCP connect to the API host (any real call costs money)."""

    def stream_completion(
        self, model: str, request: CompletionRequest, *, timeout_s: float | None = None
    ) -> AsyncGenerator[Chunk, None]:
        chat = ChatRequest(
            route=request.route,
            messages=(Message("user", request.prompt),),
            sampling=request.sampling,
            tags=request.tags,
            request_id=request.request_id,
        )
        return self.stream_chat(model, chat, timeout_s=timeout_s)

    async def embed(self, model: str, inputs: Sequence[str], *, timeout_s: float | None = None) -> Embeddings:
        raise FailedPrecondition(
            f'provider "{self.name}" ({self.settings.kind}) has no embeddings API: '
            "route embeddings to an openai, azure or vllm provider"
        )

    async def _probe(self) -> Health:
        await self._http.probe_tcp(timeout_s=self.probe_timeout_s)
        return Health(ok=True, detail=f"TCP connect to {self._http.origin} succeeded")
