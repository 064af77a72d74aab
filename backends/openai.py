"""The OpenAI-compatible family: OpenAI, vLLM, Azure OpenAI and any server that
speaks OpenAI's Chat Completions (wire-protocols.md §1, §4.1, §4.5).

=========  ==================================================  ==============================
kind       URL (``base`` = settings.base_url)                   credential
=========  ==================================================  ==============================
openai     ``{base}/chat/completions``, ``/completions``,      ``Authorization: Bearer``
           ``/embeddings``; health ``GET {base}/models``
vllm       same paths; health ``GET {root}/health`` and load   ``Authorization: Bearer`` when
           from ``GET {root}/metrics``                         a key is set
azure      ``{base}/openai/deployments/{model}/{path}``        ``api-key``
           ``?api-version=…`` (model = deployment); health
           ``GET {base}/openai/models?api-version=…`` (404 = ok)
=========  ==================================================  ==============================

A base URL that is a bare origin (``http://10.0.0.7:8000``) gets ``/v1``
added, for openai and vllm. ``root`` is the base URL without a trailing
``/v1`` (vLLM serves ``/health`` and ``/metrics`` beside ``/v1``). Every
streamed request sends ``stream: true`` and ``stream_options:
{"include_usage": true}`` so the final chunk has usage.
Roles: ``developer`` is sent as ``system`` to vLLM and Azure (whose chat
templates and API versions may not know it). Length limit: OpenAI's chat takes
``max_completion_tokens``; vLLM, Azure and every completions endpoint take
``max_tokens``. Azure's first chunk (``"choices":[]``, prompt filter results)
and ``content_filter`` finish are handled by the decoder; vLLM's ``abort``
finish is a broken stream.
"""

from __future__ import annotations

import math
from collections.abc import AsyncGenerator, Sequence
from typing import Any

from backends._adapter import HttpBackend, endpoint, sampling_fields
from backends._http import HttpClient, ProviderFault, fault_from_error_body
from backends.base import ProviderSettings
from router.domain import (
    BackendLoad,
    ChatRequest,
    Chunk,
    CompletionRequest,
    Embeddings,
    Health,
    Usage,
)
from router.errors import UpstreamError, UpstreamModelNotFound, UpstreamStreamBroken, UpstreamUnavailable
from router.native import OpenAIStreamDecoder

__all__ = ["AZURE_API_VERSION", "KINDS", "OpenAIBackend", "OpenAIChunkDecoder", "parse_vllm_load"]

KINDS: tuple[str, ...] = ("openai", "vllm", "azure")
AZURE_API_VERSION = "2024-10-21"
"""Azure's ``api-version`` when the config gives none: the latest GA data-plane version."""

_FINISH: dict[str, str] = {
    "stop": "stop",
    "length": "length",
    "content_filter": "content_filter",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
}
_SAMPLING = {"max_tokens": "max_tokens", "temperature": "temperature", "top_p": "top_p", "stop": "stop"}
_SAMPLING_SEED = {**_SAMPLING, "seed": "seed"}
_OPENAI_CHAT_SAMPLING = {**_SAMPLING_SEED, "max_tokens": "max_completion_tokens"}
_STREAM = {"stream": True, "stream_options": {"include_usage": True}}


class OpenAIChunkDecoder:
    """``StreamDecoder`` over the native ``OpenAIStreamDecoder`` (chat and completions)."""

    __slots__ = ("_native", "done", "finish_reason", "model", "usage")

    def __init__(self) -> None:
        self._native = OpenAIStreamDecoder()
        self.finish_reason: str | None = None
        self.usage: Usage | None = None
        self.model: str | None = None
        self.done = False

    @property
    def buffered(self) -> int:
        return self._native.buffered

    def feed(self, data: bytes) -> str:
        text, finish, usage, model, done, error = self._native.feed(data)
        if error is not None:
            raise fault_from_error_body(error)
        if finish is not None:
            if finish == "abort":  # vLLM aborted the request (preempted, engine shutting down)
                raise ProviderFault('aborted the request (finish_reason "abort")', cls=UpstreamStreamBroken)
            self.finish_reason = _FINISH.get(finish, "stop")
        if usage is not None:
            self.usage = Usage(
                prompt_tokens=usage[0], completion_tokens=usage[1], cached_prompt_tokens=usage[2]
            )
        if model is not None:
            self.model = model
        self.done = done
        return text


