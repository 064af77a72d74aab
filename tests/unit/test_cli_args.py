"""The ``meshgate`` command line: parsing, exit statuses and output.

Commands that call a gateway run against a fake one (a plain gRPC server on
127.0.0.1:0 whose answers are fixed); the real gateway's end-to-end tests live
in tests/integration.
"""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from router import cli
from router.cli import build_parser, main

ENV = ("MESHGATE_GATEWAY", "MESHGATE_KEY", "MESHGATE_ADMIN_KEY")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(argv)


# --------------------------------------------------------------------------- parsing


def test_connection_options_before_or_after_the_command() -> None:
    before = parse("--gateway", "gw:1", "--key", "k", "--tls", "chat", "--route", "r", "hi")
    after = parse("chat", "--gateway", "gw:1", "--key", "k", "--tls", "--route", "r", "hi")
    for args in (before, after):
        assert (args.gateway, args.key, args.tls, args.command, args.route, args.prompt) == (
            "gw:1",
            "k",
            True,
            "chat",
            "r",
            "hi",
        )
    defaults = parse("chat", "--route", "r", "hi")
    assert (defaults.gateway, defaults.key, defaults.admin_key, defaults.tls, defaults.ca_file) == (
        None,
        None,
        None,
        False,
        None,
    )


def test_chat_options() -> None:
    args = parse(
        "chat",
        "--route", "default",
        "--max-tokens", "64",
        "--temperature", "0.2",
        "--top-p", "0.9",
        "--stop", "END",
        "--stop", "###",
        "--seed", "7",
        "--system", "be brief",
        "--tag", "project=search",
        "--tag", "purpose=demo=1",
        "--request-id", "req-1",
        "--timeout-s", "30",
        "-",
    )  # fmt: skip
    assert args.route == "default" and args.prompt == "-" and args.system == "be brief"
    assert cli._sampling(args) == {
        "max_tokens": 64,
        "temperature": 0.2,
        "top_p": 0.9,
        "stop": ("END", "###"),
        "seed": 7,
        "tags": {"project": "search", "purpose": "demo=1"},
        "request_id": "req-1",
        "timeout_s": 30.0,
    }


def test_complete_and_embed_options() -> None:
    args = parse("complete", "--route", "c", "--max-tokens", "5", "Once upon")
    assert (args.command, args.route, args.max_tokens, args.prompt) == ("complete", "c", 5, "Once upon")
    assert not hasattr(args, "system")
    args = parse("embed", "--route", "e", "--json", "one", "two")
    assert (args.route, args.texts, args.json, args.tag) == ("e", ["one", "two"], True, [])


def test_keys_routes_and_backends_options() -> None:
    args = parse("keys", "create", "--name", "svc", "--team", "eng", "--admin-key", "A")
    assert (args.keys_command, args.name, args.team, args.admin_key, args.json) == (
        "create",
        "svc",
        "eng",
        "A",
        False,
    )
    args = parse("keys", "revoke", "key_123")
    assert (args.keys_command, args.key_id) == ("revoke", "key_123")
    args = parse("keys", "list", "--team", "eng", "--all", "--json")
    assert (args.keys_command, args.team, args.all, args.json) == ("list", "eng", True, True)
    args = parse("keys", "list")
    assert (args.team, args.all) == ("", False)
    args = parse("routes", "list", "--key", "K", "--json")
    assert (args.routes_command, args.key, args.json) == ("list", "K", True)
    args = parse("backends", "list", "--admin-key", "A")
    assert (args.backends_command, args.admin_key, args.json) == ("list", "A", False)


def test_register_options() -> None:
    args = parse(
        "register",
        "--gateway", "gw:50051",
        "--url", "http://10.0.0.7:8000/v1",
        "--model", "llama",
        "--model", "qwen",
        "--labels", "region=eu, gpu=h100",
        "--lease-ttl-s", "60",
        "--metrics-url", "http://10.0.0.7:8001/metrics",
    )  # fmt: skip
    assert args.gateway == "gw:50051"
    assert args.models == ["llama", "qwen"]
    assert args.labels == {"region": "eu", "gpu": "h100"}
    assert (args.protocol, args.lease_ttl_s, args.metrics_url) == ("vllm", 60, "http://10.0.0.7:8001/metrics")
    defaults = parse("register", "--url", "http://h/v1", "--model", "m")
    assert (defaults.protocol, defaults.labels, defaults.lease_ttl_s, defaults.metrics_url) == (
        "vllm",
        {},
        30,
        None,
    )


