"""``meshgate sim`` (and ``python -m backends.sim``): run one simulator until
SIGINT or SIGTERM.

At start it prints one line on stdout, for scripts to parse::

    meshgate-sim listening on http://HOST:PORT protocol=PROTOCOL

With ``--register GATEWAY`` it also registers itself with a gateway (through
``router.agent.RegistrationAgent``) and deregisters on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Callable, Coroutine
from typing import Any

from backends.base import PROTOCOLS
from backends.sim._config import ANSWERS, SimConfig, validate
from backends.sim._server import Simulator

LISTENING = "meshgate-sim listening on {origin} protocol={protocol}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the simulator's options to ``parser``."""
    d = SimConfig()
    g = parser.add_argument_group("server")
    g.add_argument(
        "--protocol", choices=PROTOCOLS, default=d.protocol, help="wire protocol (default %(default)s)"
    )
    g.add_argument(
        "--model",
        dest="models",
        action="append",
        metavar="NAME",
        help=f"a model served (repeatable; the first is the default; default {d.models[0]})",
    )
    g.add_argument("--host", default=d.host, help="address to bind (default %(default)s)")
    g.add_argument("--port", type=int, default=d.port, help="port; 0 = any free port (default %(default)s)")
    g.add_argument("--api-key", default=None, help="require this credential (default: accept any)")
    g.add_argument("--max-model-len", type=int, default=d.max_model_len, help="vLLM context length")
    a = parser.add_argument_group("answers")
    a.add_argument("--tokens", type=int, default=d.tokens, help="tokens per answer (default %(default)s)")
    a.add_argument("--answer", choices=ANSWERS, default=d.answer, help="answer text (default %(default)s)")
    a.add_argument("--ttft-ms", type=float, default=d.ttft_ms, help="delay before the first token")
    a.add_argument("--itl-ms", type=float, default=d.itl_ms, help="delay between tokens")
    a.add_argument("--embedding-dim", type=int, default=d.embedding_dim, help="embedding length")
    f = parser.add_argument_group("faults")
    f.add_argument(
        "--error-status", type=int, default=None, help="HTTP status of injected errors (default 500)"
    )
    f.add_argument(
        "--error-rate",
        type=float,
        default=None,
        help="probability of an injected error (default 1 with --error-status, else 0)",
    )
    f.add_argument("--seed", type=int, default=None, help="seed of the error-injection RNG")
    f.add_argument(
        "--cut-after", type=int, default=None, metavar="N", help="abort the connection after N tokens"
    )
    f.add_argument("--stall-after", type=int, default=None, metavar="N", help="hang after N tokens")
    f.add_argument("--fail-after", type=int, default=None, metavar="N", help="in-band error after N tokens")
    f.add_argument("--unhealthy", action="store_true", help="GET /health answers 503")
    f.add_argument(
        "--waiting-requests", type=int, default=d.waiting_requests, help="vllm:num_requests_waiting"
    )
    f.add_argument("--kv-cache-usage", type=float, default=d.kv_cache_usage, help="vllm:kv_cache_usage_perc")
    r = parser.add_argument_group("registration")
    r.add_argument(
        "--register", metavar="GATEWAY", default=None, help="register with this gateway (host:port)"
    )
    r.add_argument("--admin-key", default=None, help="admin key for --register (default $MESHGATE_ADMIN_KEY)")
    r.add_argument(
        "--public-url", default=None, help="URL the gateway should use (default: this server's URL)"
    )
    r.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="registration label")
    r.add_argument("--lease-ttl-s", type=int, default=30, help="registration lease (default %(default)s)")


def config_from_args(args: argparse.Namespace) -> SimConfig:
    """The ``SimConfig`` the options describe; raises ``ValueError`` if invalid."""
    error_rate = args.error_rate
    if error_rate is None:
        error_rate = 1.0 if args.error_status is not None else 0.0
    return validate(
        SimConfig(
            protocol=args.protocol,
            models=tuple(args.models) if args.models else SimConfig().models,
            host=args.host,
            port=args.port,
            tokens=args.tokens,
            answer=args.answer,
            ttft_ms=args.ttft_ms,
            itl_ms=args.itl_ms,
            embedding_dim=args.embedding_dim,
            max_model_len=args.max_model_len,
            api_key=args.api_key,
            unhealthy=args.unhealthy,
            error_status=args.error_status if args.error_status is not None else 500,
            error_rate=error_rate,
            cut_after=args.cut_after,
            stall_after=args.stall_after,
            fail_after=args.fail_after,
            seed=args.seed,
            waiting_requests=args.waiting_requests,
            kv_cache_usage=args.kv_cache_usage,
        )
    )


def _labels(pairs: list[str]) -> dict[str, str]:
    labels: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"--label {pair!r}: expected KEY=VALUE")
        labels[key] = value
    return labels


async def serve(config: SimConfig, args: argparse.Namespace | None = None) -> int:
    """Run until SIGINT/SIGTERM; return the exit status (1 if registration fails)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    sim = Simulator(config)
    await sim.start()
    agent: Any = None
    try:
        print(LISTENING.format(origin=sim.origin, protocol=config.protocol), flush=True)
        if args is not None and args.register:
            try:
                agent = await _register(sim, args)
            except ValueError:
                raise
            except Exception as exc:  # whatever the agent raises: report it, don't dump a traceback
                print(f"meshgate sim: registration with {args.register} failed: {exc}", file=sys.stderr)
                return 1
        await stop.wait()
    finally:
        if agent is not None:
            await agent.stop()
        await sim.stop()
    return 0


async def _register(sim: Simulator, args: argparse.Namespace) -> Any:
    # Imported here so the simulator runs without the gateway package's agent.
    from router.agent import RegistrationAgent  # type: ignore[import-not-found,unused-ignore]

    admin_key = args.admin_key or os.environ.get("MESHGATE_ADMIN_KEY")
    if not admin_key:
        raise ValueError("--register needs --admin-key or $MESHGATE_ADMIN_KEY")
    agent = RegistrationAgent(
        gateway=args.register,
        admin_key=admin_key,
        url=args.public_url or sim.url,
        models=list(sim.config.models),
        protocol=sim.config.protocol,
        labels=_labels(args.label) or None,
        lease_ttl_s=args.lease_ttl_s,
    )
    await agent.start()
    return agent


def _runner() -> Callable[[Coroutine[Any, Any, int]], int]:
    """``asyncio.run`` on uvloop when it is installed."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run

    def run_uvloop(main: Coroutine[Any, Any, int]) -> int:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(main)

    return run_uvloop


def run(args: argparse.Namespace) -> int:
    """Run the simulator the parsed options describe; blocks until SIGINT or
    SIGTERM, then returns 0 (2 for invalid options)."""
    try:
        config = config_from_args(args)
        _labels(args.label)
    except ValueError as exc:
        print(f"meshgate sim: {exc}", file=sys.stderr)
        return 2
    try:
        return _runner()(serve(config, args))
    except ValueError as exc:  # registration settings
        print(f"meshgate sim: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"meshgate sim: cannot listen on {config.host}:{config.port}: {exc}", file=sys.stderr)
        return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="meshgate sim", description="Run a simulated model server.")
    add_arguments(parser)
    return run(parser.parse_args(argv))
