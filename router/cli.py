"""The ``meshgate`` command line (``docs/cli.md`` documents every command).

    meshgate [--gateway ADDR] [--key KEY] [--admin-key KEY] [--tls] [--ca-file PEM] COMMAND ...

    serve [--config FILE]                 run the gateway
    sim ...                               run the provider simulator
    chat --route R [options] PROMPT       stream a chat answer ("-": read the prompt from stdin)
    complete --route R [options] PROMPT   stream a completion
    embed --route R TEXT...               embed texts
    keys create|revoke|list               consumer keys (admin)
    routes list                           routes (every route with an admin key)
    backends list                         backends (admin)
    register --url URL --model M ...      keep a model host registered until SIGTERM/SIGINT (admin)

The connection options are accepted before or after the command. Exit status:
0 success, 1 a refused or failed call (``meshgate: <STATUS>: <message>`` on
stderr), 2 a usage error or an invalid config, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from router.client import (
    DEFAULT_TARGET,
    AdminClient,
    BackendInfo,
    ChatChunk,
    ChatStream,
    GatewayClient,
    KeyInfo,
    RouteDef,
    RouteInfo,
)
from router.domain import Message
from router.errors import MeshgateError, Unauthenticated

if TYPE_CHECKING:
    from router.agent import RegistrationAgent

GATEWAY_ENV = "MESHGATE_GATEWAY"
KEY_ENV = "MESHGATE_KEY"
ADMIN_KEY_ENV = "MESHGATE_ADMIN_KEY"

_DATA = ("key",)
_ADMIN = ("admin-key",)


# --------------------------------------------------------------------------- parser


def _pairs(text: str) -> dict[str, str]:
    """``k=v[,k=v...]`` as a dict (argparse type: a bad pair is a usage error)."""
    pairs: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {item!r}")
        pairs[name.strip()] = value.strip()
    return pairs


def _tag(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return name, value


def _connection(keys: Sequence[str], *, suppress: bool) -> argparse.ArgumentParser:
    """The connection options; ``suppress`` for the copies on subcommands, so an
    option given before the command is not reset by the subcommand's default."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("connection")

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    group.add_argument(
        "--gateway",
        metavar="ADDR",
        default=default(None),
        help=f"the gateway's address (env {GATEWAY_ENV}; default {DEFAULT_TARGET})",
    )
    if "key" in keys:
        group.add_argument("--key", default=default(None), help=f"a consumer key (env {KEY_ENV})")
    if "admin-key" in keys:
        group.add_argument(
            "--admin-key", metavar="KEY", default=default(None), help=f"an admin key (env {ADMIN_KEY_ENV})"
        )
    group.add_argument("--tls", action="store_true", default=default(False), help="connect with TLS")
    group.add_argument(
        "--ca-file", metavar="PEM", default=default(None), help="root certificates for TLS (implies --tls)"
    )
    return parent


def _json_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def _generation_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--route", required=True, help="the route to call")
    parser.add_argument("--max-tokens", type=int, metavar="N", help="the most tokens to generate")
    parser.add_argument("--temperature", type=float, metavar="T", help="sampling temperature, 0 to 2")
    parser.add_argument("--top-p", type=float, metavar="P", help="nucleus sampling, above 0 and at most 1")
    parser.add_argument(
        "--stop", action="append", default=[], metavar="TEXT", help="a stop sequence (repeatable, up to 4)"
    )
    parser.add_argument("--seed", type=int, help="seed for reproducible sampling")
    _common_request_options(parser)


