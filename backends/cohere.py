"""Cohere's v2 chat (wire-protocols.md §4.4).

``POST {base_url}/chat`` (``base_url`` like ``https://api.cohere.com/v2``; a bare
origin, as Cohere's SDK takes it, gets ``/v2`` added) with ``Authorization: Bearer``.

===================  ==========================================================
request              messages as they are (``developer`` → ``system``);
                     ``top_p`` → ``p``, ``stop`` → ``stop_sequences``
text                 ``content-delta``: ``delta.message.content.text``
finish               ``message-end``'s ``delta.finish_reason``: COMPLETE,
                     STOP_SEQUENCE → stop; MAX_TOKENS → length; TOOL_CALL →
                     tool_calls; ERROR → UpstreamUnavailable; TIMEOUT →
                     UpstreamTimeout (with ``delta.error`` as the text)
usage                ``delta.usage.tokens`` (what the model processed), else
                     ``billed_units``
terminator           ``message-end``
===================  ==========================================================

Completions are a one-message chat; embeddings are out of scope (Cohere's
``/v2/embed`` is a different shape); health is a TCP connect (``ChatOnlyBackend``).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from backends._adapter import ChatOnlyBackend, JsonEventDecoder, endpoint, sampling_fields
from backends._http import HttpClient, ProviderFault
from backends.base import ProviderSettings
from router.domain import ChatRequest, Chunk, Usage
from router.errors import UpstreamTimeout, UpstreamUnavailable

__all__ = ["CohereBackend", "CohereDecoder"]

_FINISH: dict[str, str] = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "MAX_TOKENS": "length",
    "TOOL_CALL": "tool_calls",
}
_FAILED = {"ERROR": UpstreamUnavailable, "TIMEOUT": UpstreamTimeout}
_SAMPLING = {
    "max_tokens": "max_tokens",
    "temperature": "temperature",
    "top_p": "p",
    "stop": "stop_sequences",
    "seed": "seed",
}
_EVENTS = frozenset(("content-delta", "message-end"))


def _tokens(usage: Any) -> Usage | None:
    if not isinstance(usage, dict):
        return None
    for key in ("tokens", "billed_units"):
        counts = usage.get(key)
        if isinstance(counts, dict):
            prompt, completion = counts.get("input_tokens"), counts.get("output_tokens")
            return Usage(
                prompt_tokens=int(prompt) if isinstance(prompt, int | float) else 0,
                completion_tokens=int(completion) if isinstance(completion, int | float) else 0,
            )
    return None


class CohereDecoder(JsonEventDecoder):
    """``StreamDecoder`` for v2 chat streams."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(_EVENTS)

    def feed(self, data: bytes) -> str:
        parts: list[str] = []
        for kind, event, _ in self.events(data):
            delta = event.get("delta")
            if not isinstance(delta, dict):
                continue
            if kind == "content-delta":
                message = delta.get("message")
                content = message.get("content") if isinstance(message, dict) else None
                text = content.get("text") if isinstance(content, dict) else None
                if isinstance(text, str):
                    parts.append(text)
            elif kind == "message-end":
                self._on_end(delta)
        return "".join(parts)

    def _on_end(self, delta: dict[str, Any]) -> None:
        self.done = True
        self.usage = _tokens(delta.get("usage"))
        reason = delta.get("finish_reason")
        failed = _FAILED.get(reason) if isinstance(reason, str) else None
        if failed is not None:
            error = delta.get("error")
            detail = error if isinstance(error, str) and error else f"the generation ended with {reason}"
            raise ProviderFault(f"reported an error in its stream: {detail}", cls=failed)
        if isinstance(reason, str):
            self.finish_reason = _FINISH.get(reason, "stop")


class CohereBackend(ChatOnlyBackend):
    """Cohere's v2 chat (module doc)."""

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        super().__init__(name, settings, HttpClient(name, settings))
        self._url = endpoint(settings.base_url, "v2", "chat")

    def stream_chat(
        self, model: str, request: ChatRequest, *, timeout_s: float | None = None
    ) -> AsyncGenerator[Chunk, None]:
        messages = [
            {"role": "system" if m.role == "developer" else m.role, "content": m.content}
            for m in request.messages
        ]
        body: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "stream": True,
            **sampling_fields(request.sampling, _SAMPLING),
        }
        return self._http.stream(self._url, body, CohereDecoder(), timeout_s=timeout_s)
