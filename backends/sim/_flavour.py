"""The seam between the shared simulator machinery and each wire protocol.

A ``Flavour`` is one protocol: its routes, its authentication, its request
parsing, its error bodies and the ``Frames`` of its event stream. Everything
else (faults, timing, counting, metrics, cancellation) is shared and lives in
``_engine`` and ``_server``; a flavour never sleeps, counts or touches a
socket.

Errors cross one seam: anything a flavour or the engine refuses is raised as
``SimError`` and turned into the protocol's error response, in the server's
middleware, by ``Flavour.error_response``.
"""

from __future__ import annotations

import abc
import hashlib
import hmac
import random
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol

from aiohttp import web

from backends.sim._answers import Answer, content_text
from backends.sim._behaviour import Behaviour
from backends.sim._config import SimConfig
from backends.sim._metrics import VllmMetrics
from backends.sim._stats import StatsBoard

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
Endpoint = Literal["chat", "completion"]

BODY_KEY: web.RequestKey[Any] = web.RequestKey("meshgate_sim_body", object)
"""Where the middleware leaves an API request's parsed JSON body."""


class SimError(Exception):
    """A refusal, answered with ``status`` in the protocol's own error shape.

    ``message`` ``None`` means the protocol's usual text for the status;
    ``param`` and ``code`` fill those fields where the protocol has them;
    ``injected`` marks errors from the error-injection faults.
    """

    def __init__(
        self,
        status: int,
        message: str | None = None,
        *,
        param: str | None = None,
        code: str | None = None,
        injected: bool = False,
    ) -> None:
        super().__init__(message or str(status))
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.injected = injected


@dataclass(slots=True)
class Generation:
    """A chat or completion request, parsed; protocol-neutral.

    ``prompt_tokens`` is the estimate of ``_answers``; ``digest_text`` the
    text a ``digest`` answer hashes; ``include_usage``/``continuous_usage``
    only matter to the OpenAI family's streams; ``extra`` holds what one
    flavour needs from parsing to framing.
    """

    endpoint: Endpoint
    model: str
    stream: bool
    max_tokens: int | None
    stop: tuple[str, ...]
    prompt_tokens: int
    digest_text: str
    include_usage: bool = False
    continuous_usage: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class Frames(abc.ABC):
    """The events of one streamed answer, as the bytes to write.

    The engine writes ``head()`` after the time to first token, then
    ``token()`` for every token but the last, then ``finish(last)`` with the
    last token (``None`` for an empty answer). When a fault fires it writes
    ``token()`` for each token sent and then, for ``fail``, ``error()``.
    Each returned ``bytes`` is one write on the socket.
    """

    @abc.abstractmethod
    def head(self) -> list[bytes]:
        """Events before the first token (role chunk, message start...)."""

    @abc.abstractmethod
    def token(self, text: str, sent: int) -> bytes:
        """The event carrying one token; ``sent`` counts tokens including this one."""

    @abc.abstractmethod
    def finish(self, last: str | None) -> list[bytes]:
        """The last token (if any), finish reason, usage and terminator."""

    @abc.abstractmethod
    def error(self, message: str) -> list[bytes]:
        """An in-band error event, and the terminator if the protocol sends one after it."""


@dataclass(slots=True)
class Context:
    """What flavours may read: the live config, counters, metrics and RNG."""

    config: SimConfig
    board: StatsBoard
    metrics: VllmMetrics
    rng: random.Random


class Admission(Protocol):
    """What a flavour's routes get from the engine."""

    def handler(self, endpoint: Endpoint) -> Handler:
        """The shared handler of a chat or completion route."""
        ...

    def admit(self, model: str) -> Behaviour:
        """Check ``model`` and roll the error dice; raises ``SimError``."""
        ...


