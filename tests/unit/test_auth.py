"""Keys and access, over the real SQLite store on a tmp_path file."""

from __future__ import annotations

import itertools
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from router.auth import KeyRing, KeyView, authorize, hash_secret, require_admin
from router.config import ConfigError, GatewayConfig, RouteSpec, TargetSpec, parse_config
from router.domain import Principal
from router.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from router.store import SqliteStore, Store, StoreError

ADMIN = "mg-unit-admin-secret-0001"
ALICE = "mg-unit-alice-secret-0002"


def make_config(monkeypatch: pytest.MonkeyPatch, **extra: Any) -> GatewayConfig:
    monkeypatch.setenv("MG_UNIT_ADMIN", ADMIN)
    monkeypatch.setenv("MG_UNIT_ALICE", ALICE)
    data: dict[str, Any] = {
        "admin_keys": ["${env:MG_UNIT_ADMIN}"],
        "teams": {"eng": {"groups": ["eng", "ml"]}, "ops": {"groups": ["ops"]}},
        "keys": [{"name": "alice", "team": "eng", "secret": "${env:MG_UNIT_ALICE}"}],
        **extra,
    }
    return parse_config(data, source="<test>")


@pytest.fixture
def config(monkeypatch: pytest.MonkeyPatch) -> GatewayConfig:
    return make_config(monkeypatch)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SqliteStore]:
    opened = await SqliteStore.open(str(db_path))
    yield opened
    await opened.close()


@pytest.fixture
async def ring(config: GatewayConfig, store: Store) -> KeyRing:
    ticks = itertools.count(1_000, 1_000)
    return await KeyRing.load(config, store, clock=lambda: next(ticks))


def bearer(secret: str) -> str:
    return f"Bearer {secret}"


# -- authenticate


async def test_config_and_admin_keys_authenticate(ring: KeyRing) -> None:
    assert ring.authenticate(bearer(ALICE)) == Principal(
        key_id="key_cfg_alice", name="alice", team="eng", groups=frozenset({"eng", "ml"})
    )
    admin = ring.authenticate(bearer(ADMIN))
    assert (admin.key_id, admin.is_admin) == ("admin-0", True)


@pytest.mark.parametrize(
    "header", [f"bearer {ALICE}", f"BEARER {ALICE}", f"  Bearer   {ALICE}  ", f"Bearer\t{ALICE}"]
)
async def test_the_scheme_is_case_insensitive(ring: KeyRing, header: str) -> None:
    assert ring.authenticate(header).name == "alice"


@pytest.mark.parametrize(
    ("header", "message"),
    [
        (None, "missing credentials: send the call metadata `authorization: Bearer <meshgate key>`"),
        ("", "missing credentials: send the call metadata `authorization: Bearer <meshgate key>`"),
        (ALICE, "malformed authorization metadata: send `authorization: Bearer <meshgate key>`"),
        (f"Basic {ALICE}", "malformed authorization metadata: send `authorization: Bearer <meshgate key>`"),
        ("Bearer ", "malformed authorization metadata: send `authorization: Bearer <meshgate key>`"),
        ("Bearer mg-not-a-key-at-all", "unknown or revoked key"),
    ],
)
async def test_bad_credentials_are_unauthenticated_without_echoing_the_key(
    ring: KeyRing, header: str | None, message: str
) -> None:
    with pytest.raises(Unauthenticated) as caught:
        ring.authenticate(header)
    assert str(caught.value).startswith(message)
    assert ALICE not in str(caught.value) and "mg-not-a-key" not in str(caught.value)


# -- create, revoke, persist


async def test_a_created_key_works_at_once(ring: KeyRing) -> None:
    record, secret = await ring.create_key("svc-search", "ops")
    assert re.fullmatch(r"mg-[A-Za-z0-9_-]{43}", secret)
    assert re.fullmatch(r"key_[0-9a-f]{12}", record.id)
    assert (record.name, record.team, record.prefix) == ("svc-search", "ops", secret[:7])
    assert record.secret_hash == hash_secret(secret)
    assert record.created_unix_ms == 1_000 and record.revoked_unix_ms == 0
    assert ring.authenticate(bearer(secret)) == Principal(
        key_id=record.id, name="svc-search", team="ops", groups=frozenset({"ops"})
    )


