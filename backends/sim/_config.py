"""The simulator's configuration: one mutable record, validated in one pass.

``SimConfig`` is deliberately *not* frozen: a test or a benchmark changes the
behaviour of a running simulator by assigning to its fields (or through
``Simulator.set``, which validates first). Every request reads the fields it
needs once, when it arrives, so a change applies to the next request and never
to one already streaming.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from backends.base import PROTOCOLS

ANSWERS: tuple[str, ...] = ("lorem", "digest")
"""Answer modes: ``lorem`` words, or ``digest`` (the prompt's short hash first)."""

DEFAULT_MODEL = "sim-model"


@dataclass(slots=True)
class SimConfig:
    """How a simulator behaves. Defaults live here and nowhere else.

    ====================  ===================================================================
    protocol              one of ``backends.base.PROTOCOLS``: vllm, openai, azure,
                          anthropic, cohere (one per server)
    models                the models served; the first is the default, reported where
                          the request names none. Unknown names get the protocol's 404,
                          except behaviour names (``error-503``, ``cut-3`` ... see
                          ``backends.sim``), which every server accepts
    host, port            where to listen; port 0 = any free port
    tokens                tokens per answer, before the request's ``max_tokens`` cap
    answer                ``lorem`` or ``digest`` (see ``backends.sim._answers``)
    ttft_ms, itl_ms       delay before the first token, and between tokens; 0 = none
    embedding_dim         length of embedding vectors
    max_model_len         reported by vLLM's /v1/models and /tokenize; longer prompts
                          get vLLM's 400
    api_key               required credential (``None``: accept anything, or nothing)
    unhealthy             ``GET /health`` answers 503
    error_status          HTTP status of injected errors
    error_rate            probability (0..1) that a request gets ``error_status``
    retry_after_s         ``retry-after`` header value on 429 answers
    cut_after             send this many tokens, then abort the TCP connection
    stall_after           send this many tokens, then hang without closing
    fail_after            send this many tokens, then the protocol's in-band error event
    seed                  seed of the error-injection RNG (``None``: unseeded)
    waiting_requests      vLLM metric ``vllm:num_requests_waiting``
    kv_cache_usage        vLLM metric ``vllm:kv_cache_usage_perc`` (0..1)
    ====================  ===================================================================

    ``cut_after``, ``stall_after`` and ``fail_after`` fire after N tokens, or
    after the last token when the answer is shorter, always before the finish
    event; when more than one is set, the first in that order wins.
    """

    protocol: str = "vllm"
    models: tuple[str, ...] = (DEFAULT_MODEL,)
    host: str = "127.0.0.1"
    port: int = 0
    tokens: int = 16
    answer: str = "lorem"
    ttft_ms: float = 0.0
    itl_ms: float = 0.0
    embedding_dim: int = 384
    max_model_len: int = 8192
    api_key: str | None = None
    unhealthy: bool = False
    error_status: int = 500
    error_rate: float = 0.0
    retry_after_s: int = 1
    cut_after: int | None = None
    stall_after: int | None = None
    fail_after: int | None = None
    seed: int | None = None
    waiting_requests: int = 0
    kv_cache_usage: float = 0.0


FIELD_NAMES: frozenset[str] = frozenset(f.name for f in fields(SimConfig))


def problems(config: SimConfig) -> list[str]:
    """Every problem with ``config``, each prefixed by its field name; empty if valid."""
    found: list[str] = []
    if config.protocol not in PROTOCOLS:
        found.append(f"protocol: {config.protocol!r} is not one of {', '.join(PROTOCOLS)}")
    if not config.models or not all(isinstance(m, str) and m for m in config.models):
        found.append("models: give at least one non-empty model name")
    if not 0 <= config.port <= 65535:
        found.append(f"port: {config.port} is not in 0..65535")
    if config.tokens < 0:
        found.append(f"tokens: {config.tokens} is negative")
    if config.answer not in ANSWERS:
        found.append(f"answer: {config.answer!r} is not one of {', '.join(ANSWERS)}")
    for name in ("ttft_ms", "itl_ms"):
        if getattr(config, name) < 0:
            found.append(f"{name}: {getattr(config, name)} is negative")
    if config.embedding_dim < 1:
        found.append(f"embedding_dim: {config.embedding_dim} is not positive")
    if config.max_model_len < 1:
        found.append(f"max_model_len: {config.max_model_len} is not positive")
    if not 400 <= config.error_status <= 599:
        found.append(f"error_status: {config.error_status} is not an HTTP error status (400..599)")
    if not 0.0 <= config.error_rate <= 1.0:
        found.append(f"error_rate: {config.error_rate} is not in 0..1")
    if config.retry_after_s < 0:
        found.append(f"retry_after_s: {config.retry_after_s} is negative")
    for name in ("cut_after", "stall_after", "fail_after"):
        value = getattr(config, name)
        if value is not None and value < 0:
            found.append(f"{name}: {value} is negative")
    if config.waiting_requests < 0:
        found.append(f"waiting_requests: {config.waiting_requests} is negative")
    if not 0.0 <= config.kv_cache_usage <= 1.0:
        found.append(f"kv_cache_usage: {config.kv_cache_usage} is not in 0..1")
    return found


def validate(config: SimConfig) -> SimConfig:
    """Return ``config`` if valid; otherwise raise ``ValueError`` naming every problem."""
    found = problems(config)
    if found:
        raise ValueError("invalid simulator config: " + "; ".join(found))
    return config