def test_serve_options() -> None:
    assert parse("serve").config is None
    assert parse("serve", "--config", "gw.yaml").config == "gw.yaml"


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["bogus"],
        ["chat", "hi"],  # no --route
        ["chat", "--route", "r"],  # no prompt
        ["chat", "--route", "r", "--max-tokens", "many", "hi"],
        ["chat", "--route", "r", "--tag", "novalue", "hi"],
        ["chat", "--route", "r", "--frobnicate", "hi"],
        ["complete", "--route", "r", "--system", "s", "hi"],  # chat only
        ["embed", "--route", "e"],  # no text
        ["keys"],
        ["keys", "create", "--name", "n"],  # no --team
        ["keys", "revoke"],
        ["routes"],
        ["backends", "list", "extra"],
        ["register", "--url", "http://h/v1"],  # no --model
        ["register", "--url", "http://h/v1", "--model", "m", "--labels", "gpu"],
        ["register", "--url", "http://h/v1", "--model", "m", "--protocol", "anthropic"],
        ["serve", "--config"],
    ],
)
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert "usage: meshgate" in capsys.readouterr().err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("serve", "sim", "chat", "complete", "embed", "keys", "routes", "backends", "register"):
        assert command in out


def test_the_environment_supplies_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    args = parse("routes", "list")
    assert cli._client_settings(args)["target"] == "127.0.0.1:50051"
    monkeypatch.setenv("MESHGATE_GATEWAY", "env-gw:1")
    monkeypatch.setenv("MESHGATE_KEY", "env-key")
    monkeypatch.setenv("MESHGATE_ADMIN_KEY", "env-admin")
    assert cli._client_settings(args)["target"] == "env-gw:1"
    assert (cli._key(args), cli._admin_key(args)) == ("env-key", "env-admin")
    args = parse("--gateway", "flag-gw:2", "routes", "list", "--key", "flag-key")
    assert (cli._client_settings(args)["target"], cli._key(args)) == ("flag-gw:2", "flag-key")


# --------------------------------------------------------------------------- sim and serve


def test_sim_passes_its_arguments_to_the_simulator(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def add_arguments(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--port", type=int, default=0)
        parser.add_argument("--models", nargs="+")
        parser.add_argument("--register", action="store_true")
        parser.add_argument("--gateway")

    def run(args: argparse.Namespace) -> int:
        seen.update(vars(args))
        return 3

    fake = types.ModuleType("backends.sim.cli")
    fake.add_arguments = add_arguments  # type: ignore[attr-defined]
    fake.run = run  # type: ignore[attr-defined]
    import backends.sim

    monkeypatch.setitem(sys.modules, "backends.sim.cli", fake)
    monkeypatch.setattr(backends.sim, "cli", fake, raising=False)
    argv = ["sim", "--port", "8000", "--models", "a", "b", "--register", "--gateway", "gw:1"]
    assert main(argv) == 3
    assert seen == {"port": 8000, "models": ["a", "b"], "register": True, "gateway": "gw:1"}
    assert main(["sim", "--bogus"]) == 2


def test_serve_with_an_invalid_config_prints_every_problem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from router.config import ConfigError, load_config

    path = tmp_path / "bad.yaml"
    path.write_text(
        "listen: 12\n"
        "routes:\n"
        "  chat: {type: poetry, targets: [], allow: []}\n"
        "  other: {type: chat, targets: [{provider: nowhere, model: m}], allow: ['*']}\n"
        "bogus_field: 1\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        load_config(path)
    problems = info.value.problems
    assert len(problems) >= 2

    import router.server

    monkeypatch.setattr(router.server, "run", lambda config: pytest.fail("served an invalid config"))
    assert main(["serve", "--config", str(path)]) == 2
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == f"meshgate: invalid config {path}:"
    assert [line.strip() for line in lines[1:]] == problems


def test_serve_with_a_missing_config_file_returns_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["serve", "--config", str(tmp_path / "nowhere.yaml")]) == 2
    assert capsys.readouterr().err.startswith(f"meshgate: invalid config {tmp_path / 'nowhere.yaml'}:")


def test_serve_runs_the_loaded_or_default_config(monkeypatch: pytest.MonkeyPatch) -> None:
    import router.config
    import router.server

    served: list[Any] = []
    sentinel_default, sentinel_file = object(), object()
    monkeypatch.setattr(router.server, "run", lambda config: served.append(config) or 0)
    monkeypatch.setattr(router.config, "default_config", lambda: sentinel_default)
    monkeypatch.setattr(
        router.config, "load_config", lambda path: sentinel_file if path == "gw.yaml" else None
    )
    assert main(["serve"]) == 0
    assert main(["serve", "--config", "gw.yaml"]) == 0
    assert served == [sentinel_default, sentinel_file]


# --------------------------------------------------------------------------- errors


def test_a_missing_key_is_reported_without_a_call(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--gateway", "127.0.0.1:9", "chat", "--route", "r", "hi"]) == 1
    assert capsys.readouterr().err == "meshgate: UNAUTHENTICATED: no key: pass --key or set MESHGATE_KEY\n"
    assert main(["--gateway", "127.0.0.1:9", "backends", "list"]) == 1
    err = capsys.readouterr().err
    assert err == "meshgate: UNAUTHENTICATED: no admin key: pass --admin-key or set MESHGATE_ADMIN_KEY\n"


def test_an_unreachable_gateway_is_reported(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--gateway", "127.0.0.1:9", "--key", "k", "routes", "list"]) == 1
    assert capsys.readouterr().err.startswith("meshgate: UNAVAILABLE: ")
