"""The SQLite store, on a real file under tmp_path."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from router.config import ConfigError, RouteSpec, TargetSpec
from router.errors import AlreadyExists
from router.store import BackendRecord, KeyRecord, SqliteStore, StoreError, open_store


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    opened = await SqliteStore.open(str(tmp_path / "state.db"))
    yield opened
    await opened.close()


def key(key_id: str, name: str, *, created: int = 1_000, secret_hash: str = "") -> KeyRecord:
    return KeyRecord(
        id=key_id,
        name=name,
        team="eng",
        secret_hash=secret_hash or f"hash-of-{key_id}",
        prefix="mg-AbCd",
        created_unix_ms=created,
    )


def route(name: str, *models: str, allow: frozenset[str] = frozenset({"eng"})) -> RouteSpec:
    return RouteSpec(
        name=name,
        type="chat",
        targets=tuple(TargetSpec(provider="", model=m, weight=i + 1) for i, m in enumerate(models)),
        allow=allow,
        configured=False,
    )


def backend(backend_id: str, *, expires: int = 60_000) -> BackendRecord:
    return BackendRecord(
        id=backend_id,
        url=f"http://10.0.0.7:8000/{backend_id}",
        models=("m1", "m2"),
        protocol="vllm",
        labels={"region": "eu", "gpu": "h100"},
        lease_ttl_s=30,
        lease_expires_unix_ms=expires,
        registered_unix_ms=1_000,
    )


async def test_open_store_creates_the_directory_the_schema_and_uses_wal(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "state.db"
    opened = await open_store(f"sqlite:///{path}")  # sqlite:/// + absolute path = sqlite:////...
    await opened.close()
    assert path.exists()
    with sqlite3.connect(path) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert connection.execute("SELECT component, version FROM schema_version").fetchall() == [
            ("control", 1)
        ]
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"schema_version", "keys", "routes", "backends"} <= tables


async def test_reopening_keeps_the_schema_and_data(tmp_path: Path) -> None:
    path = str(tmp_path / "state.db")
    first = await SqliteStore.open(path)
    await first.insert_key(key("key_000000000001", "alice"))
    await first.close()
    second = await SqliteStore.open(path)
    assert [k.name for k in await second.list_keys()] == ["alice"]
    await second.close()


async def test_a_database_newer_than_this_code_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    await (await SqliteStore.open(str(path))).close()  # creates schema 1
    with sqlite3.connect(path) as connection:
        connection.execute("UPDATE schema_version SET version = 99 WHERE component = 'control'")
    with pytest.raises(StoreError, match="schema version 99, newer than this meshgate knows"):
        await SqliteStore.open(str(path))


async def test_unsupported_state_urls_are_config_errors() -> None:
    with pytest.raises(ConfigError) as caught:
        await open_store("postgresql://db/meshgate")
    assert caught.value.problems == [
        "state: PostgreSQL is not supported yet: use sqlite (sqlite:///relative/path.db)"
    ]


async def test_an_in_memory_store_works() -> None:
    memory = await open_store("sqlite://:memory:")
    await memory.upsert_route(route("r", "m"))
    assert [r.name for r in await memory.list_routes()] == ["r"]
    await memory.close()


async def test_all_work_runs_on_one_worker_thread_off_the_loop(store: SqliteStore) -> None:
    idents = {await store._run(lambda _: threading.get_ident()) for _ in range(5)}
    assert len(idents) == 1
    assert threading.get_ident() not in idents


# -- keys


async def test_keys_insert_list_and_revoke(store: SqliteStore) -> None:
    alice = key("key_00000000000a", "alice", created=1_000)
    bob = key("key_00000000000b", "bob", created=2_000)
    await store.insert_key(bob)
    await store.insert_key(alice)
    assert await store.list_keys() == [alice, bob]

    revoked = await store.revoke_key(alice.id, 5_000)
    assert revoked is not None and revoked.revoked_unix_ms == 5_000 and revoked.revoked
    again = await store.revoke_key(alice.id, 9_000)
    assert again == revoked  # idempotent: keeps the first time
    assert await store.revoke_key("key_nope", 5_000) is None
    assert [(k.name, k.revoked_unix_ms) for k in await store.list_keys()] == [("alice", 5_000), ("bob", 0)]


async def test_names_are_unique_among_live_keys_only(store: SqliteStore) -> None:
    await store.insert_key(key("key_000000000001", "alice"))
    with pytest.raises(AlreadyExists, match='a live key is already named "alice"'):
        await store.insert_key(key("key_000000000002", "alice"))
    await store.revoke_key("key_000000000001", 5_000)
    await store.insert_key(key("key_000000000003", "alice"))
    assert [k.id for k in await store.list_keys()] == ["key_000000000001", "key_000000000003"]


async def test_a_secret_hash_is_stored_once(store: SqliteStore) -> None:
    await store.insert_key(key("key_000000000001", "alice", secret_hash="h"))
    with pytest.raises(AlreadyExists):
        await store.insert_key(key("key_000000000002", "bob", secret_hash="h"))


def test_key_records_do_not_show_their_hash() -> None:
    assert "hash-of" not in repr(key("key_000000000001", "alice"))


# -- routes


async def test_routes_upsert_replace_list_and_delete(store: SqliteStore) -> None:
    await store.upsert_route(route("b", "m1"))
    await store.upsert_route(route("a", "m1", "m2", allow=frozenset({"*"})))
    assert await store.list_routes() == [route("a", "m1", "m2", allow=frozenset({"*"})), route("b", "m1")]

    replaced = RouteSpec(
        name="b",
        type="embedding",
        targets=(TargetSpec("openai", "e5", 7),),
        allow=frozenset({"eng", "ml"}),
        configured=True,  # the store never keeps this flag
    )
    await store.upsert_route(replaced)
    [_, b] = await store.list_routes()
    assert b == RouteSpec("b", "embedding", (TargetSpec("openai", "e5", 7),), frozenset({"eng", "ml"}), False)

    assert await store.delete_route("a") is True
    assert await store.delete_route("a") is False
    assert [r.name for r in await store.list_routes()] == ["b"]


# -- backends


async def test_backends_upsert_replace_list_and_delete(store: SqliteStore) -> None:
    await store.upsert_backend(backend("reg-b"))
    await store.upsert_backend(backend("reg-a"))
    listed = await store.list_backends()
    assert [b.id for b in listed] == ["reg-a", "reg-b"]
    first = listed[0]
    assert first.models == ("m1", "m2")
    assert dict(first.labels) == {"region": "eu", "gpu": "h100"}
    assert (first.lease_ttl_s, first.lease_expires_unix_ms, first.registered_unix_ms) == (30.0, 60_000, 1_000)

    await store.upsert_backend(backend("reg-a", expires=90_000))
    assert [b.lease_expires_unix_ms for b in await store.list_backends()] == [90_000, 60_000]
    assert await store.delete_backend("reg-a") is True
    assert await store.delete_backend("reg-a") is False
    assert [b.id for b in await store.list_backends()] == ["reg-b"]


# -- lifecycle


async def test_close_is_idempotent_and_later_calls_fail_clearly(tmp_path: Path) -> None:
    closing = await SqliteStore.open(str(tmp_path / "state.db"))
    await closing.close()
    await closing.close()
    with pytest.raises(StoreError, match="is closed"):
        await closing.list_keys()


async def test_calls_made_before_close_finish_first(tmp_path: Path) -> None:
    closing = await SqliteStore.open(str(tmp_path / "state.db"))
    # gather starts the upsert first: it queues its work, then close queues behind it.
    await asyncio.gather(closing.upsert_route(route("r", "m")), closing.close())
    reopened = await SqliteStore.open(str(tmp_path / "state.db"))
    assert [r.name for r in await reopened.list_routes()] == ["r"]
    await reopened.close()


async def test_an_unopenable_file_is_a_store_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="cannot open the state database"):
        await SqliteStore.open(str(blocker / "state.db"))
