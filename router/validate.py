"""Validate: check a decoded request against the contract and the limits.

Every rule stated on a field in ``gateway.proto`` is checked here, once, for
every entry point. All problems are reported together in one
``InvalidRequest``, each naming its field, so a caller fixes them in one go.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from router.config import Limits
from router.domain import ROLES, ChatRequest, CompletionRequest, EmbedRequest, Sampling
from router.errors import InvalidRequest

MAX_STOP_BYTES = 256
MAX_TAG_KEY_BYTES = 64
MAX_TAG_VALUE_BYTES = 256
MAX_REQUEST_ID_BYTES = 128


def validate_chat(request: ChatRequest, limits: Limits) -> None:
    problems = _common(request.route, request.tags, request.request_id, limits)
    if not request.messages:
        problems.append("messages: at least one message is required")
    elif len(request.messages) > limits.max_messages:
        problems.append(f"messages: {len(request.messages)} messages, the limit is {limits.max_messages}")
    size = 0
    for i, message in enumerate(request.messages):
        if message.role not in ROLES:
            problems.append(
                f"messages[{i}].role: unknown role {message.role[:32]!r} "
                f"(use one of {', '.join(sorted(ROLES))})"
            )
        elif not message.content and message.role != "assistant":
            problems.append(f"messages[{i}].content: empty {message.role} message")
        size += len(message.content.encode())
    if size > limits.max_prompt_bytes:
        problems.append(f"messages: {size} bytes of text, the limit is {limits.max_prompt_bytes}")
    problems += _sampling(request.sampling, limits)
    _raise(problems)


def validate_completion(request: CompletionRequest, limits: Limits) -> None:
    problems = _common(request.route, request.tags, request.request_id, limits)
    if not request.prompt:
        problems.append("prompt: must not be empty")
    elif (size := len(request.prompt.encode())) > limits.max_prompt_bytes:
        problems.append(f"prompt: {size} bytes, the limit is {limits.max_prompt_bytes}")
    problems += _sampling(request.sampling, limits)
    _raise(problems)


def validate_embed(request: EmbedRequest, limits: Limits) -> None:
    problems = _common(request.route, request.tags, request.request_id, limits)
    if not request.inputs:
        problems.append("inputs: at least one text is required")
    elif len(request.inputs) > limits.max_embed_inputs:
        problems.append(f"inputs: {len(request.inputs)} texts, the limit is {limits.max_embed_inputs}")
    empty = [i for i, text in enumerate(request.inputs) if not text]
    if empty:
        problems.append(f"inputs[{empty[0]}]: must not be empty")
    size = sum(len(text.encode()) for text in request.inputs)
    if size > limits.max_prompt_bytes:
        problems.append(f"inputs: {size} bytes of text, the limit is {limits.max_prompt_bytes}")
    _raise(problems)


def _common(route: str, tags: Mapping[str, str], request_id: str, limits: Limits) -> list[str]:
    problems = []
    if not route:
        problems.append("route: required (ListRoutes shows the routes your key may use)")
    if len(tags) > limits.max_tags:
        problems.append(f"tags: {len(tags)} tags, the limit is {limits.max_tags}")
    for key, value in tags.items():
        if not key or len(key.encode()) > MAX_TAG_KEY_BYTES:
            problems.append(f"tags: key {key[:80]!r} must be 1 to {MAX_TAG_KEY_BYTES} bytes")
        if len(value.encode()) > MAX_TAG_VALUE_BYTES:
            problems.append(f"tags[{key[:64]!r}]: value longer than {MAX_TAG_VALUE_BYTES} bytes")
    if len(request_id.encode()) > MAX_REQUEST_ID_BYTES:
        problems.append(f"request_id: longer than {MAX_REQUEST_ID_BYTES} bytes")
    return problems


def _sampling(sampling: Sampling, limits: Limits) -> list[str]:
    problems = []
    if sampling.max_tokens is not None and not 1 <= sampling.max_tokens <= limits.max_tokens:
        problems.append(f"max_tokens: {sampling.max_tokens} is out of range (1 to {limits.max_tokens})")
    if sampling.temperature is not None and not (
        math.isfinite(sampling.temperature) and 0.0 <= sampling.temperature <= 2.0
    ):
        problems.append(f"temperature: {sampling.temperature} is out of range (0 to 2)")
    if sampling.top_p is not None and not (math.isfinite(sampling.top_p) and 0.0 < sampling.top_p <= 1.0):
        problems.append(f"top_p: {sampling.top_p} is out of range (greater than 0, at most 1)")
    if len(sampling.stop) > limits.max_stop:
        problems.append(f"stop: {len(sampling.stop)} sequences, the limit is {limits.max_stop}")
    for i, stop in enumerate(sampling.stop):
        if not stop or len(stop.encode()) > MAX_STOP_BYTES:
            problems.append(f"stop[{i}]: must be 1 to {MAX_STOP_BYTES} bytes")
    return problems


def _raise(problems: list[str]) -> None:
    if problems:
        raise InvalidRequest("invalid request: " + "; ".join(problems))
