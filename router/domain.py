"""Plain domain objects: what flows between the stages of a request.

No protobuf, HTTP or JSON here. The servicer decodes protobuf into these, the
backend adapters encode them into each provider's wire format. Requests are
frozen; ``Chunk`` is a plain slotted class because one is made per network
read on the streaming path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

Role = Literal["system", "developer", "user", "assistant"]
ROLES: frozenset[str] = frozenset(("system", "developer", "user", "assistant"))

RouteType = Literal["chat", "completion", "embedding"]
ROUTE_TYPES: tuple[str, ...] = ("chat", "completion", "embedding")

FinishReason = Literal["stop", "length", "content_filter", "tool_calls"]
"""Normalised finish reasons; adapters map each provider's names onto these."""


@dataclass(frozen=True, slots=True)
class Message:
    role: str
    content: str


@dataclass(frozen=True, slots=True)
class Sampling:
    """Generation parameters; ``None`` means the provider's default."""

    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass(frozen=True, slots=True)
class ChatRequest:
    route: str
    messages: tuple[Message, ...]
    sampling: Sampling = Sampling()
    tags: Mapping[str, str] = field(default_factory=dict)
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    route: str
    prompt: str
    sampling: Sampling = Sampling()
    tags: Mapping[str, str] = field(default_factory=dict)
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class EmbedRequest:
    route: str
    inputs: tuple[str, ...]
    tags: Mapping[str, str] = field(default_factory=dict)
    request_id: str = ""


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    estimated: bool = False


@dataclass(slots=True)
class Chunk:
    """A piece of a streamed answer, as an adapter yields it.

    Every chunk but the last has non-empty ``text`` and no ``finish_reason``.
    The last has ``finish_reason`` set, possibly with text, and ``usage`` when
    the provider reported it (``None`` otherwise). ``model`` is the model the
    provider says served the request, when it says so.
    """

    text: str
    finish_reason: str | None = None
    usage: Usage | None = None
    model: str | None = None
    backend: str | None = None
    """Set by the gateway on the last chunk: the upstream that served it."""


@dataclass(frozen=True, slots=True)
class Embeddings:
    vectors: list[list[float]]
    usage: Usage
    model: str


@dataclass(frozen=True, slots=True)
class BackendLoad:
    """A model host's load, as its own metrics report it."""

    running_requests: int = 0
    waiting_requests: int = 0
    kv_cache_usage: float = 0.0


@dataclass(frozen=True, slots=True)
class Health:
    ok: bool
    detail: str = ""
    load: BackendLoad | None = None


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the outcome of authentication."""

    key_id: str
    name: str
    team: str
    groups: frozenset[str]
    is_admin: bool = False
