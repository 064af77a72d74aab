"""The gateway's configuration: a typed tree, parsed once, validated in one pass.

    load_config(path)          read a YAML file, parse and validate it
    parse_config(data, ...)    the same for data already loaded (tests, tools)
    default_config()           the embedded ``router/defaults/meshgate.yaml``

Every value below is a frozen dataclass; defaults live on the dataclass fields
and nowhere else (the parser reads them from there). Validation walks the whole
tree once and collects *every* problem, each prefixed with its field path
(``routes.chat.targets[0].provider: unknown provider "local-vlm" (known:
local-vllm, openai)``), then raises one ``ConfigError`` holding them all.

Secrets are ``SecretRef``s: validation checks that each one resolves now (the
message comes from ``SecretRef.problem()`` and never holds a value) and keeps
the reference, never the secret.

``route_problems`` is the one route validator: the config parser and
``router.routes.RouteTable.upsert`` (the Admin ``UpsertRoute`` RPC) both call it.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
import json
import os
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from types import MappingProxyType
from typing import Any, TypeVar
from urllib.parse import urlsplit

import yaml

from backends.base import PROTOCOLS, ProviderSettings
from router.domain import ROUTE_TYPES
from router.secrets import SecretRef

__all__ = [
    "NAME_RULE",
    "ConfigError",
    "GatewayConfig",
    "KeySpec",
    "Limits",
    "RouteSpec",
    "ServerSettings",
    "TargetSpec",
    "TeamSpec",
    "default_config",
    "load_config",
    "name_problem",
    "parse_config",
    "route_problems",
    "sqlite_path",
    "state_problem",
]

MiB = 1024 * 1024

NAME_RULE = "1 to 64 of [A-Za-z0-9._-]"
_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
_MAX_WEIGHT = 1000
_DEFAULT_SOURCE = "<embedded router/defaults/meshgate.yaml>"


# --------------------------------------------------------------------------- types


@dataclass(frozen=True, slots=True)
class TargetSpec:
    """Where a route sends requests: ``model`` at ``provider``.

    ``provider`` names a configured provider; ``""`` means only the hosts
    registered (``RegisterBackend``) for ``model``. Registered hosts serving
    ``model`` join the pool of a named provider's target too. ``weight`` is a
    relative share of requests, 1 to 1,000.
    """

    provider: str
    model: str
    weight: int = 1


@dataclass(frozen=True, slots=True)
class RouteSpec:
    """A route: a name callers use, its request type, targets and access list.

    ``allow`` holds group names, or ``"*"`` for every key. ``configured`` is true
    for routes from the config file (read-only through the Admin API).
    """

    name: str
    type: str
    targets: tuple[TargetSpec, ...]
    allow: frozenset[str]
    configured: bool = False

    @property
    def models(self) -> tuple[str, ...]:
        """The targets' models, in target order, each once."""
        return tuple(dict.fromkeys(target.model for target in self.targets))


@dataclass(frozen=True, slots=True)
class TeamSpec:
    """A team: the unit keys belong to and usage is charged to.

    ``groups`` are what routes' ``allow`` lists name; a team's keys may call a
    route when the two intersect. In the file, ``groups`` defaults to the
    team's own name.
    """

    name: str
    groups: frozenset[str]


@dataclass(frozen=True, slots=True)
class KeySpec:
    """A consumer key defined in the config file (hashed at load, never kept)."""

    name: str
    team: str
    secret: SecretRef