class OpenAIBackend(HttpBackend):
    """An OpenAI-compatible upstream; ``settings.kind`` picks the flavour (module doc)."""

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        if settings.kind not in KINDS:
            raise ValueError(f"OpenAIBackend serves kinds {', '.join(KINDS)}, not {settings.kind!r}")
        azure = settings.kind == "azure"
        http = HttpClient(
            name,
            settings,
            credential_header="api-key" if azure else "Authorization",
            credential_prefix="" if azure else "Bearer ",
        )
        super().__init__(name, settings, http)
        self._base = settings.base_url.rstrip("/")
        self._api_version = settings.api_version or AZURE_API_VERSION
        self._system_for_developer = settings.kind in ("vllm", "azure")

    def _url(self, model: str, path: str) -> str:
        if self.settings.kind == "azure":
            return f"{self._base}/openai/deployments/{model}/{path}?api-version={self._api_version}"
        return endpoint(self._base, "v1", path)

    def stream_chat(
        self, model: str, request: ChatRequest, *, timeout_s: float | None = None
    ) -> AsyncGenerator[Chunk, None]:
        rename = self._system_for_developer
        messages = [
            {"role": "system" if rename and m.role == "developer" else m.role, "content": m.content}
            for m in request.messages
        ]
        names = _OPENAI_CHAT_SAMPLING if self.settings.kind == "openai" else _SAMPLING_SEED
        body = {"model": model, "messages": messages, **_STREAM, **sampling_fields(request.sampling, names)}
        url = self._url(model, "chat/completions")
        return self._http.stream(url, body, OpenAIChunkDecoder(), timeout_s=timeout_s)

    def stream_completion(
        self, model: str, request: CompletionRequest, *, timeout_s: float | None = None
    ) -> AsyncGenerator[Chunk, None]:
        body = {
            "model": model,
            "prompt": request.prompt,
            **_STREAM,
            **sampling_fields(request.sampling, _SAMPLING_SEED),
        }
        url = self._url(model, "completions")
        return self._http.stream(url, body, OpenAIChunkDecoder(), timeout_s=timeout_s)

    async def embed(self, model: str, inputs: Sequence[str], *, timeout_s: float | None = None) -> Embeddings:
        if not inputs:
            return Embeddings(vectors=[], usage=Usage(), model=model)
        body = {"model": model, "input": list(inputs), "encoding_format": "float"}
        doc = await self._http.call_json("POST", self._url(model, "embeddings"), body, timeout_s=timeout_s)
        return self._embeddings(doc, model, len(inputs))

    def _embeddings(self, doc: Any, model: str, count: int) -> Embeddings:
        data = doc.get("data") if isinstance(doc, dict) else None
        try:
            items = sorted(data, key=lambda item: int(item.get("index", 0))) if isinstance(data, list) else []
            vectors = [[float(x) for x in item["embedding"]] for item in items]
        except (AttributeError, KeyError, TypeError, ValueError):
            vectors = []
        if len(vectors) != count:
            raise UpstreamUnavailable(
                f'provider "{self.name}" answered {len(vectors)} embeddings for {count} inputs: '
                "check that the route's model is an embedding model",
                provider=self.name,
            )
        usage = doc.get("usage")
        prompt = usage.get("prompt_tokens") if isinstance(usage, dict) else None
        served = doc.get("model")
        return Embeddings(
            vectors=vectors,
            usage=Usage(prompt_tokens=prompt if isinstance(prompt, int) else 0),
            model=served if isinstance(served, str) and served else model,
        )

    # -- health ---------------------------------------------------------------------------------

    async def _probe(self) -> Health:
        timeout_s = self.probe_timeout_s
        if self.settings.kind == "azure":
            try:
                await self._http.probe(
                    f"{self._base}/openai/models?api-version={self._api_version}", timeout_s=timeout_s
                )
            except UpstreamModelNotFound:
                # Reached, credentials not refused; some Azure-compatible gateways
                # (and the simulator) serve no models list.
                return Health(ok=True, detail="reachable; GET /openai/models is not served (404)")
            return Health(ok=True, detail="GET /openai/models answered 200")
        if self.settings.kind == "openai":
            await self._http.probe(endpoint(self._base, "v1", "models"), timeout_s=timeout_s)
            return Health(ok=True, detail="GET /models answered 200")
        root = self._base.removesuffix("/v1")
        await self._http.probe(f"{root}/health", timeout_s=timeout_s)
        try:
            text = await self._http.probe(f"{root}/metrics", timeout_s=timeout_s)
        except UpstreamError as exc:
            return Health(ok=True, detail=f"healthy; load unknown: {exc.message}")
        return Health(ok=True, detail="GET /health answered 200", load=parse_vllm_load(text))


_RUNNING = "vllm:num_requests_running"
_WAITING = "vllm:num_requests_waiting"
_KV = "vllm:kv_cache_usage_perc"
_KV_OLD = "vllm:gpu_cache_usage_perc"  # deprecated by vLLM; read when the new name is absent


def parse_vllm_load(text: bytes | str) -> BackendLoad:
    """A vLLM host's load from its Prometheus ``/metrics`` text.

    Requests running and waiting are summed over every series (several engines
    or models behind one server); KV-cache usage is the fullest series, since
    the fullest engine is the one that preempts first.
    """
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    sums: dict[str, float] = {}
    peaks: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith("vllm:"):
            continue
        name, value = _sample(line)
        if value is None:
            continue
        if name in (_RUNNING, _WAITING):
            sums[name] = sums.get(name, 0.0) + value
        elif name in (_KV, _KV_OLD):
            peaks[name] = max(peaks.get(name, 0.0), value)
    kv = peaks.get(_KV, peaks.get(_KV_OLD, 0.0))
    return BackendLoad(
        running_requests=int(sums.get(_RUNNING, 0.0)),
        waiting_requests=int(sums.get(_WAITING, 0.0)),
        kv_cache_usage=min(1.0, max(0.0, kv)),
    )


def _sample(line: str) -> tuple[str, float | None]:
    """``name{labels} value [timestamp]`` → (name, value); label values may hold spaces."""
    brace = line.find("{")
    if brace >= 0:
        name, rest = line[:brace], line[line.rfind("}") + 1 :]
    else:
        name, _, rest = line.partition(" ")
    fields = rest.split()
    if not fields:
        return name, None
    try:
        value = float(fields[0])
    except ValueError:
        return name, None
    return name, value if math.isfinite(value) else None
