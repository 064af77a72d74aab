"""The factory picks one adapter per wire protocol, does no I/O, and refuses unknown kinds."""

from __future__ import annotations

import pytest

from backends.anthropic import AnthropicBackend
from backends.base import PROTOCOLS
from backends.cohere import CohereBackend
from backends.openai import OpenAIBackend
from backends.registry import create_backend
from tests.backends.support import settings_for

EXPECTED = {
    "openai": OpenAIBackend,
    "vllm": OpenAIBackend,
    "azure": OpenAIBackend,
    "anthropic": AnthropicBackend,
    "cohere": CohereBackend,
}


@pytest.mark.parametrize("kind", PROTOCOLS)
async def test_each_protocol_has_its_adapter(kind: str) -> None:
    backend = create_backend("p", settings_for(kind, "http://127.0.0.1:9/v1"))
    assert type(backend) is EXPECTED[kind]
    assert backend.name == "p" and backend.settings.kind == kind
    await backend.aclose()


def test_unknown_kind_is_a_value_error_listing_the_kinds() -> None:
    with pytest.raises(ValueError, match="provider 'x' has unknown kind 'bedrock': use one of vllm, openai"):
        create_backend("x", settings_for("bedrock", "http://127.0.0.1:9"))
    with pytest.raises(ValueError, match="OpenAIBackend serves kinds"):
        OpenAIBackend("x", settings_for("anthropic", "http://127.0.0.1:9"))
