"""The config tree: parsing, defaults, and one-pass validation with field paths."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from backends.base import ProviderSettings
from router.config import (
    ConfigError,
    GatewayConfig,
    Limits,
    RouteSpec,
    ServerSettings,
    TargetSpec,
    default_config,
    load_config,
    parse_config,
    route_problems,
    sqlite_path,
    state_problem,
)
from router.secrets import SecretRef

EXAMPLE = """\
listen: 127.0.0.1:50051
metrics_listen: 127.0.0.1:9464
state: sqlite:///var/meshgate.db
admin_keys: ["${env:MESHGATE_ADMIN_KEY}"]
providers:
  local-vllm: {kind: vllm, base_url: "http://127.0.0.1:8001/v1"}
  openai: {kind: openai, base_url: "https://api.openai.com/v1", api_key: "${env:OPENAI_API_KEY}"}
routes:
  chat:
    type: chat
    targets: [{provider: local-vllm, model: sim-llama, weight: 1}]
    allow: [eng]
teams:
  eng: {groups: [eng]}
keys:
  - {name: alice, team: eng, secret: "${env:ALICE_KEY}"}
"""

SECRETS = {
    "MESHGATE_ADMIN_KEY": "mg-admin-secret-value-1",
    "OPENAI_API_KEY": "sk-openai-secret-value-2",
    "ALICE_KEY": "mg-alice-secret-value-3",
}


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)


def example() -> dict[str, Any]:
    data = yaml.safe_load(EXAMPLE)
    assert isinstance(data, dict)
    return data


def problems_of(data: object) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(data, source="<test>")
    return caught.value.problems


# ----------------------------------------------------------------- good configs


def test_the_example_parses_into_the_typed_tree(env: None, tmp_path: Path) -> None:
    path = tmp_path / "meshgate.yaml"
    path.write_text(EXAMPLE)
    config = load_config(path)

    assert config.source == str(path)
    assert config.listen == "127.0.0.1:50051"
    assert config.metrics_listen == "127.0.0.1:9464"
    assert config.state == "sqlite:///var/meshgate.db"
    assert config.admin_keys == (SecretRef("${env:MESHGATE_ADMIN_KEY}"),)
    assert config.providers["local-vllm"] == ProviderSettings(
        kind="vllm", base_url="http://127.0.0.1:8001/v1", connect_timeout_s=5.0, read_timeout_s=60.0
    )
    assert config.providers["openai"].api_key == SecretRef("${env:OPENAI_API_KEY}")
    assert config.routes["chat"] == RouteSpec(
        name="chat",
        type="chat",
        targets=(TargetSpec(provider="local-vllm", model="sim-llama", weight=1),),
        allow=frozenset({"eng"}),
        configured=True,
    )
    assert config.teams["eng"].groups == frozenset({"eng"})
    assert [(k.name, k.team, k.secret) for k in config.keys] == [
        ("alice", "eng", SecretRef("${env:ALICE_KEY}"))
    ]
    assert config.limits == Limits()
    assert config.server == ServerSettings()
    assert config.groups == frozenset({"eng"})


def test_secret_values_never_enter_the_config_or_its_repr(env: None) -> None:
    config = parse_config(example(), source="<test>")
    text = repr(config)
    for value in SECRETS.values():
        assert value not in text


def test_defaults_live_on_the_dataclasses() -> None:
    limits = Limits()
    assert limits.max_message_bytes == 4 * 1024 * 1024
    assert limits.max_prompt_bytes == 1024 * 1024
    assert (limits.max_messages, limits.max_tokens, limits.max_stop) == (1024, 32768, 4)
    assert (limits.max_tags, limits.max_embed_inputs) == (16, 2048)
    server = ServerSettings()
    assert (server.grace_s, server.upstream_connect_timeout_s, server.upstream_read_timeout_s) == (
        30.0,
        5.0,
        60.0,
    )
    assert server.workers == 1
    empty = parse_config({}, source="<test>")
    assert empty == GatewayConfig(source="<test>")
    assert empty.state == "sqlite:///.meshgate/meshgate.db"
    assert not empty.routes and not empty.keys and not empty.admin_keys


def test_sections_override_defaults_and_null_sections_are_empty(env: None) -> None:
    data = example()
    data["limits"] = {"max_tokens": 4096, "max_prompt_bytes": 2048}
    data["server"] = {"grace_s": 0, "workers": 4, "upstream_read_timeout_s": 120}
    data["metrics_listen"] = None
    data["keys"] = None
    config = parse_config(data, source="<test>")
    assert config.limits == Limits(max_tokens=4096, max_prompt_bytes=2048)
    assert config.server == ServerSettings(grace_s=0.0, workers=4, upstream_read_timeout_s=120.0)
    assert isinstance(config.server.upstream_read_timeout_s, float)
    assert config.metrics_listen is None
    assert config.keys == ()


def test_provider_timeouts_default_to_the_server_settings_and_can_be_set(env: None) -> None:
    data = example()
    data["server"] = {"upstream_connect_timeout_s": 2, "upstream_read_timeout_s": 30}
    data["providers"]["openai"].update(
        read_timeout_s=90, max_connections=64, headers={"OpenAI-Project": "p1"}
    )
    config = parse_config(data, source="<test>")
    assert (
        config.providers["local-vllm"].connect_timeout_s,
        config.providers["local-vllm"].read_timeout_s,
    ) == (
        2.0,
        30.0,
    )
    openai = config.providers["openai"]
    assert (openai.connect_timeout_s, openai.read_timeout_s, openai.max_connections) == (2.0, 90.0, 64)
    assert dict(openai.headers) == {"OpenAI-Project": "p1"}
    assert (
        config.providers["local-vllm"].max_connections == ProviderSettings("vllm", "http://x").max_connections
    )


def test_a_team_without_groups_belongs_to_the_group_of_its_name(env: None) -> None:
    data = example()
    data["teams"] = {"eng": None, "ml": {}}
    config = parse_config(data, source="<test>")
    assert config.teams["eng"].groups == frozenset({"eng"})
    assert config.teams["ml"].groups == frozenset({"ml"})


def test_a_target_without_provider_means_registered_hosts_only(env: None) -> None:
    data = example()
    data["routes"]["chat"]["targets"] = [
        {"model": "m1"},
        {"provider": "openai", "model": "m1"},
        {"model": "m2"},
    ]
    route = parse_config(data, source="<test>").routes["chat"]
    assert route.targets[0] == TargetSpec(provider="", model="m1", weight=1)
    assert route.models == ("m1", "m2")


def test_allow_star_needs_no_team(env: None) -> None:
    data = example()
    data["routes"]["chat"]["allow"] = ["*"]
    assert parse_config(data, source="<test>").routes["chat"].allow == frozenset({"*"})


def test_default_config_is_the_embedded_demo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESHGATE_ADMIN_KEY", "mg-admin-demo-value")
    monkeypatch.setenv("MESHGATE_DEMO_KEY", "mg-demo-demo-value")
    config = default_config()
    assert (config.listen, config.metrics_listen) == ("127.0.0.1:50051", "127.0.0.1:9464")
    assert config.state == "sqlite:///.meshgate/meshgate.db"
    assert config.admin_keys == (SecretRef("${env:MESHGATE_ADMIN_KEY}"),)
    assert dict(config.providers) == {
        "local-vllm": ProviderSettings(kind="vllm", base_url="http://127.0.0.1:8001/v1")
    }
    assert {name: route.type for name, route in config.routes.items()} == {
        "chat": "chat",
        "complete": "completion",
        "embed": "embedding",
    }
    for route in config.routes.values():
        assert route.targets == (TargetSpec(provider="local-vllm", model="sim-llama", weight=1),)
        assert route.allow == frozenset({"demo"})
        assert route.configured
    assert config.teams["demo"].groups == frozenset({"demo"})
    assert [(k.name, k.team, k.secret) for k in config.keys] == [
        ("demo", "demo", SecretRef("${env:MESHGATE_DEMO_KEY}"))
    ]


def test_default_config_without_its_variables_says_which_are_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MESHGATE_ADMIN_KEY", raising=False)
    monkeypatch.delenv("MESHGATE_DEMO_KEY", raising=False)
    with pytest.raises(ConfigError) as caught:
        default_config()
    assert caught.value.problems == [
        "admin_keys[0]: environment variable MESHGATE_ADMIN_KEY is not set or empty",
        "keys[0].secret: environment variable MESHGATE_DEMO_KEY is not set or empty",
    ]


# ------------------------------------------------------------------- secrets


def test_file_secrets_are_checked_and_never_read_into_the_config(env: None, tmp_path: Path) -> None:
    secret_file = tmp_path / "openai.key"
    secret_file.write_text("  sk-from-a-file-value  \n")
    data = example()
    data["providers"]["openai"]["api_key"] = f"${{file:{secret_file}}}"
    config = parse_config(data, source="<test>")
    api_key = config.providers["openai"].api_key
    assert api_key == SecretRef(f"${{file:{secret_file}}}")
    assert "sk-from-a-file-value" not in repr(config)
    assert api_key is not None and api_key.resolve() == "sk-from-a-file-value"


def test_unreadable_missing_and_empty_secrets_are_problems(env: None, tmp_path: Path) -> None:
    empty = tmp_path / "empty.key"
    empty.write_text("\n")
    data = example()
    missing = tmp_path / "missing.key"
    data["providers"]["openai"]["api_key"] = f"${{file:{missing}}}"
    data["keys"] = [
        {"name": "alice", "team": "eng", "secret": f"${{file:{empty}}}"},
        {"name": "bob", "team": "eng", "secret": "${env:MESHGATE_TEST_UNSET}"},
        {"name": "carol", "team": "eng", "secret": "${vault:x}"},
        {"name": "dave", "team": "eng", "secret": ""},
    ]
    assert problems_of(data) == [
        f"providers.openai.api_key: cannot read secret file {missing}: No such file or directory",
        f"keys[0].secret: secret file {empty} is empty",
        "keys[1].secret: environment variable MESHGATE_TEST_UNSET is not set or empty",
        "keys[2].secret: '${vault:x}' is not a secret reference: use ${env:NAME} or ${file:/path}",
        "keys[3].secret: must not be empty",
    ]


def test_problems_never_contain_secret_values(env: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MESHGATE_TEST_SECRET", "mg-very-secret-value")
    data = example()
    data["keys"].append({"name": "alice", "team": "nope", "secret": "${env:MESHGATE_TEST_SECRET}"})
    data["keys"].append({"name": "bob", "team": "eng", "secret": "${env:ALICE_KEY}", "extra": 1})
    with pytest.raises(ConfigError) as caught:
        parse_config(data, source="<test>")
    text = str(caught.value)
    assert "mg-very-secret-value" not in text
    for value in SECRETS.values():
        assert value not in text


# ------------------------------------------------------------------- problems


BAD = """\
lsiten: 127.0.0.1:1
listen: 127.0.0.1
metrics_listen: 127.0.0.1:99999
state: postgresql://db.internal/meshgate
admin_keys: ["${env:MESHGATE_TEST_NO_ADMIN}"]
providers:
  local-vllm: {kind: vllm, base_url: "ftp://127.0.0.1:8001/v1", read_timeout_s: 0}
  openai: {kind: openai, base_url: "https://api.openai.com/v1", api_key: "${env:MESHGATE_TEST_NO_OPENAI}"}
  az: {kind: azure, base_url: "https://r.openai.azure.com"}
  odd: {kind: grpc, base_url: "http://x", headres: {}}