def _common_request_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--tag",
        action="append",
        type=_tag,
        default=[],
        metavar="KEY=VALUE",
        help="a purpose tag kept with the usage record (repeatable)",
    )
    parser.add_argument("--request-id", default="", metavar="ID", help="your own id for the request")
    parser.add_argument("--timeout-s", type=float, metavar="S", help="the call's deadline in seconds")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``meshgate`` (``sim``'s own options are parsed by the simulator)."""
    parser = argparse.ArgumentParser(
        prog="meshgate",
        description="Meshgate: a gRPC gateway for large language models.",
        parents=[_connection((*_DATA, *_ADMIN), suppress=False)],
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    data = [_connection(_DATA, suppress=True)]
    admin = [_connection(_ADMIN, suppress=True)]

    serve = commands.add_parser("serve", help="run the gateway until SIGTERM or SIGINT")
    serve.add_argument("--config", metavar="FILE", help="the YAML config (default: the embedded one)")

    # Everything after `sim` is the simulator's, parsed in _sim() by its own parser (imported only
    # then); prefix_chars="\0" keeps this placeholder from reading any of it as an option.
    commands.add_parser(
        "sim", help="run the provider simulator (meshgate sim --help)", add_help=False, prefix_chars="\0"
    )

    chat = commands.add_parser("chat", help="stream a chat answer", parents=data)
    _generation_options(chat)
    chat.add_argument("--system", metavar="TEXT", help="a system prompt")
    chat.add_argument("prompt", help='the user\'s message ("-": read it from stdin)')

    complete = commands.add_parser("complete", help="stream a completion", parents=data)
    _generation_options(complete)
    complete.add_argument("prompt", help='the text to complete ("-": read it from stdin)')

    embed = commands.add_parser("embed", help="embed texts", parents=data)
    embed.add_argument("--route", required=True, help="an embedding route")
    _common_request_options(embed)
    _json_option(embed)
    embed.add_argument("texts", nargs="+", metavar="TEXT", help="the texts to embed")

    keys = commands.add_parser("keys", help="consumer keys (admin)").add_subparsers(
        dest="keys_command", required=True, metavar="ACTION"
    )
    create = keys.add_parser("create", help="make a key; its secret is shown once", parents=admin)
    create.add_argument("--name", required=True, help="1 to 64 of [A-Za-z0-9._-], unique among live keys")
    create.add_argument("--team", required=True, help="a team from the config file")
    _json_option(create)
    revoke = keys.add_parser("revoke", help="revoke a key at once", parents=admin)
    revoke.add_argument("key_id", metavar="KEY_ID", help='the key\'s id ("key_…")')
    keys_list = keys.add_parser("list", help="list keys", parents=admin)
    keys_list.add_argument("--team", default="", help="only this team's keys")
    keys_list.add_argument("--all", action="store_true", help="include revoked keys")
    _json_option(keys_list)

    routes = commands.add_parser("routes", help="routes").add_subparsers(
        dest="routes_command", required=True, metavar="ACTION"
    )
    routes_list = routes.add_parser(
        "list",
        help="with an admin key every route, its targets and access list; else the routes --key may use",
        parents=[_connection((*_DATA, *_ADMIN), suppress=True)],
    )
    _json_option(routes_list)

    backends = commands.add_parser("backends", help="backends (admin)").add_subparsers(
        dest="backends_command", required=True, metavar="ACTION"
    )
    backends_list = backends.add_parser(
        "list", help="configured providers and registered hosts", parents=admin
    )
    _json_option(backends_list)

    register = commands.add_parser(
        "register", help="keep a model host registered until SIGTERM/SIGINT, then deregister", parents=admin
    )
    register.add_argument("--url", required=True, help="the host's OpenAI-compatible base URL")
    register.add_argument(
        "--model",
        action="append",
        required=True,
        dest="models",
        metavar="NAME",
        help="a model it serves (repeatable)",
    )
    register.add_argument("--protocol", default="vllm", choices=("vllm", "openai"), help="its wire protocol")
    register.add_argument("--labels", type=_pairs, default={}, metavar="K=V,...", help="free labels")
    register.add_argument("--lease-ttl-s", type=int, default=30, metavar="S", help="lease length, 1 to 3600")
    register.add_argument(
        "--metrics-url", metavar="URL", help="vLLM metrics (default: the url's origin + /metrics)"
    )
    return parser


# --------------------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``meshgate`` with ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    try:
        args, extra = parser.parse_known_args(argv)
        if args.command == "sim":
            return _sim(extra)
        if extra:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        if args.command == "serve":
            return _serve(args)
        return _HANDLERS[args.command](args)
    except SystemExit as exc:  # argparse: 2 for a usage error, 0 after --help
        return exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 2
    except MeshgateError as exc:
        print(f"meshgate: {exc.status}: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"meshgate: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def _serve(args: argparse.Namespace) -> int:
    from router.config import ConfigError, default_config, load_config

    try:
        config = load_config(args.config) if args.config else default_config()
    except ConfigError as exc:
        print(f"meshgate: invalid config {exc.source}:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  {problem}", file=sys.stderr)
        return 2
    from router import server  # imported here: the gateway's machinery is not needed by the other commands

    return server.run(config)


def _sim(argv: list[str]) -> int:
    from backends.sim import cli as sim_cli  # imported here: only `sim` needs the simulator

    parser = argparse.ArgumentParser(prog="meshgate sim", description="Run the provider simulator.")
    sim_cli.add_arguments(parser)
    return sim_cli.run(parser.parse_args(argv))


# --------------------------------------------------------------------------- clients


def _option(args: argparse.Namespace, name: str, env: str) -> str | None:
    value: str | None = getattr(args, name, None)
    return value or os.environ.get(env) or None


def _client_settings(args: argparse.Namespace) -> dict[str, Any]:
    ca_file: str | None = args.ca_file
    root_certificates = None
    if ca_file:
        with open(ca_file, "rb") as handle:
            root_certificates = handle.read()
    return {
        "target": _option(args, "gateway", GATEWAY_ENV) or DEFAULT_TARGET,
        "tls": bool(args.tls),
        "root_certificates": root_certificates,
    }


def _key(args: argparse.Namespace) -> str:
    key = _option(args, "key", KEY_ENV)
    if key is None:
        raise Unauthenticated(f"no key: pass --key or set {KEY_ENV}")
    return key


def _admin_key(args: argparse.Namespace) -> str:
    key = _option(args, "admin_key", ADMIN_KEY_ENV)
    if key is None:
        raise Unauthenticated(f"no admin key: pass --admin-key or set {ADMIN_KEY_ENV}")
    return key


def _gateway_client(args: argparse.Namespace) -> GatewayClient:
    return GatewayClient(key=_key(args), **_client_settings(args))


def _admin_client(args: argparse.Namespace) -> AdminClient:
    return AdminClient(key=_admin_key(args), **_client_settings(args))


# --------------------------------------------------------------------------- data plane


def _prompt(text: str) -> str:
    return sys.stdin.read().rstrip("\n") if text == "-" else text


def _sampling(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "max_tokens": args.max_tokens,
        "temperature": args.temperature,
        "top_p": args.top_p,
        "stop": tuple(args.stop),
        "seed": args.seed,
        "tags": dict(args.tag),
        "request_id": args.request_id,
        "timeout_s": args.timeout_s,
    }


def _chat(args: argparse.Namespace) -> int:
    messages = [Message("system", args.system)] if args.system else []
    messages.append(Message("user", _prompt(args.prompt)))
    client = _gateway_client(args)
    return asyncio.run(_print_stream(client, client.chat(args.route, messages, **_sampling(args))))


def _complete(args: argparse.Namespace) -> int:
    client = _gateway_client(args)
    return asyncio.run(
        _print_stream(client, client.complete(args.route, _prompt(args.prompt), **_sampling(args)))
    )


async def _print_stream(client: GatewayClient, stream: ChatStream) -> int:
    """Write the text as it arrives, then one summary line on stderr."""
    out = sys.stdout
    start = time.perf_counter()
    ttft_s: float | None = None
    last: ChatChunk | None = None
    async with client, stream:
        try:
            async for chunk in stream:
                if chunk.text:
                    if ttft_s is None:
                        ttft_s = time.perf_counter() - start
                    out.write(chunk.text)
                    out.flush()
                if chunk.finish_reason is not None:
                    last = chunk
        finally:
            if ttft_s is not None:  # end the partial line before any error message
                out.write("\n")
                out.flush()
    total_s = time.perf_counter() - start
    assert last is not None  # a stream without a finish reason raises Unavailable
    print(_summary(last, ttft_s if ttft_s is not None else total_s, total_s), file=sys.stderr)
    return 0


def _summary(last: ChatChunk, ttft_s: float, total_s: float) -> str:
    parts = [f"model={last.model}", f"backend={last.backend}", f"finish={last.finish_reason}"]
    if last.usage is not None:
        parts += [
            f"prompt_tokens={last.usage.prompt_tokens}",
            f"completion_tokens={last.usage.completion_tokens}",
        ]
        if last.usage.cached_prompt_tokens:
            parts.append(f"cached_prompt_tokens={last.usage.cached_prompt_tokens}")
        if last.usage.estimated:
            parts.append("(estimated)")
    parts += [f"ttft={ttft_s:.3f}s", f"total={total_s:.3f}s"]
    if last.request_id:
        parts.append(f"request_id={last.request_id}")
    return " ".join(parts)


def _embed(args: argparse.Namespace) -> int:
    async def run() -> int:
        async with _gateway_client(args) as client:
            result = await client.embed(
                args.route,
                args.texts,
                tags=dict(args.tag),
                request_id=args.request_id,
                timeout_s=args.timeout_s,
            )
        if args.json:
            _print_json(result)
            return 0
        for text, vector in zip(args.texts, result.vectors, strict=False):
            head = ", ".join(f"{v:.4f}" for v in vector[:4])
            print(f"{_clip(text, 40)!r}: {len(vector)} dims [{head}{', …' if len(vector) > 4 else ''}]")
        usage = result.usage
        print(
            f"model={result.model} backend={result.backend} prompt_tokens={usage.prompt_tokens}"
            f"{' (estimated)' if usage.estimated else ''} request_id={result.request_id}",
            file=sys.stderr,
        )
        return 0

    return asyncio.run(run())


# --------------------------------------------------------------------------- control plane


def _keys(args: argparse.Namespace) -> int:
    async def run() -> int:
        async with _admin_client(args) as admin:
            if args.keys_command == "create":
                key, secret = await admin.create_key(args.name, args.team)
                if args.json:
                    _print_json({"key": key, "secret": secret})
                else:
                    print(f"created {key.id} (name {key.name}, team {key.team})", file=sys.stderr)
                    print(secret)
                print(
                    "The secret is shown only once: store it now; the gateway keeps only a hash.",
                    file=sys.stderr,
                )
            elif args.keys_command == "revoke":
                key = await admin.revoke_key(args.key_id)
                print(f"revoked {key.id} (name {key.name}, team {key.team})")
            else:
                keys = await admin.list_keys(team=args.team, include_revoked=args.all)
                _print_list(args, keys, _KEY_COLUMNS, _key_row)
        return 0

    return asyncio.run(run())


def _routes(args: argparse.Namespace) -> int:
    async def run() -> int:
        if _option(args, "admin_key", ADMIN_KEY_ENV) is not None:
            async with _admin_client(args) as admin:
                _print_list(args, await admin.list_all_routes(), _ROUTE_DEF_COLUMNS, _route_def_row)
        else:
            async with _gateway_client(args) as client:
                _print_list(args, await client.list_routes(), _ROUTE_COLUMNS, _route_row)
        return 0

    return asyncio.run(run())


def _backends(args: argparse.Namespace) -> int:
    async def run() -> int:
        async with _admin_client(args) as admin:
            backends = await admin.list_backends()
        now_ms = time.time() * 1000
        _print_list(args, backends, _BACKEND_COLUMNS, lambda b: _backend_row(b, now_ms))
        return 0

    return asyncio.run(run())


def _register(args: argparse.Namespace) -> int:
    from router import logs
    from router.agent import RegistrationAgent

    settings = _client_settings(args)
    agent = RegistrationAgent(
        settings["target"],
        _admin_key(args),
        args.url,
        args.models,
        protocol=args.protocol,
        labels=args.labels,
        lease_ttl_s=args.lease_ttl_s,
        metrics_url=args.metrics_url,
        tls=settings["tls"],
        root_certificates=settings["root_certificates"],
    )
    logs.configure()
    return asyncio.run(_run_agent(agent))


async def _run_agent(agent: RegistrationAgent) -> int:
    await agent.start()
    print(
        f"registered {agent.backend_id} ({agent.url}: {', '.join(agent.models)}); "
        f"heartbeat every {agent.interval_s:g} s; SIGTERM or Ctrl-C deregisters",
        file=sys.stderr,
    )
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    for signum in signals:
        loop.add_signal_handler(signum, stopping.set)
    refused = asyncio.create_task(agent.wait())
    stopped = asyncio.create_task(stopping.wait())
    try:
        await asyncio.wait({refused, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)
        stopped.cancel()
        await agent.stop()
    if refused.done():
        refused.result()  # the gateway refused the agent for good: raise its error
    else:
        refused.cancel()
    print(f"deregistered {agent.backend_id}", file=sys.stderr)
    return 0


# --------------------------------------------------------------------------- output


def _print_json(value: Any) -> None:
    def encode(item: Any) -> Any:
        if dataclasses.is_dataclass(item) and not isinstance(item, type):
            return dataclasses.asdict(item)
        raise TypeError(f"cannot encode {type(item).__name__}")

    print(json.dumps(value, default=encode, indent=2, ensure_ascii=False))


def _print_list(
    args: argparse.Namespace,
    items: Sequence[Any],
    columns: Sequence[str],
    row: Callable[[Any], Sequence[str]],
) -> None:
    if args.json:
        _print_json(list(items))
    else:
        print(_table(columns, (row(item) for item in items)))


def _table(columns: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    cells = [list(columns), *(list(r) for r in rows)]
    widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in cells
    )


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _when(unix_ms: int) -> str:
    if not unix_ms:
        return "-"
    return datetime.fromtimestamp(unix_ms / 1000, UTC).strftime("%Y-%m-%d %H:%M:%SZ")


_KEY_COLUMNS = ("ID", "NAME", "TEAM", "PREFIX", "CREATED", "REVOKED", "SOURCE")
_ROUTE_COLUMNS = ("NAME", "TYPE", "MODELS")
_ROUTE_DEF_COLUMNS = ("NAME", "TYPE", "TARGETS", "ALLOW", "SOURCE")
_BACKEND_COLUMNS = ("ID", "PROTOCOL", "URL", "MODELS", "STATE", "LOAD", "IN-FLIGHT", "LEASE")


def _key_row(key: KeyInfo) -> Sequence[str]:
    source = "config" if key.configured else "admin"
    return (
        key.id,
        key.name,
        key.team,
        key.prefix,
        _when(key.created_unix_ms),
        _when(key.revoked_unix_ms),
        source,
    )


def _route_row(route: RouteInfo) -> Sequence[str]:
    return (route.name, route.type, ", ".join(route.models))


def _route_def_row(route: RouteDef) -> Sequence[str]:
    targets = ", ".join(
        f"{t.provider or '(registered)'}/{t.model}" + (f" x{t.weight}" if t.weight != 1 else "")
        for t in route.targets
    )
    return (
        route.name,
        route.type,
        targets,
        ", ".join(route.allow),
        "config" if route.configured else "admin",
    )


def _backend_row(backend: BackendInfo, now_ms: float) -> Sequence[str]:
    load = "-"
    if backend.load is not None:
        load = (
            f"run {backend.load.running_requests} wait {backend.load.waiting_requests} "
            f"kv {backend.load.kv_cache_usage:.0%}"
        )
    lease = "-"
    if backend.lease_expires_unix_ms:
        remaining_s = (backend.lease_expires_unix_ms - now_ms) / 1000
        lease = f"in {remaining_s:.0f}s" if remaining_s > 0 else "lapsed"
    return (
        backend.id,
        backend.protocol,
        backend.url,
        ", ".join(backend.models),
        backend.state,
        load,
        str(backend.in_flight),
        lease,
    )


_HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {
    "chat": _chat,
    "complete": _complete,
    "embed": _embed,
    "keys": _keys,
    "routes": _routes,
    "backends": _backends,
    "register": _register,
}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