async def test_revoking_takes_effect_at_once_and_is_idempotent(ring: KeyRing) -> None:
    record, secret = await ring.create_key("svc", "eng")
    revoked = await ring.revoke_key(record.id)
    assert revoked.revoked_unix_ms == 2_000
    with pytest.raises(Unauthenticated, match="unknown or revoked key"):
        ring.authenticate(bearer(secret))
    again = await ring.revoke_key(record.id)
    assert again.revoked_unix_ms == 2_000


async def test_only_hashes_reach_the_database_file(ring: KeyRing, store: SqliteStore, db_path: Path) -> None:
    _, secret = await ring.create_key("svc", "eng")
    await store.close()  # checkpoint the WAL into the main file
    data = b"".join(p.read_bytes() for p in db_path.parent.iterdir() if p.name.startswith(db_path.name))
    assert secret.encode() not in data
    assert secret[7:].encode() not in data  # not even the part after the display prefix
    assert hash_secret(secret).encode() in data
    assert ALICE.encode() not in data and ADMIN.encode() not in data


async def test_a_restarted_keyring_over_the_same_file_still_knows_the_keys(
    config: GatewayConfig, ring: KeyRing, store: SqliteStore, db_path: Path
) -> None:
    kept, kept_secret = await ring.create_key("kept", "eng")
    gone, gone_secret = await ring.create_key("gone", "eng")
    await ring.revoke_key(gone.id)
    await store.close()

    reopened = await SqliteStore.open(str(db_path))
    try:
        restarted = await KeyRing.load(config, reopened)
        assert restarted.authenticate(bearer(kept_secret)).key_id == kept.id
        with pytest.raises(Unauthenticated):
            restarted.authenticate(bearer(gone_secret))
        assert [v.name for v in restarted.list_keys(include_revoked=True)] == ["alice", "gone", "kept"]
    finally:
        await reopened.close()


async def test_bad_create_requests_are_refused(ring: KeyRing) -> None:
    with pytest.raises(InvalidRequest, match=r'key name: invalid name "bad name!": use 1 to 64 of'):
        await ring.create_key("bad name!", "eng")
    with pytest.raises(InvalidRequest, match=r'unknown team "nope": use one of: eng, ops'):
        await ring.create_key("svc", "nope")
    with pytest.raises(AlreadyExists, match='a live key is already named "alice"'):
        await ring.create_key("alice", "eng")  # a config key's name
    record, _ = await ring.create_key("svc", "eng")
    with pytest.raises(AlreadyExists, match='a live key is already named "svc"'):
        await ring.create_key("svc", "ops")
    await ring.revoke_key(record.id)
    await ring.create_key("svc", "ops")  # the name is free again


async def test_bad_revoke_requests_are_refused(ring: KeyRing) -> None:
    with pytest.raises(NotFound, match='no key with id "key_000000000000"'):
        await ring.revoke_key("key_000000000000")
    with pytest.raises(FailedPrecondition, match="defined in the config file; remove it there"):
        await ring.revoke_key("key_cfg_alice")
    with pytest.raises(FailedPrecondition, match="defined in the config file; remove it there"):
        await ring.revoke_key("admin-0")
    assert ring.authenticate(bearer(ALICE)).name == "alice"