@dataclass(frozen=True, slots=True)
class Limits:
    """Sizes and counts every request must stay within (``INVALID_ARGUMENT`` beyond).

    ========================  =========  ==================================================
    max_message_bytes         4 MiB      gRPC receive limit for one request message
    max_prompt_bytes          1 MiB      text of all messages of a chat, or one prompt
    max_messages              1024       messages in one chat request
    max_tokens                32768      the largest ``max_tokens`` a request may ask for
    max_stop                  4          stop sequences in one request
    max_tags                  16         tags on one request
    max_embed_inputs          2048       texts in one ``Embed`` request
    ========================  =========  ==================================================
    """

    max_message_bytes: int = 4 * MiB
    max_prompt_bytes: int = 1 * MiB
    max_messages: int = 1024
    max_tokens: int = 32768
    max_stop: int = 4
    max_tags: int = 16
    max_embed_inputs: int = 2048


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """How the gateway process runs.

    ===========================  ======  ==================================================
    grace_s                      30.0    on SIGTERM, how long calls in flight may finish
    upstream_connect_timeout_s   5.0     default TCP + TLS connect limit for providers
    upstream_read_timeout_s      60.0    default longest silence between two upstream reads
    workers                      1       gateway processes sharing the port (SO_REUSEPORT)
    ===========================  ======  ==================================================
    """

    grace_s: float = 30.0
    upstream_connect_timeout_s: float = 5.0
    upstream_read_timeout_s: float = 60.0
    workers: int = 1


def _frozen_map() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    """The whole configuration. Every field has a default, so ``{}`` parses
    (to a gateway with no routes and no keys).

    ``state`` is a URL: ``sqlite:///relative/path`` (relative to the working
    directory), ``sqlite:////absolute/path`` or ``sqlite://:memory:``.
    ``metrics_listen`` ``None`` turns the Prometheus endpoint off. ``source``
    says where the config came from (a path, or a marker such as
    ``<embedded ...>``), for messages.
    """

    listen: str = "127.0.0.1:50051"
    metrics_listen: str | None = "127.0.0.1:9464"
    state: str = "sqlite:///.meshgate/meshgate.db"
    admin_keys: tuple[SecretRef, ...] = ()
    providers: Mapping[str, ProviderSettings] = field(default_factory=_frozen_map)
    routes: Mapping[str, RouteSpec] = field(default_factory=_frozen_map)
    teams: Mapping[str, TeamSpec] = field(default_factory=_frozen_map)
    keys: tuple[KeySpec, ...] = ()
    limits: Limits = Limits()
    server: ServerSettings = ServerSettings()
    source: str = "<config>"

    @property
    def groups(self) -> frozenset[str]:
        """Every group some team belongs to: what ``allow`` lists may name."""
        return frozenset(group for team in self.teams.values() for group in team.groups)


class ConfigError(Exception):
    """The config is unusable. ``problems`` lists every problem found, each
    ``"<field path>: <what is wrong>"``; ``str()`` shows them one per line."""

    def __init__(self, problems: Sequence[str], *, source: str = "<config>") -> None:
        self.problems: list[str] = list(problems)
        self.source = source
        count = len(self.problems)
        header = f"invalid config {source} ({count} problem{'s' if count != 1 else ''}):"
        super().__init__("\n".join([header, *(f"  {problem}" for problem in self.problems)]))


# --------------------------------------------------------------------- entry points


