"""The factory: one ``Backend`` for a provider's settings, chosen by ``settings.kind``.

=========  ===================================
kind       class
=========  ===================================
openai     ``backends.openai.OpenAIBackend``
vllm       ``backends.openai.OpenAIBackend``
azure      ``backends.openai.OpenAIBackend``
anthropic  ``backends.anthropic.AnthropicBackend``
cohere     ``backends.cohere.CohereBackend``
=========  ===================================

Creating a backend does no I/O and resolves no secret; its connection pool
opens, and its credential is read, on its first call.
"""

from __future__ import annotations

from collections.abc import Callable

from backends.anthropic import AnthropicBackend
from backends.base import PROTOCOLS, Backend, ProviderSettings
from backends.cohere import CohereBackend
from backends.openai import OpenAIBackend

__all__ = ["BACKENDS", "create_backend"]

BACKENDS: dict[str, Callable[[str, ProviderSettings], Backend]] = {
    "openai": OpenAIBackend,
    "vllm": OpenAIBackend,
    "azure": OpenAIBackend,
    "anthropic": AnthropicBackend,
    "cohere": CohereBackend,
}
assert set(BACKENDS) == set(PROTOCOLS), "every wire protocol has exactly one adapter"


def create_backend(name: str, settings: ProviderSettings) -> Backend:
    """The adapter for ``settings.kind``, named ``name`` (the provider's config
    name or a registered host's id). ``ValueError`` for an unknown kind."""
    factory = BACKENDS.get(settings.kind)
    if factory is None:
        raise ValueError(
            f"provider {name!r} has unknown kind {settings.kind!r}: use one of {', '.join(PROTOCOLS)}"
        )
    return factory(name, settings)