class Flavour(abc.ABC):
    """One wire protocol. One instance per simulator; stateless apart from ``ctx``."""

    protocol: ClassVar[str]
    url_path: ClassVar[str] = ""
    """Appended to the origin to make ``Simulator.url`` (the SDK's base URL)."""
    guarded_prefixes: ClassVar[tuple[str, ...]] = ("/v1",)
    """Path prefixes that need the API key (when one is configured)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    @abc.abstractmethod
    def add_routes(self, app: web.Application, engine: Admission) -> None:
        """Add the protocol's routes. API routes are named ``api:<something>``:
        the middleware counts them and parses their JSON body into
        ``request[BODY_KEY]``. ``engine.handler(endpoint)`` serves a chat or
        completion route; other API handlers call ``engine.admit(model)``."""

    @abc.abstractmethod
    def authorized(self, request: web.Request, api_key: str) -> bool:
        """Whether ``request`` carries ``api_key`` the protocol's way."""

    def unauthorized(self) -> web.StreamResponse:
        """The answer to a request without the right key."""
        return self.error_response(SimError(401))

    def check_request(self, request: web.Request) -> None:  # noqa: B027 (optional hook)
        """Protocol-level checks after authentication (required headers or
        query parameters); raises ``SimError``."""

    @abc.abstractmethod
    def error_response(self, error: SimError) -> web.StreamResponse:
        """``error`` as the protocol's HTTP error answer."""

    @abc.abstractmethod
    def parse(self, endpoint: Endpoint, body: Any, request: web.Request) -> Generation:
        """Validate and read a generation request; raises ``SimError``."""

    def model_not_found(self, model: str) -> SimError:
        """The error for a model this server does not serve."""
        return SimError(404, f"The model `{model}` does not exist.", param="model", code="model_not_found")

    @abc.abstractmethod
    def frames(self, gen: Generation, answer: Answer) -> Frames:
        """The stream encoder for one answer."""

    @abc.abstractmethod
    def body(self, gen: Generation, answer: Answer) -> bytes:
        """The JSON of a complete (non-streamed) answer."""

    def in_band_error(self, status: int) -> str:
        """The message of the error event the ``fail`` fault sends."""
        return "The simulator failed this generation on purpose (fail fault)."


def key_matches(given: str | None, expected: str) -> bool:
    """Constant-time comparison of a presented credential with the expected one."""
    if given is None:
        return False
    return hmac.compare_digest(
        hashlib.sha256(given.encode()).digest(), hashlib.sha256(expected.encode()).digest()
    )


def bearer_token(request: web.Request) -> str | None:
    """The token of ``Authorization: Bearer <token>`` (scheme case-insensitive)."""
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def health_response(config: SimConfig) -> web.Response:
    """``/health``: 200 with an empty body, or 503 when ``config.unhealthy``."""
    return web.Response(status=503 if config.unhealthy else 200)


def json_response(body: bytes, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    """An ``application/json`` response from already-encoded ``body``."""
    return web.Response(body=body, status=status, headers=headers, content_type="application/json")


def require(cond: bool, message: str, param: str | None = None) -> None:
    """Raise a 400 ``SimError`` unless ``cond``."""
    if not cond:
        raise SimError(400, message, param=param)


def opt_int(body: Mapping[str, Any], *names: str) -> int | None:
    """The first of ``names`` present and not null in ``body``, as a
    non-negative int; 400 if it is anything else."""
    for name in names:
        value = body.get(name)
        if value is None:
            continue
        require(
            isinstance(value, int) and not isinstance(value, bool) and value >= 0,
            f"{name} must be a non-negative integer",
            name,
        )
        return int(value)
    return None


def stop_list(value: object, param: str) -> tuple[str, ...]:
    """A stop field: a string, a list of strings, or null."""
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
        raise SimError(400, f"{param} must be a string or a list of strings", param=param)
    return tuple(value)


def required_str(body: Mapping[str, Any], name: str, message: str) -> str:
    """``body[name]`` as a non-empty string, or 400 with ``message``."""
    value = body.get(name)
    if not isinstance(value, str) or not value:
        raise SimError(400, message, param=name)
    return value


def chat_texts(
    body: Mapping[str, Any], message: str, roles: Collection[str] | None = None
) -> tuple[list[str], str]:
    """The text of each message in ``body["messages"]`` (a non-empty list of
    objects with a ``role``, limited to ``roles`` when given), and the text of
    the last ``user`` message; 400 with ``message`` otherwise."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise SimError(400, message, param="messages")
    texts: list[str] = []
    last_user = ""
    for item in messages:
        role = item.get("role") if isinstance(item, dict) else None
        if not isinstance(role, str) or (roles is not None and role not in roles):
            raise SimError(400, message, param="messages")
        text = content_text(item.get("content"))
        texts.append(text)
        if role == "user":
            last_user = text
    return texts, last_user


def body_object(body: Any) -> dict[str, Any]:
    """The request body as a JSON object, or 400."""
    if not isinstance(body, dict):
        raise SimError(400, "The request body must be a JSON object.")
    return body