routes:
  chat:
    type: chat
    targets: [{provider: local-vlm, model: sim-llama, weight: 0}]
    allow: [eng]
  "bad name!":
    type: chatty
    targets: []
    allow: []
  emb:
    type: embedding
    targets: [{model: e5, weight: 1001}, {provider: openai, model: "", weight: true}]
    allow: [egn, "*"]
teams:
  eng: {groups: [eng]}
keys:
  - {name: alice, team: eng, secret: "${env:ALICE_KEY}"}
  - {name: alice, team: egn, secret: "${env:MESHGATE_TEST_NO_KEY}"}
limits: {max_tokens: 0, max_tag: 3}
server: {grace_s: -1, workers: 1.5}
"""


def test_one_bad_file_reports_every_problem_with_its_path(env: None, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(BAD)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems == [
        'lsiten: unknown key (did you mean "listen"?)',
        'listen: "127.0.0.1" is not host:port: use host:port, e.g. 127.0.0.1:50051 or [::]:50051',
        'metrics_listen: bad port "99999": use 0 to 65535',
        "state: PostgreSQL is not supported yet: use sqlite (sqlite:///relative/path.db)",
        "admin_keys[0]: environment variable MESHGATE_TEST_NO_ADMIN is not set or empty",
        "server.grace_s: -1 is out of range: use 0 or more",
        "server.workers: expected an integer, got a number (1.5)",
        'limits.max_tag: unknown key (did you mean "max_tags"?)',
        "limits.max_tokens: 0 is out of range: use 1 or more",
        'providers.local-vllm.base_url: "ftp://127.0.0.1:8001/v1" is not an http(s) URL: '
        "e.g. http://127.0.0.1:8000/v1",
        "providers.local-vllm.read_timeout_s: 0 is out of range: use more than 0",
        "providers.openai.api_key: environment variable MESHGATE_TEST_NO_OPENAI is not set or empty",
        'providers.az.api_version: required for kind azure, e.g. "2024-10-21"',
        'providers.odd.headres: unknown key (did you mean "headers"?)',
        'providers.odd.kind: unknown provider kind "grpc" (known: anthropic, azure, cohere, openai, vllm)',
        'routes.chat.targets[0].provider: unknown provider "local-vlm" (known: az, local-vllm, odd, openai)',
        "routes.chat.targets[0].weight: 0 is out of range: use 1 to 1000",
        'routes["bad name!"].name: invalid name "bad name!": use 1 to 64 of [A-Za-z0-9._-]',
        'routes["bad name!"].type: unknown route type "chatty" (use one of: chat, completion, embedding)',
        'routes["bad name!"].targets: no targets: a route needs at least one {provider, model}',
        'routes["bad name!"].allow: no groups: list the groups that may call it, or "*" for every key',
        "routes.emb.targets[1].model: must not be empty",
        "routes.emb.targets[1].weight: expected an integer, got a boolean (true)",
        "routes.emb.targets[0].weight: 1001 is out of range: use 1 to 1000",
        'routes.emb.allow: unknown group "egn" (known: eng); groups come from teams.<team>.groups',
        'keys[1].name: duplicate key name "alice" (also keys[0])',
        'keys[1].team: unknown team "egn" (known: eng)',
        "keys[1].secret: environment variable MESHGATE_TEST_NO_KEY is not set or empty",
    ]
    text = str(caught.value)
    assert text.splitlines()[0] == f"invalid config {path} (28 problems):"
    assert all(f"  {problem}" in text.splitlines() for problem in caught.value.problems)


def _set(data: dict[str, Any], dotted: str, value: object) -> None:
    *parents, last = dotted.split(".")
    node: Any = data
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("listen", 50051, "listen: expected host:port as a string, got an integer (50051): quote it"),
        ("listen", "::1:50051", "listen: IPv6 addresses need brackets: [::1]:50051"),
        ("listen", "[::1]:50051", None),
        ("listen", "0.0.0.0:0", None),
        (
            "listen",
            "[nope]:1",
            'listen: bad IPv6 address "[nope]": use host:port, e.g. 127.0.0.1:50051 or [::]:50051',
        ),
        (
            "metrics_listen",
            "127.0.0.1:50051",
            "metrics_listen: same address as listen (127.0.0.1:50051): use another port",
        ),
        ("state", "sqlite://:memory:", None),
        ("state", "sqlite:////var/lib/meshgate.db", None),
        (
            "state",
            "postgres://x/y",
            "state: PostgreSQL is not supported yet: use sqlite (sqlite:///relative/path.db)",
        ),
        (
            "state",
            "mysql://x/y",
            'state: unsupported state URL "mysql://x/y": use sqlite:///relative/path.db, '
            "sqlite:////absolute/path.db or sqlite://:memory:",
        ),
        (
            "state",
            "sqlite://relative.db",
            'state: bad sqlite URL "sqlite://relative.db": use sqlite:///relative/path.db, '
            "sqlite:////absolute/path.db or sqlite://:memory:",
        ),
        (
            "admin_keys",
            "${env:MESHGATE_ADMIN_KEY}",
            "admin_keys: expected a list of secret references, got a string",
        ),
        ("providers", [], "providers: expected a mapping of name: settings, got a list"),
        (
            "providers.local-vllm.kind",
            "vlm",
            'providers.local-vllm.kind: unknown provider kind "vlm" '
            "(known: anthropic, azure, cohere, openai, vllm)",
        ),
        (
            "providers.local-vllm.base_url",
            "127.0.0.1:8001",
            'providers.local-vllm.base_url: "127.0.0.1:8001" is not '
            "an http(s) URL: e.g. http://127.0.0.1:8000/v1",
        ),
        (
            "providers.local-vllm.connect_timeout_s",
            -1,
            "providers.local-vllm.connect_timeout_s: -1 is out of range: use more than 0",
        ),
        (
            "providers.local-vllm.connect_timeout_s",
            "5s",
            "providers.local-vllm.connect_timeout_s: expected a number, got a string",
        ),
        (
            "providers.local-vllm.max_connections",
            0,
            "providers.local-vllm.max_connections: 0 is out of range: use 1 or more",
        ),
        (
            "providers.local-vllm.headers",
            {"Authorization": "Bearer x"},
            "providers.local-vllm.headers.Authorization: "
            "credentials go in api_key, as ${env:NAME} or ${file:/path}, not in headers",
        ),
        (
            "providers.local-vllm.base",
            "x",
            'providers.local-vllm.base: unknown key (did you mean "base_url"?)',
        ),
        ("providers.local-vllm", {"kind": "vllm"}, "providers.local-vllm.base_url: required"),
        (
            "providers.bad/name",
            {"kind": "vllm", "base_url": "http://x"},
            'providers["bad/name"]: invalid name "bad/name": use 1 to 64 of [A-Za-z0-9._-]',
        ),
        (
            "routes.chat.type",
            "embeddings",
            'routes.chat.type: unknown route type "embeddings" (use one of: chat, completion, embedding)',
        ),
        ("routes.chat.type", 3, "routes.chat.type: expected a string, got an integer (3)"),
        (
            "routes.chat.targets",
            {"provider": "local-vllm"},
            "routes.chat.targets: expected a list of {provider, model, weight}, got a mapping",
        ),
        (
            "routes.chat.targets",
            [],
            "routes.chat.targets: no targets: a route needs at least one {provider, model}",
        ),
        ("routes.chat.targets.0.weight", 1000, None),
        (
            "routes.chat.targets.0.weight",
            1001,
            "routes.chat.targets[0].weight: 1001 is out of range: use 1 to 1000",
        ),
        (
            "routes.chat.targets.0.weight",
            2.5,
            "routes.chat.targets[0].weight: expected an integer, got a number (2.5)",
        ),
        ("routes.chat.targets.0.provider", "", None),
        (
            "routes.chat.targets.0.modle",
            "x",
            'routes.chat.targets[0].modle: unknown key (did you mean "model"?)',
        ),
        (
            "routes.chat.targets.0",
            "local-vllm/sim-llama",
            "routes.chat.targets[0]: expected a mapping {provider, model, weight}, got a string",
        ),
        (
            "routes.chat.allow",
            [],
            'routes.chat.allow: no groups: list the groups that may call it, or "*" for every key',
        ),
        ("routes.chat.allow", "eng", "routes.chat.allow: expected a list of strings, got a string"),
        (
            "routes.chat.allow",
            ["ops"],
            'routes.chat.allow: unknown group "ops" (known: eng); groups come from teams.<team>.groups',
        ),
        ("routes.chat.alow", ["eng"], 'routes.chat.alow: unknown key (did you mean "allow"?)'),
        ("routes.chat", {"type": "chat", "allow": ["eng"]}, "routes.chat.targets: required"),
        (
            "routes.x" + "y" * 64,
            {"type": "chat", "targets": [{"model": "m"}], "allow": ["*"]},
            f'routes.x{"y" * 64}.name: invalid name "x{"y" * 64}": use 1 to 64 of [A-Za-z0-9._-]',
        ),
        (
            "teams.eng.groups",
            ["*"],
            'teams.eng.groups[0]: "*" is not a group name; it is for a route\'s allow',
        ),
        ("teams.eng.groups", "eng", "teams.eng.groups: expected a list of strings, got a string"),
        ("teams.eng.members", [], "teams.eng.members: unknown key (allowed: groups)"),
        ("teams.eng.group", [], 'teams.eng.group: unknown key (did you mean "groups"?)'),
        ("keys.0.team", "ops", 'keys[0].team: unknown team "ops" (known: eng)'),
        (
            "keys.0.name",
            "alice smith",
            'keys[0].name: invalid name "alice smith": use 1 to 64 of [A-Za-z0-9._-]',
        ),
        ("keys.0", {"name": "alice", "team": "eng"}, "keys[0].secret: required"),
        ("keys", {"alice": {}}, "keys: expected a list of {name, team, secret}, got a mapping"),
        (
            "limits",
            {"max_message_bytes": 1024},
            "limits.max_prompt_bytes: 1048576 is more than "
            "limits.max_message_bytes (1024): a prompt can never be larger than its message",
        ),
        ("limits", {"max_stop": -1}, "limits.max_stop: -1 is out of range: use 1 or more"),
        (
            "server",
            {"upstream_connect_timeout_s": 0},
            "server.upstream_connect_timeout_s: 0 is out of range: use more than 0",
        ),
        ("server", {"worker": 2}, 'server.worker: unknown key (did you mean "workers"?)'),
        (
            "server",
            {"zzz": 2},
            "server.zzz: unknown key (allowed: grace_s, upstream_connect_timeout_s, "
            "upstream_read_timeout_s, workers)",
        ),
    ],
)
def test_each_rule_reports_its_field_path(env: None, field: str, value: object, problem: str | None) -> None:
    data = copy.deepcopy(example())
    _set(data, field, value)
    if problem is None:
        parse_config(data, source="<test>")
    else:
        assert problems_of(data) == [problem]


def test_azure_with_api_version_and_anthropic_kinds_are_accepted(env: None) -> None:
    data = example()
    data["providers"]["az"] = {
        "kind": "azure",
        "base_url": "https://r.openai.azure.com",
        "api_version": "2024-10-21",
    }
    data["providers"]["claude"] = {"kind": "anthropic", "base_url": "https://api.anthropic.com/v1"}
    config = parse_config(data, source="<test>")
    assert config.providers["az"].api_version == "2024-10-21"


def test_a_broken_provider_or_team_is_not_also_unknown_where_used(env: None) -> None:
    data = example()
    data["providers"]["local-vllm"] = {"kind": "vllm"}  # base_url missing
    data["teams"]["eng"] = "eng"  # not a mapping
    problems = problems_of(data)
    assert problems == [
        "providers.local-vllm.base_url: required",
        "teams.eng: expected a mapping, got a string",
    ]


def test_a_route_still_reports_references_to_what_is_not_declared(env: None) -> None:
    data = example()
    data["teams"]["eng"] = "eng"
    data["routes"]["chat"]["targets"][0]["provider"] = "nope"
    assert problems_of(data) == [
        "teams.eng: expected a mapping, got a string",
        'routes.chat.targets[0].provider: unknown provider "nope" (known: local-vllm, openai)',
    ]


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (None, "the config is empty: expected a mapping of settings (see docs/config.md)"),
        (["listen"], "expected a mapping of settings at the top level, got a list"),
        ({1: "x"}, "key 1 is an integer (1): names must be strings (quote it)"),
    ],
)
def test_the_top_level_must_be_a_mapping(data: object, problem: str) -> None:
    assert problems_of(data) == [problem]


def test_load_config_reports_unreadable_files_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "nope.yaml")
    assert caught.value.problems == ["cannot read the config file: No such file or directory"]

    bad = tmp_path / "bad.yaml"
    bad.write_text("listen: 127.0.0.1:1\nroutes: {chat: [\n")
    with pytest.raises(ConfigError) as caught:
        load_config(bad)
    [problem] = caught.value.problems
    assert problem.startswith("line 3, column 1: bad YAML: ")

    binary = tmp_path / "binary.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(ConfigError) as caught:
        load_config(binary)
    assert caught.value.problems == ["the config file is not UTF-8 text"]


def test_duplicate_yaml_keys_are_problems_not_silently_the_last(env: None, tmp_path: Path) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text(EXAMPLE + "routes:\n  chat: {type: chat, targets: [{model: m}], allow: ['*']}\n")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.problems == [
        'line 17: duplicate key "routes" (YAML would silently keep only the last)'
    ]


def test_config_error_str_lists_every_problem_on_its_own_line() -> None:
    error = ConfigError(["a: one", "b: two"], source="x.yaml")
    assert str(error).splitlines() == ["invalid config x.yaml (2 problems):", "  a: one", "  b: two"]
    assert error.problems == ["a: one", "b: two"]


# ------------------------------------------------------------ shared validators


def test_route_problems_is_pure_and_prefixes_the_given_path() -> None:
    spec = RouteSpec(
        name="n",
        type="chat",
        targets=(TargetSpec("p", "m", 1), TargetSpec("p", "m", 2), TargetSpec("", "", 1)),
        allow=frozenset({"g", "h"}),
    )
    assert route_problems(spec, providers={"p"}, groups={"g"}, path="route") == [
        "route.targets[1]: same provider and model as route.targets[0]",
        "route.targets[2].model: empty: name the model to send upstream",
        'route.allow: unknown group "h" (known: g); groups come from teams.<team>.groups',
    ]
    assert spec.models == ("m", "")


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///relative/state.db", "relative/state.db"),
        ("sqlite:////absolute/state.db", "/absolute/state.db"),
        ("sqlite://:memory:", ":memory:"),
    ],
)
def test_sqlite_urls_name_their_file(url: str, path: str) -> None:
    assert state_problem(url) is None
    assert sqlite_path(url) == path


def test_sqlite_path_refuses_what_state_problem_refuses() -> None:
    with pytest.raises(ValueError, match="not supported yet: use sqlite"):
        sqlite_path("postgresql://db/x")


def test_the_config_tree_is_frozen(env: None) -> None:
    config = parse_config(example(), source="<test>")
    with pytest.raises(AttributeError):
        config.listen = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.routes["new"] = config.routes["chat"]  # type: ignore[index]
    assert os.fspath(config.source) == "<test>"
