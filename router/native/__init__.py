"""Meshgate's compiled hot path, with a pure-Python twin of the same interface.

Public surface (identical whichever implementation loads):

- ``SseDecoder``: incremental Server-Sent Events decoder (Anthropic, Cohere,
  any event stream): ``feed(bytes) -> list[(event name, data bytes)]``.
- ``OpenAIStreamDecoder``: SSE framing plus extraction of text, finish reason,
  usage, model, ``[DONE]`` and in-band errors from an OpenAI-style stream
  (OpenAI, Azure OpenAI, vLLM), one call per network read.
- ``IMPLEMENTATION``: ``"native"`` or ``"python"``; ``REASON``: why.

The compiled extension ``router.native._native`` (built from ``native/`` by
``setup.py``) is used unless ``MESHGATE_NATIVE=0`` forces the twin
(``router.native._py``), or the extension is missing or fails to import; the
choice is logged once on the ``meshgate.native`` logger. The contract is
documented on the twin's classes.
"""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

__all__ = ["IMPLEMENTATION", "REASON", "OpenAIStreamDecoder", "SseDecoder"]

_log = logging.getLogger("meshgate.native")


def _choose() -> tuple[str, str]:
    if os.environ.get("MESHGATE_NATIVE", "").strip() == "0":
        return "python", "MESHGATE_NATIVE=0 forces the pure-Python twin"
    try:
        import router.native._native  # noqa: F401
    except ImportError as exc:  # not built, or built for another interpreter
        return "python", f"compiled extension router.native._native unavailable ({exc}); pip install -e ."
    return "native", "compiled extension router.native._native"


IMPLEMENTATION, REASON = _choose()

# The checker sees the twin's classes (the contract); at run time the chosen
# implementation's classes, which behave identically (tests/native).
if TYPE_CHECKING or IMPLEMENTATION == "python":
    from router.native._py import OpenAIStreamDecoder, SseDecoder
else:
    from router.native._native import OpenAIStreamDecoder, SseDecoder

_log.info("using the %s implementation: %s", IMPLEMENTATION, REASON)