async def test_a_failed_revoke_still_refuses_the_key_here(
    ring: KeyRing, store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    record, secret = await ring.create_key("svc", "eng")

    async def broken(key_id: str, at_unix_ms: int) -> None:
        raise StoreError("the state database failed: disk I/O error")

    monkeypatch.setattr(store, "revoke_key", broken)
    with pytest.raises(StoreError):
        await ring.revoke_key(record.id)
    with pytest.raises(Unauthenticated):
        ring.authenticate(bearer(secret))


# -- list


async def test_list_keys_shows_config_and_store_keys_but_no_secrets(ring: KeyRing) -> None:
    live, _ = await ring.create_key("svc", "ops")
    dead, _ = await ring.create_key("old", "eng")
    await ring.revoke_key(dead.id)

    assert ring.list_keys() == [
        KeyView("key_cfg_alice", "alice", "eng", 0, 0, configured=True, prefix=""),
        KeyView(live.id, "svc", "ops", 1_000, 0, configured=False, prefix=live.prefix),
    ]
    assert [v.name for v in ring.list_keys(include_revoked=True)] == ["alice", "old", "svc"]
    assert [v.name for v in ring.list_keys(team="eng", include_revoked=True)] == ["alice", "old"]
    assert ring.list_keys(team="nope") == []
    assert KeyView.of(live) == ring.list_keys(team="ops")[0]
    assert not {"secret", "secret_hash", "hash"} & set(KeyView.__dataclass_fields__)


# -- several processes, config changes


async def test_refresh_sees_keys_made_and_revoked_by_another_process(
    config: GatewayConfig, store: Store
) -> None:
    here = await KeyRing.load(config, store)
    there = await KeyRing.load(config, store)
    record, secret = await there.create_key("svc", "eng")
    with pytest.raises(Unauthenticated):
        here.authenticate(bearer(secret))
    await here.refresh()
    assert here.authenticate(bearer(secret)).key_id == record.id
    await there.revoke_key(record.id)
    await here.refresh()
    with pytest.raises(Unauthenticated):
        here.authenticate(bearer(secret))


async def test_keys_of_a_team_gone_from_the_config_are_refused(
    monkeypatch: pytest.MonkeyPatch, ring: KeyRing, store: Store
) -> None:
    _, secret = await ring.create_key("svc", "ops")
    without_ops = make_config(monkeypatch, teams={"eng": {"groups": ["eng"]}})
    restarted = await KeyRing.load(without_ops, store)
    with pytest.raises(Unauthenticated):
        restarted.authenticate(bearer(secret))


async def test_two_config_keys_with_one_secret_are_a_config_error(
    monkeypatch: pytest.MonkeyPatch, store: Store
) -> None:
    config = make_config(
        monkeypatch,
        keys=[
            {"name": "alice", "team": "eng", "secret": "${env:MG_UNIT_ALICE}"},
            {"name": "alias", "team": "ops", "secret": "${env:MG_UNIT_ALICE}"},
            {"name": "boss", "team": "ops", "secret": "${env:MG_UNIT_ADMIN}"},
        ],
    )
    with pytest.raises(ConfigError) as caught:
        await KeyRing.load(config, store)
    assert caught.value.problems == [
        "keys[1].secret: same secret as keys[0].secret; every key needs its own",
        "keys[2].secret: same secret as admin_keys[0]; every key needs its own",
    ]


async def test_a_secret_gone_since_the_config_was_parsed_is_a_config_error(
    config: GatewayConfig, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MG_UNIT_ALICE")
    with pytest.raises(ConfigError) as caught:
        await KeyRing.load(config, store)
    assert caught.value.problems == ["keys[0].secret: environment variable MG_UNIT_ALICE is not set or empty"]


# -- authorize, require_admin


def chat_route(*allow: str) -> RouteSpec:
    return RouteSpec("chat", "chat", (TargetSpec("", "m"),), frozenset(allow), configured=True)


ALICE_P = Principal("key_cfg_alice", "alice", "eng", frozenset({"eng", "ml"}))
BOB_P = Principal("key_000000000001", "bob", "ops", frozenset({"ops"}))
ADMIN_P = Principal("admin-0", "admin-0", "", frozenset(), is_admin=True)


def test_authorize_lets_in_allowed_groups_star_and_admins() -> None:
    authorize(ALICE_P, chat_route("ml"))
    authorize(BOB_P, chat_route("*"))
    authorize(ADMIN_P, chat_route("ml"))


def test_authorize_names_the_route_and_team_when_it_refuses() -> None:
    with pytest.raises(PermissionDenied) as caught:
        authorize(BOB_P, chat_route("eng", "ml"))
    assert str(caught.value) == (
        'route "chat" is not open to team "ops" (key "bob"): '
        "ask an admin to add one of the team's groups (ops) to the route's allow list"
    )


def test_require_admin() -> None:
    require_admin(ADMIN_P)
    with pytest.raises(PermissionDenied, match="this call needs an admin key"):
        require_admin(ALICE_P)
