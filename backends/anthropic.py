"""Anthropic's Messages API (wire-protocols.md §4.3).

``POST {base_url}/messages`` (``base_url`` like ``https://api.anthropic.com/v1``;
a bare origin, as Anthropic's SDK takes it, gets ``/v1`` added) with
``x-api-key`` and ``anthropic-version`` (``settings.api_version``, default
``2023-06-01``).

===================  ==========================================================
request              ``system`` and ``developer`` messages are joined into the
                     top-level ``system``; ``max_tokens`` is required by
                     Anthropic, so a request without one gets
                     ``DEFAULT_MAX_TOKENS``; ``stop`` → ``stop_sequences``;
                     ``seed`` is not supported and is dropped
text                 ``content_block_delta`` with a ``text_delta`` (thinking and
                     tool-input deltas are not text)
usage                prompt = ``input_tokens`` + cache creation + cache reads
                     (Anthropic counts them apart; the domain's prompt count
                     includes cached tokens), cached = ``cache_read_input_tokens``,
                     from ``message_start``; completion = ``output_tokens`` of the
                     last ``message_delta`` (cumulative)
finish               end_turn, stop_sequence, pause_turn → stop; max_tokens,
                     model_context_window_exceeded → length; refusal →
                     content_filter; tool_use → tool_calls
``error`` event      its ``error.type`` → the class of the matching HTTP status
                     (``overloaded_error`` → 529 → UpstreamUnavailable, …)
ping, unknown        ignored (Anthropic's versioning policy)
===================  ==========================================================

Completions are a one-message chat; there is no embeddings API; health is a
TCP connect (``ChatOnlyBackend``).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from backends._adapter import ChatOnlyBackend, JsonEventDecoder, endpoint, sampling_fields
from backends._http import HttpClient, fault_from_error_body
from backends.base import ProviderSettings
from router.domain import ChatRequest, Chunk, Usage

__all__ = ["ANTHROPIC_VERSION", "DEFAULT_MAX_TOKENS", "AnthropicBackend", "AnthropicDecoder"]

ANTHROPIC_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
"""Sent when a request sets no ``max_tokens``: Anthropic requires one, and 4096
fits every current Claude model's output limit."""

_FINISH: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "refusal": "content_filter",
    "tool_use": "tool_calls",
}
_SAMPLING = {
    "max_tokens": "max_tokens",
    "temperature": "temperature",
    "top_p": "top_p",
    "stop": "stop_sequences",
}
_EVENTS = frozenset(("message_start", "content_block_delta", "message_delta", "message_stop", "error"))


def _count(value: Any) -> int:
    return value if isinstance(value, int) and value >= 0 else 0


class AnthropicDecoder(JsonEventDecoder):
    """``StreamDecoder`` for Messages streams."""

    __slots__ = ("_cached", "_completion", "_prompt")

    def __init__(self) -> None:
        super().__init__(_EVENTS)
        self._prompt = 0
        self._cached = 0
        self._completion = 0

    def feed(self, data: bytes) -> str:
        parts: list[str] = []
        for kind, event, payload in self.events(data):
            if kind == "content_block_delta":
                delta = event.get("delta")
                if isinstance(delta, dict) and delta.get("type") == "text_delta":
                    text = delta.get("text")
                    if isinstance(text, str):
                        parts.append(text)
            elif kind == "message_start":
                self._on_start(event.get("message"))
            elif kind == "message_delta":
                self._on_delta(event)
            elif kind == "message_stop":
                self.done = True
            elif kind == "error":
                raise fault_from_error_body(payload)
        return "".join(parts)

    def _on_start(self, message: Any) -> None:
        if not isinstance(message, dict):
            return
        model = message.get("model")
        if isinstance(model, str) and model:
            self.model = model
        self._take_usage(message.get("usage"))

    def _on_delta(self, event: dict[str, Any]) -> None:
        delta = event.get("delta")
        reason = delta.get("stop_reason") if isinstance(delta, dict) else None
        if isinstance(reason, str):
            self.finish_reason = _FINISH.get(reason, "stop")
        self._take_usage(event.get("usage"))

    def _take_usage(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        if "input_tokens" in usage:  # message_start, and message_delta when it repeats them
            cached = _count(usage.get("cache_read_input_tokens"))
            created = _count(usage.get("cache_creation_input_tokens"))
            self._prompt = _count(usage.get("input_tokens")) + created + cached
            self._cached = cached
        if "output_tokens" in usage:
            self._completion = _count(usage.get("output_tokens"))
        self.usage = Usage(
            prompt_tokens=self._prompt, completion_tokens=self._completion, cached_prompt_tokens=self._cached
        )


class AnthropicBackend(ChatOnlyBackend):
    """Anthropic's Messages API (module doc)."""

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        http = HttpClient(
            name,
            settings,
            credential_header="x-api-key",
            credential_prefix="",
            headers={"anthropic-version": settings.api_version or ANTHROPIC_VERSION},
        )
        super().__init__(name, settings, http)
        self._url = endpoint(settings.base_url, "v1", "messages")

    def stream_chat(
        self, model: str, request: ChatRequest, *, timeout_s: float | None = None
    ) -> AsyncGenerator[Chunk, None]:
        system = "\n\n".join(m.content for m in request.messages if m.role in ("system", "developer"))
        messages = [
            {"role": m.role, "content": m.content}
            for m in request.messages
            if m.role not in ("system", "developer")
        ]
        body: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "max_tokens": DEFAULT_MAX_TOKENS,
            "stream": True,
            **sampling_fields(request.sampling, _SAMPLING),
        }
        if system:
            body["system"] = system
        return self._http.stream(self._url, body, AnthropicDecoder(), timeout_s=timeout_s)
