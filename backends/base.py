"""The one interface every upstream wire protocol implements.

A ``Backend`` is one upstream endpoint (a configured provider, or a registered
model host) speaking one wire protocol, with its own keep-alive connection
pool and, where it has one, its own credential. It is the only code that
knows HTTP, provider JSON and provider credentials.

Contract for ``stream_chat`` and ``stream_completion`` (async generators):

- The HTTP request is sent on the first ``__anext__``. Errors before the first
  chunk (connect failure, HTTP error status, in-band error event) raise an
  ``UpstreamError`` subclass from ``router.errors``; the class says whether
  another target may succeed (``retryable``).
- Each yielded ``Chunk`` joins the text of every event that had already arrived
  in one network read: never waits to fill a chunk. Every chunk but the last
  has non-empty text; the last has ``finish_reason`` set, and ``usage`` when
  the provider reported it.
- A stream that ends, or breaks, without a finish reason raises
  ``UpstreamStreamBroken`` (never a silent clean end).
- Closing the generator early (``aclose``) or cancelling the task that iterates
  it closes the upstream connection, so the provider stops generating.
- No message, exception or ``repr`` ever contains the credential.

Instances are used concurrently by many requests on one event loop; they are
not thread-safe. ``aclose`` releases the connection pool and is idempotent.
"""

from __future__ import annotations

import abc
from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field

from router.domain import ChatRequest, Chunk, CompletionRequest, Embeddings, Health
from router.secrets import SecretRef

PROTOCOLS: tuple[str, ...] = ("vllm", "openai", "azure", "anthropic", "cohere")
"""Wire protocols (``kind`` in a provider's config)."""


@dataclass(frozen=True, slots=True)
class ProviderSettings:
    """How to reach one upstream. Parsed from the config file, or made for a
    registered host.

    =====================  ==========================================================
    kind                   one of ``PROTOCOLS``
    base_url               e.g. ``https://api.openai.com/v1``, ``http://10.0.0.7:8000/v1``;
                           for ``azure``: ``https://{resource}.openai.azure.com``
    api_key                reference to the provider credential, or ``None``
    api_version            ``azure`` only: the ``api-version`` query parameter;
                           ``anthropic``: the ``anthropic-version`` header
    headers                extra request headers (never secrets)
    connect_timeout_s      TCP + TLS connect limit
    read_timeout_s         the longest silence allowed between two reads of a stream
    max_connections        size of the keep-alive pool
    =====================  ==========================================================
    """

    kind: str
    base_url: str
    api_key: SecretRef | None = None
    api_version: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 60.0
    max_connections: int = 1000


class Backend(abc.ABC):
    """One upstream endpoint speaking one wire protocol (see the module doc)."""

    def __init__(self, name: str, settings: ProviderSettings) -> None:
        self.name = name
        self.settings = settings

    @abc.abstractmethod
    def stream_chat(
        self, model: str, request: ChatRequest, *, timeout_s: float | None = None
    ) -> AsyncGenerator[Chunk, None]:
        """Stream a chat answer from ``model``. ``timeout_s`` bounds the whole
        call (the caller's remaining deadline); ``None`` means no bound beyond
        the settings' read timeout."""

    @abc.abstractmethod
    def stream_completion(
        self, model: str, request: CompletionRequest, *, timeout_s: float | None = None
    ) -> AsyncGenerator[Chunk, None]:
        """Stream a plain-text completion of ``request.prompt``."""

    @abc.abstractmethod
    async def embed(self, model: str, inputs: Sequence[str], *, timeout_s: float | None = None) -> Embeddings:
        """Embed ``inputs``, one vector each, in order."""

    @abc.abstractmethod
    async def health(self) -> Health:
        """Probe the upstream. Never raises: failures are ``Health(ok=False)``."""

    @abc.abstractmethod
    async def aclose(self) -> None:
        """Close the connection pool. Idempotent."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, base_url={self.settings.base_url!r})"