def load_config(path: str | os.PathLike[str]) -> GatewayConfig:
    """Read, parse and validate the YAML file at ``path``.

    Raises ``ConfigError`` for an unreadable file, bad YAML (with its line) and
    every problem in the contents. Duplicate keys in one YAML mapping, which
    YAML itself would silently resolve to the last, are problems too.
    """
    source = os.fspath(path)
    try:
        with open(source, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError([f"cannot read the config file: {exc.strerror}"], source=source) from None
    except UnicodeDecodeError:
        raise ConfigError(["the config file is not UTF-8 text"], source=source) from None
    return _parse_yaml(text, source=source)


def default_config() -> GatewayConfig:
    """The embedded default config (a local vLLM and a ``demo`` team).

    Needs ``MESHGATE_ADMIN_KEY`` and ``MESHGATE_DEMO_KEY`` in the environment.
    """
    text = resources.files("router").joinpath("defaults/meshgate.yaml").read_text(encoding="utf-8")
    return _parse_yaml(text, source=_DEFAULT_SOURCE)


def parse_config(data: object, *, source: str) -> GatewayConfig:
    """Parse and validate already-loaded config data (what ``yaml.safe_load`` gives).

    Raises ``ConfigError`` with every problem found.
    """
    problems = _Problems()
    config = _parse_root(data, problems, source)
    if problems.items or config is None:
        raise ConfigError(problems.items, source=source)
    return config


# ---------------------------------------------------------------- shared validators


def name_problem(name: str) -> str | None:
    """Why ``name`` is not a valid route, key, team or group name, or ``None``."""
    if _NAME.fullmatch(name):
        return None
    if not name:
        return f"empty name: use {NAME_RULE}"
    return f"invalid name {json.dumps(name)}: use {NAME_RULE}"


def route_problems(
    spec: RouteSpec,
    *,
    providers: Collection[str],
    groups: Collection[str],
    path: str,
) -> list[str]:
    """Every semantic problem with ``spec``, each prefixed by ``path`` (the
    route's field path, e.g. ``routes.chat`` or ``route``).

    ``providers`` are the configured provider names, ``groups`` the groups
    teams define. The one route validator: the config parser and
    ``RouteTable.upsert`` both use it. Pure; empty list means valid.
    """
    out: list[str] = []
    problem = name_problem(spec.name)
    if problem is not None:
        out.append(f"{_join(path, 'name')}: {problem}")
    if spec.type not in ROUTE_TYPES:
        out.append(
            f"{_join(path, 'type')}: unknown route type {json.dumps(spec.type)} "
            f"(use one of: {', '.join(ROUTE_TYPES)})"
        )
    targets_path = _join(path, "targets")
    if not spec.targets:
        out.append(f"{targets_path}: no targets: a route needs at least one {{provider, model}}")
    seen: dict[tuple[str, str], int] = {}
    for index, target in enumerate(spec.targets):
        target_path = f"{targets_path}[{index}]"
        if target.provider and target.provider not in providers:
            out.append(f"{target_path}.provider: {_unknown('provider', target.provider, providers)}")
        if not target.model:
            out.append(f"{target_path}.model: empty: name the model to send upstream")
        if not 1 <= target.weight <= _MAX_WEIGHT:
            out.append(f"{target_path}.weight: {target.weight} is out of range: use 1 to {_MAX_WEIGHT}")
        key = (target.provider, target.model)
        if key in seen:
            out.append(f"{target_path}: same provider and model as {targets_path}[{seen[key]}]")
        else:
            seen[key] = index
    allow_path = _join(path, "allow")
    if not spec.allow:
        out.append(f'{allow_path}: no groups: list the groups that may call it, or "*" for every key')
    for group in sorted(spec.allow - {"*"}):
        if group not in groups:
            out.append(
                f"{allow_path}: {_unknown('group', group, groups)}; groups come from teams.<team>.groups"
            )
    return out


def state_problem(url: str) -> str | None:
    """Why ``url`` is not a usable ``state`` URL, or ``None``."""
    if url.startswith(("postgresql://", "postgres://", "postgresql+")):
        return "PostgreSQL is not supported yet: use sqlite (sqlite:///relative/path.db)"
    if not url.startswith("sqlite://"):
        return (
            f"unsupported state URL {json.dumps(url)}: use sqlite:///relative/path.db, "
            "sqlite:////absolute/path.db or sqlite://:memory:"
        )
    rest = url[len("sqlite://") :]
    if rest == ":memory:":
        return None
    if not rest.startswith("/") or rest in ("/", "//"):
        return (
            f"bad sqlite URL {json.dumps(url)}: use sqlite:///relative/path.db, "
            "sqlite:////absolute/path.db or sqlite://:memory:"
        )
    return None


def sqlite_path(url: str) -> str:
    """The database path of a valid sqlite ``state`` URL (``":memory:"`` for
    the in-memory one). Raises ``ValueError`` with ``state_problem``'s text."""
    problem = state_problem(url)
    if problem is not None:
        raise ValueError(problem)
    rest = url[len("sqlite://") :]
    return rest if rest == ":memory:" else rest[1:]


# ------------------------------------------------------------------------- parsing


class _Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(f"{path}: {message}" if path else message)


_SIMPLE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def _join(path: str, key: str) -> str:
    part = key if _SIMPLE_KEY.fullmatch(key) else f"[{json.dumps(key)}]"
    if not path:
        return part
    return f"{path}{part}" if part.startswith("[") else f"{path}.{part}"


def _type_name(value: object) -> str:
    """What ``value`` is, for "expected X, got Y" (with the value, for scalars)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int):
        return f"an integer ({value})"
    if isinstance(value, float):
        return f"a number ({value})"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _unknown(what: str, value: str, known: Iterable[str]) -> str:
    names = sorted(known)
    listed = ", ".join(names) if names else "none"
    return f"unknown {what} {json.dumps(value)} (known: {listed})"


def _mapping(value: object, path: str, problems: _Problems, what: str = "a mapping") -> dict[str, Any] | None:
    if not isinstance(value, dict):
        problems.add(path, f"expected {what}, got {_type_name(value)}")
        return None
    bad = [key for key in value if not isinstance(key, str)]
    for key in bad:
        problems.add(path, f"key {key!r} is {_type_name(key)}: names must be strings (quote it)")
    return {key: item for key, item in value.items() if isinstance(key, str)}


def _check_keys(
    raw: Mapping[str, object],
    path: str,
    problems: _Problems,
    allowed: Collection[str],
    required: Collection[str] = (),
) -> None:
    for key in raw:
        if key not in allowed:
            close = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.6)
            hint = f' (did you mean "{close[0]}"?)' if close else f" (allowed: {', '.join(allowed)})"
            problems.add(_join(path, key), f"unknown key{hint}")
    for key in required:
        if key not in raw:
            problems.add(_join(path, key), "required")


def _string(value: object, path: str, problems: _Problems, *, nonempty: bool = True) -> str | None:
    if not isinstance(value, str):
        problems.add(path, f"expected a string, got {_type_name(value)}")
        return None
    if nonempty and not value:
        problems.add(path, "must not be empty")
        return None
    return value


def _string_list(value: object, path: str, problems: _Problems) -> list[str] | None:
    if not isinstance(value, list):
        problems.add(path, f"expected a list of strings, got {_type_name(value)}")
        return None
    out: list[str] = []
    for index, item in enumerate(value):
        text = _string(item, f"{path}[{index}]", problems)
        if text is not None:
            out.append(text)
    return out


def _number(value: object, path: str, problems: _Problems, *, integer: bool) -> float | int | None:
    # YAML booleans are ints to Python; a "true" weight is a mistake, not 1.
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (integer and isinstance(value, float))
    ):
        wanted = "an integer" if integer else "a number"
        problems.add(path, f"expected {wanted}, got {_type_name(value)}")
        return None
    return value


def _secret(value: object, path: str, problems: _Problems) -> SecretRef | None:
    text = _string(value, path, problems)
    if text is None:
        return None
    ref = SecretRef(text)
    problem = ref.problem()
    if problem is not None:
        problems.add(path, problem)
    return ref


def _host_port_problem(value: str) -> str | None:
    host, sep, port = value.rpartition(":")
    usage = "use host:port, e.g. 127.0.0.1:50051 or [::]:50051"
    if not sep or not host:
        return f"{json.dumps(value)} is not host:port: {usage}"
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        return f"bad port {json.dumps(port)}: use 0 to 65535"
    if host.startswith("["):
        if not host.endswith("]"):
            return f"bad host {json.dumps(host)}: {usage}"
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            return f"bad IPv6 address {json.dumps(host)}: {usage}"
    elif ":" in host:
        return f"IPv6 addresses need brackets: [{host}]:{port}"
    elif not re.fullmatch(r"[A-Za-z0-9.-]+", host):
        return f"bad host {json.dumps(host)}: {usage}"
    return None


_D = TypeVar("_D", Limits, ServerSettings)
_ZERO_ALLOWED = frozenset({"grace_s"})  # grace_s: 0 stops at once, cancelling calls in flight


def _scalar_section(cls: type[_D], raw: object, path: str, problems: _Problems) -> _D:
    """A section of scalar settings, read against ``cls``'s fields and defaults.

    Every setting there is a size, count or duration: integers must be 1 or
    more, numbers more than 0 (``_ZERO_ALLOWED``: 0 or more).
    """
    section = _mapping(raw, path, problems)
    if section is None:
        return cls()
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    _check_keys(section, path, problems, defaults)
    values: dict[str, Any] = {}
    for name, default in defaults.items():
        integer = isinstance(default, int)
        number = _positive(section, name, path, problems, integer=integer, allow_zero=name in _ZERO_ALLOWED)
        if number is not None:
            values[name] = number if integer else float(number)
    return cls(**values)


_ROOT_KEYS = (
    "listen",
    "metrics_listen",
    "state",
    "admin_keys",
    "providers",
    "routes",
    "teams",
    "keys",
    "limits",
    "server",
)
_PROVIDER_KEYS = (
    "kind",
    "base_url",
    "api_key",
    "api_version",
    "headers",
    "connect_timeout_s",
    "read_timeout_s",
    "max_connections",
)
# Headers that carry credentials; those belong in api_key, as a reference.
_CREDENTIAL_HEADERS = frozenset(("authorization", "x-api-key", "api-key", "proxy-authorization"))


def _parse_root(data: object, problems: _Problems, source: str) -> GatewayConfig | None:
    if data is None:
        problems.add("", "the config is empty: expected a mapping of settings (see docs/config.md)")
        return None
    root = _mapping(data, "", problems, "a mapping of settings at the top level")
    if root is None:
        return None
    _check_keys(root, "", problems, _ROOT_KEYS)
    defaults = GatewayConfig()

    listen = defaults.listen
    if "listen" in root:
        listen = _listen(root["listen"], "listen", problems) or listen
    metrics_listen = defaults.metrics_listen
    if "metrics_listen" in root:
        raw_metrics = root["metrics_listen"]
        metrics_listen = None if raw_metrics is None else _listen(raw_metrics, "metrics_listen", problems)
        if metrics_listen is not None and metrics_listen == listen and not listen.endswith(":0"):
            problems.add("metrics_listen", f"same address as listen ({listen}): use another port")

    state = defaults.state
    if "state" in root:
        raw_state = _string(root["state"], "state", problems)
        if raw_state is not None:
            problem = state_problem(raw_state)
            if problem is not None:
                problems.add("state", problem)
            state = raw_state

    admin_keys: list[SecretRef] = []
    raw_admin = _or_empty(root, "admin_keys", [])
    if not isinstance(raw_admin, list):
        problems.add("admin_keys", f"expected a list of secret references, got {_type_name(raw_admin)}")
    else:
        for index, item in enumerate(raw_admin):
            ref = _secret(item, f"admin_keys[{index}]", problems)
            if ref is not None:
                admin_keys.append(ref)

    server = _scalar_section(ServerSettings, _or_empty(root, "server", {}), "server", problems)
    limits = _scalar_section(Limits, _or_empty(root, "limits", {}), "limits", problems)
    if limits.max_prompt_bytes > limits.max_message_bytes:
        problems.add(
            "limits.max_prompt_bytes",
            f"{limits.max_prompt_bytes} is more than limits.max_message_bytes "
            f"({limits.max_message_bytes}): a prompt can never be larger than its message",
        )

    providers = _named_section(root, "providers", problems, lambda n, v, p: _provider(v, p, problems, server))
    before_teams = len(problems.items)
    teams = _named_section(root, "teams", problems, lambda n, v, p: _team(n, v, p, problems))
    # A problem is reported where it is, not again wherever it is used: names
    # are checked against what was declared, valid or not, and not at all
    # against a section too broken to say (_ANY).
    groups: frozenset[str] = frozenset(group for team in teams.values() for group in team.groups)
    if len(problems.items) > before_teams:
        groups = _ANY
    declared_providers = _declared(root, "providers")
    routes = _named_section(
        root,
        "routes",
        problems,
        lambda n, v, p: _route(n, v, p, problems, declared_providers, groups),
        check_names=False,  # route_problems checks route names
    )
    keys = _keys(_or_empty(root, "keys", []), problems, _declared(root, "teams"))

    return GatewayConfig(
        listen=listen,
        metrics_listen=metrics_listen,
        state=state,
        admin_keys=tuple(admin_keys),
        providers=MappingProxyType(providers),
        routes=MappingProxyType(routes),
        teams=MappingProxyType(teams),
        keys=tuple(keys),
        limits=limits,
        server=server,
        source=source,
    )


def _or_empty(root: Mapping[str, object], key: str, empty: object) -> object:
    """``root[key]``, with absent or null (a section whose lines are all
    commented out) read as ``empty``."""
    value = root.get(key)
    return empty if value is None else value


class _Any(frozenset[str]):
    """Stands for the names of a section that has problems of its own: holds
    every name, so references into it are not reported as unknown too."""

    def __contains__(self, item: object) -> bool:
        return True


_ANY = _Any()


def _declared(root: Mapping[str, object], key: str) -> frozenset[str]:
    """The names a ``name -> settings`` section declares, valid or not."""
    section = root.get(key)
    if section is None:
        return frozenset()
    if not isinstance(section, dict):
        return _ANY
    return frozenset(name for name in section if isinstance(name, str))


def _listen(value: object, path: str, problems: _Problems) -> str | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        problems.add(path, f"expected host:port as a string, got {_type_name(value)}: quote it")
        return None
    text = _string(value, path, problems)
    if text is None:
        return None
    problem = _host_port_problem(text)
    if problem is not None:
        problems.add(path, problem)
        return None
    return text


_T = TypeVar("_T")


def _named_section(
    root: Mapping[str, object],
    key: str,
    problems: _Problems,
    parse_one: Callable[[str, object, str], _T | None],
    *,
    check_names: bool = True,
) -> dict[str, _T]:
    """A mapping ``name -> settings`` (providers, teams, routes); absent or
    null is empty."""
    section = _mapping(_or_empty(root, key, {}), key, problems, "a mapping of name: settings")
    out: dict[str, _T] = {}
    if section is None:
        return out
    for name, raw in section.items():
        path = _join(key, name)
        problem = name_problem(name) if check_names else None
        if problem is not None:
            problems.add(path, problem)
        parsed = parse_one(name, raw, path)
        if parsed is not None:
            out[name] = parsed
    return out


def _provider(raw: object, path: str, problems: _Problems, server: ServerSettings) -> ProviderSettings | None:
    section = _mapping(raw, path, problems)
    if section is None:
        return None
    _check_keys(section, path, problems, _PROVIDER_KEYS, required=("kind", "base_url"))
    kind = _string(section["kind"], _join(path, "kind"), problems) if "kind" in section else None
    if kind is not None and kind not in PROTOCOLS:
        problems.add(_join(path, "kind"), _unknown("provider kind", kind, PROTOCOLS))
    base_url = (
        _string(section["base_url"], _join(path, "base_url"), problems) if "base_url" in section else None
    )
    if base_url is not None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            problems.add(
                _join(path, "base_url"),
                f"{json.dumps(base_url)} is not an http(s) URL: e.g. http://127.0.0.1:8000/v1",
            )
    api_key = _secret(section["api_key"], _join(path, "api_key"), problems) if "api_key" in section else None
    api_version: str | None = None
    if "api_version" in section:
        api_version = _string(section["api_version"], _join(path, "api_version"), problems)
    if kind == "azure" and "api_version" not in section:
        problems.add(_join(path, "api_version"), 'required for kind azure, e.g. "2024-10-21"')
    headers: dict[str, str] = {}
    if "headers" in section:
        headers_path = _join(path, "headers")
        raw_headers = _mapping(section["headers"], headers_path, problems, "a mapping of header: value")
        for name, value in (raw_headers or {}).items():
            if name.lower() in _CREDENTIAL_HEADERS:
                problems.add(
                    _join(headers_path, name),
                    "credentials go in api_key, as ${env:NAME} or ${file:/path}, not in headers",
                )
            text = _string(value, _join(headers_path, name), problems, nonempty=False)
            if text is not None:
                headers[name] = text
    connect_timeout_s = _positive(section, "connect_timeout_s", path, problems, integer=False)
    read_timeout_s = _positive(section, "read_timeout_s", path, problems, integer=False)
    max_connections = _positive(section, "max_connections", path, problems, integer=True)
    if kind is None or base_url is None:
        return None
    settings = ProviderSettings(
        kind=kind,
        base_url=base_url,
        api_key=api_key,
        api_version=api_version,
        headers=MappingProxyType(headers),
        connect_timeout_s=float(connect_timeout_s or server.upstream_connect_timeout_s),
        read_timeout_s=float(read_timeout_s or server.upstream_read_timeout_s),
    )
    if max_connections is not None:  # else ProviderSettings' own default
        settings = dataclasses.replace(settings, max_connections=int(max_connections))
    return settings


def _positive(
    section: Mapping[str, object],
    name: str,
    path: str,
    problems: _Problems,
    *,
    integer: bool,
    allow_zero: bool = False,
) -> float | int | None:
    """``section[name]`` if present and > 0 (or 0, with ``allow_zero``), else
    ``None`` (a problem noted if it was present)."""
    if name not in section:
        return None
    number = _number(section[name], _join(path, name), problems, integer=integer)
    if number is not None and (number < 0 or (number == 0 and not allow_zero)):
        bound = "0 or more" if allow_zero else "1 or more" if integer else "more than 0"
        problems.add(_join(path, name), f"{number} is out of range: use {bound}")
        return None
    return number


def _team(name: str, raw: object, path: str, problems: _Problems) -> TeamSpec | None:
    section = _mapping({} if raw is None else raw, path, problems)
    if section is None:
        return None
    _check_keys(section, path, problems, ("groups",))
    if "groups" not in section:
        return TeamSpec(name=name, groups=frozenset((name,)))
    groups_path = _join(path, "groups")
    groups = _string_list(section["groups"], groups_path, problems) or []
    for index, group in enumerate(groups):
        if group == "*":
            problems.add(f"{groups_path}[{index}]", '"*" is not a group name; it is for a route\'s allow')
            continue
        problem = name_problem(group)
        if problem is not None:
            problems.add(f"{groups_path}[{index}]", problem)
    return TeamSpec(name=name, groups=frozenset(groups))


def _route(
    name: str,
    raw: object,
    path: str,
    problems: _Problems,
    providers: Collection[str],
    groups: frozenset[str],
) -> RouteSpec | None:
    """Shape and type checks here; semantics in ``route_problems``.

    Where a field has the wrong shape, a valid placeholder stands in for it so
    that ``route_problems`` still checks the rest of the route without
    reporting the same field twice.
    """
    section = _mapping(raw, path, problems)
    if section is None:
        return None
    _check_keys(section, path, problems, ("type", "targets", "allow"), required=("type", "targets"))
    route_type = ROUTE_TYPES[0]
    if "type" in section:
        route_type = _string(section["type"], _join(path, "type"), problems) or route_type
    targets: list[TargetSpec] = []
    targets_path = _join(path, "targets")
    raw_targets = section.get("targets", [])
    placeholder = TargetSpec(provider="", model="?", weight=1)
    if "targets" in section and not isinstance(raw_targets, list):
        problems.add(
            targets_path, f"expected a list of {{provider, model, weight}}, got {_type_name(raw_targets)}"
        )
        targets.append(placeholder)
    elif "targets" not in section:
        targets.append(placeholder)  # already reported as required
    else:
        for index, item in enumerate(raw_targets):
            targets.append(_target(item, f"{targets_path}[{index}]", problems) or placeholder)
    allow: set[str] = set()
    allow_path = _join(path, "allow")
    if "allow" in section:
        raw_allow = section["allow"]
        parsed_allow = _string_list(raw_allow, allow_path, problems)
        if parsed_allow is None or (not parsed_allow and isinstance(raw_allow, list) and raw_allow):
            allow.add("*")  # shape already reported
        else:
            allow.update(parsed_allow)
    spec = RouteSpec(
        name=name, type=route_type, targets=tuple(targets), allow=frozenset(allow), configured=True
    )
    problems.items.extend(route_problems(spec, providers=providers, groups=groups, path=path))
    return spec


def _target(raw: object, path: str, problems: _Problems) -> TargetSpec | None:
    section = _mapping(raw, path, problems, "a mapping {provider, model, weight}")
    if section is None:
        return None
    _check_keys(section, path, problems, ("provider", "model", "weight"), required=("model",))
    provider = ""
    if "provider" in section and section["provider"] is not None:
        provider = _string(section["provider"], _join(path, "provider"), problems, nonempty=False) or ""
    model = "?"  # placeholder when missing or mistyped (already reported)
    if "model" in section:
        model = _string(section["model"], _join(path, "model"), problems) or model
    weight = 1
    if "weight" in section:
        number = _number(section["weight"], _join(path, "weight"), problems, integer=True)
        weight = int(number) if number is not None else weight
    return TargetSpec(provider=provider, model=model, weight=weight)


def _keys(raw: object, problems: _Problems, teams: Collection[str]) -> list[KeySpec]:
    if not isinstance(raw, list):
        problems.add("keys", f"expected a list of {{name, team, secret}}, got {_type_name(raw)}")
        return []
    out: list[KeySpec] = []
    first_index: dict[str, int] = {}
    for index, item in enumerate(raw):
        path = f"keys[{index}]"
        section = _mapping(item, path, problems, "a mapping {name, team, secret}")
        if section is None:
            continue
        _check_keys(section, path, problems, ("name", "team", "secret"), required=("name", "team", "secret"))
        name = _string(section["name"], f"{path}.name", problems) if "name" in section else None
        if name is not None:
            problem = name_problem(name)
            if problem is not None:
                problems.add(f"{path}.name", problem)
            elif name in first_index:
                problems.add(f"{path}.name", f'duplicate key name "{name}" (also keys[{first_index[name]}])')
            else:
                first_index[name] = index
        team = _string(section["team"], f"{path}.team", problems) if "team" in section else None
        if team is not None and team not in teams:
            problems.add(f"{path}.team", _unknown("team", team, teams))
        secret = _secret(section["secret"], f"{path}.secret", problems) if "secret" in section else None
        if name is not None and team is not None and secret is not None:
            out.append(KeySpec(name=name, team=team, secret=secret))
    return out


# ----------------------------------------------------------------------------- YAML


class _Loader(yaml.SafeLoader):
    """``SafeLoader`` that notes duplicate keys instead of keeping the last silently."""

    duplicates: list[str]


def _construct_mapping(loader: _Loader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[object] = set()
    for key_node, _value in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            duplicate = key in seen
            seen.add(key)
        except TypeError:  # an unhashable key; construct_mapping reports it
            continue
        if duplicate:
            loader.duplicates.append(
                f"line {key_node.start_mark.line + 1}: duplicate key {json.dumps(str(key))} "
                "(YAML would silently keep only the last)"
            )
    loader.flatten_mapping(node)
    return dict(loader.construct_pairs(node, deep=deep))


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _parse_yaml(text: str, *, source: str) -> GatewayConfig:
    loader = _Loader(text)
    loader.duplicates = []
    try:
        data = loader.get_single_data()
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
        reason = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([f"{where}bad YAML: {reason}"], source=source) from None
    finally:
        loader.dispose()
    try:
        config = parse_config(data, source=source)
    except ConfigError as exc:
        raise ConfigError([*loader.duplicates, *exc.problems], source=source) from None
    if loader.duplicates:
        raise ConfigError(loader.duplicates, source=source)
    return config
