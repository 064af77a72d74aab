"""Deterministic answers, token estimates, embeddings and a toy tokenizer.

Everything here is a pure function of its inputs, so a test can predict the
simulator's output exactly:

- **lorem** answer: token *i* is the *i*-th word of ``LOREM`` (cycling), with
  a leading space on every token but the first.
- **digest** answer: token 0 is ``digest(text)``, the first 8 hex digits of
  the SHA-256 of the last user message (for completions: the prompt); then
  lorem words from the start of ``LOREM``, each with a leading space.
- **prompt tokens**: whitespace-separated words of every input text, plus one
  per message (a completion prompt counts as one message). ``/tokenize``
  counts the same way, so its ``count`` equals the usage a request reports.
- **stop sequences**: the token whose addition would make the text contain a
  stop sequence is not sent; the answer ends there with finish
  ``stop_sequence`` (each protocol names it its own way).
- **embeddings**: unit vectors drawn from a Gaussian seeded by the text's
  SHA-256, so equal texts give equal vectors.
"""

from __future__ import annotations

import hashlib
import math
import random
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import orjson

LOREM: tuple[str, ...] = tuple(
    "Lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et "  # noqa: SIM905
    "dolore magna aliqua Ut enim ad minim veniam quis nostrud exercitation ullamco laboris nisi ut aliquip "
    "ex ea commodo consequat Duis aute irure dolor in reprehenderit in voluptate velit esse cillum dolore eu "
    "fugiat nulla pariatur Excepteur sint occaecat cupidatat non proident sunt in culpa qui officia "
    "deserunt mollit anim id est laborum".split()
)
_SPACED: tuple[str, ...] = tuple(" " + w for w in LOREM)

Finish = Literal["stop", "length", "stop_sequence"]
"""Why an answer ended: naturally, at ``max_tokens``, or at a stop sequence."""


def digest(text: str) -> str:
    """The first 8 hex digits of the SHA-256 of ``text`` (UTF-8)."""
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def count_words(text: str) -> int:
    return len(text.split())


def estimate_prompt_tokens(texts: Iterable[str], messages: int) -> int:
    """Words in ``texts`` plus one per message: the simulator's prompt-token count."""
    return sum(len(t.split()) for t in texts) + messages


def content_text(content: object) -> str:
    """The text of a message's content: a string, or a list of parts whose
    ``text`` fields are joined (OpenAI, Anthropic and Cohere all use this
    shape); anything else reads as empty."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part["text"] for part in content if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


@dataclass(frozen=True, slots=True)
class Answer:
    """What one request will be answered, decided before the first byte."""

    tokens: tuple[str, ...]
    finish: Finish
    stop_sequence: str | None
    prompt_tokens: int

    @property
    def completion_tokens(self) -> int:
        return len(self.tokens)

    @property
    def text(self) -> str:
        return "".join(self.tokens)


def lorem_tokens(count: int, *, first: str | None = None) -> tuple[str, ...]:
    """``count`` tokens of the lorem answer, or of the digest answer when
    ``first`` (the digest) is given."""
    if count <= 0:
        return ()
    if first is None:
        return (LOREM[0], *(_SPACED[i % len(_SPACED)] for i in range(1, count)))
    return (first, *(_SPACED[i % len(_SPACED)] for i in range(count - 1)))


def _cut_at_stop(tokens: tuple[str, ...], stop: Sequence[str]) -> tuple[int, str] | None:
    """Index of the first token that would complete a stop sequence, and the sequence."""
    stops = [s for s in stop if s]
    if not stops:
        return None
    text = ""
    for i, token in enumerate(tokens):
        joined = text + token
        for s in stops:
            if joined.find(s, max(0, len(text) - len(s) + 1)) >= 0:
                return i, s
        text = joined
    return None


def make_answer(
    *,
    mode: str,
    tokens: int,
    max_tokens: int | None,
    stop: Sequence[str],
    digest_text: str,
    prompt_tokens: int,
) -> Answer:
    """The answer for a request: ``tokens`` long, capped at ``max_tokens``
    (finish ``length`` when the cap cuts it short), cut before a stop sequence."""
    count, finish = tokens, "stop"
    if max_tokens is not None and max_tokens < count:
        count, finish = max(0, max_tokens), "length"
    words = lorem_tokens(count, first=digest(digest_text) if mode == "digest" else None)
    hit = _cut_at_stop(words, stop)
    if hit is not None:
        return Answer(words[: hit[0]], "stop_sequence", hit[1], prompt_tokens)
    return Answer(words, "stop" if finish == "stop" else "length", None, prompt_tokens)


_JSON_TOKENS: dict[str, bytes] = {t: orjson.dumps(t) for t in (*LOREM, *_SPACED, "")}


def token_json(text: str) -> bytes:
    """``text`` as a JSON string; the lorem vocabulary is encoded once, at import."""
    encoded = _JSON_TOKENS.get(text)
    return encoded if encoded is not None else orjson.dumps(text)


@lru_cache(maxsize=4096)
def embedding(text: str, dim: int) -> tuple[float, ...]:
    """A unit vector of length ``dim``, a pure function of ``text``."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
    rng = random.Random(seed)
    vector = [rng.gauss(0.0, 1.0) for _ in range(dim)]
    norm = math.sqrt(sum(x * x for x in vector)) or 1.0
    return tuple(x / norm for x in vector)


# The toy tokenizer: one id per word (a CRC of the word), and one marker id
# per message. Ids it hands out are remembered (boundedly) so that
# /detokenize can turn them back into words.
BOS_ID = 1
_ID_BASE = 100
_VOCAB = 50_000
_SEEN: dict[int, str] = {}
_SEEN_MAX = 65_536


def word_id(word: str) -> int:
    token_id = _ID_BASE + zlib.crc32(word.encode()) % _VOCAB
    if len(_SEEN) >= _SEEN_MAX:
        _SEEN.clear()
    _SEEN[token_id] = word
    return token_id


def tokenize(texts: Sequence[str]) -> list[int]:
    """Token ids of ``texts``, each text one message: a marker, then its words."""
    ids: list[int] = []
    for text in texts:
        ids.append(BOS_ID)
        ids.extend(word_id(w) for w in text.split())
    return ids


def detokenize(ids: Iterable[int]) -> str:
    """Words for ``ids``, space-joined; markers vanish; ids never handed out
    read as lorem words."""
    words = [_SEEN.get(i) or LOREM[i % len(LOREM)] for i in ids if i != BOS_ID]
    return " ".join(words)
