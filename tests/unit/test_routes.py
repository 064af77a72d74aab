"""The route table: config routes plus admin routes, over the real SQLite store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from router.config import GatewayConfig, RouteSpec, TargetSpec, parse_config, route_problems
from router.domain import Principal
from router.errors import FailedPrecondition, InvalidRequest, NotFound
from router.routes import RouteTable
from router.store import SqliteStore


def make_config(**extra: Any) -> GatewayConfig:
    data: dict[str, Any] = {
        "providers": {"vllm-a": {"kind": "vllm", "base_url": "http://127.0.0.1:8001/v1"}},
        "routes": {
            "chat": {"type": "chat", "targets": [{"provider": "vllm-a", "model": "m"}], "allow": ["eng"]},
            "open": {"type": "completion", "targets": [{"model": "m"}], "allow": ["*"]},
            "ml-embed": {"type": "embedding", "targets": [{"model": "e5"}], "allow": ["ml"]},
        },
        "teams": {"eng": {"groups": ["eng"]}, "ml": {"groups": ["ml"]}},
        **extra,
    }
    return parse_config(data, source="<test>")


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    return tmp_path / "state.db"


@pytest.fixture
async def store(db_path: Path) -> AsyncIterator[SqliteStore]:
    opened = await SqliteStore.open(str(db_path))
    yield opened
    await opened.close()


@pytest.fixture
async def table(store: SqliteStore) -> RouteTable:
    return await RouteTable.load(make_config(), store)


def spec(name: str, *, provider: str = "vllm-a", allow: tuple[str, ...] = ("eng",)) -> RouteSpec:
    return RouteSpec(
        name=name,
        type="chat",
        targets=(TargetSpec(provider=provider, model="m", weight=3),),
        allow=frozenset(allow),
        configured=True,  # what the caller says here is ignored: admin routes are never configured
    )


ENG = Principal("key_cfg_alice", "alice", "eng", frozenset({"eng"}))
ML = Principal("key_cfg_mo", "mo", "ml", frozenset({"ml"}))
ADMIN = Principal("admin-0", "admin-0", "", frozenset(), is_admin=True)


# -- reads


async def test_config_routes_are_served_and_read_only(table: RouteTable) -> None:
    chat = table.get("chat")
    assert chat.configured and chat.targets == (TargetSpec("vllm-a", "m", 1),)
    assert [r.name for r in table.all()] == ["chat", "ml-embed", "open"]


async def test_an_unknown_route_is_not_found(table: RouteTable) -> None:
    with pytest.raises(NotFound) as caught:
        table.get("nope")
    assert str(caught.value) == 'no route named "nope"; ListRoutes shows the routes your key may use'


async def test_visible_to_follows_the_access_lists(table: RouteTable) -> None:
    assert [r.name for r in table.visible_to(ENG)] == ["chat", "open"]
    assert [r.name for r in table.visible_to(ML)] == ["ml-embed", "open"]
    assert [r.name for r in table.visible_to(ADMIN)] == ["chat", "ml-embed", "open"]


# -- writes


async def test_upsert_adds_a_route_at_once_and_persists_it(table: RouteTable, db_path: Path) -> None:
    stored = await table.upsert(spec("nightly"))
    assert stored == RouteSpec("nightly", "chat", (TargetSpec("vllm-a", "m", 3),), frozenset({"eng"}), False)
    assert table.get("nightly") == stored
    assert [r.name for r in table.visible_to(ENG)] == ["chat", "nightly", "open"]

    other = await SqliteStore.open(str(db_path))
    try:
        restarted = await RouteTable.load(make_config(), other)
        assert restarted.get("nightly") == stored
    finally:
        await other.close()


async def test_upsert_replaces(table: RouteTable, store: SqliteStore) -> None:
    await table.upsert(spec("nightly"))
    await table.upsert(spec("nightly", provider="", allow=("ml",)))
    assert table.get("nightly").allow == frozenset({"ml"})
    assert table.get("nightly").targets[0].provider == ""
    assert [r.allow for r in await store.list_routes()] == [frozenset({"ml"})]


async def test_invalid_routes_list_every_problem_and_change_nothing(
    table: RouteTable, store: SqliteStore
) -> None:
    bad = RouteSpec(
        name="bad name",
        type="chatty",
        targets=(TargetSpec("no-such", "m", 0),),
        allow=frozenset({"nobody"}),
        configured=False,
    )
    with pytest.raises(InvalidRequest) as caught:
        await table.upsert(bad)
    assert str(caught.value) == 'invalid route "bad name": ' + "; ".join(
        [
            'route.name: invalid name "bad name": use 1 to 64 of [A-Za-z0-9._-]',
            'route.type: unknown route type "chatty" (use one of: chat, completion, embedding)',
            'route.targets[0].provider: unknown provider "no-such" (known: vllm-a)',
            "route.targets[0].weight: 0 is out of range: use 1 to 1000",
            'route.allow: unknown group "nobody" (known: eng, ml); groups come from teams.<team>.groups',
        ]
    )
    with pytest.raises(
        InvalidRequest, match='no groups: list the groups that may call it, or "\\*" for every key'
    ):
        await table.upsert(spec("x", allow=()))
    with pytest.raises(InvalidRequest, match="no targets"):
        await table.upsert(RouteSpec("x", "chat", (), frozenset({"*"}), False))
    assert await store.list_routes() == []
    assert [r.name for r in table.all()] == ["chat", "ml-embed", "open"]


async def test_upsert_validates_with_the_config_s_own_rules(table: RouteTable) -> None:
    bad = RouteSpec("x", "chat", (TargetSpec("no-such", "", 5000),), frozenset(), False)
    expected = route_problems(bad, providers={"vllm-a"}, groups={"eng", "ml"}, path="route")
    with pytest.raises(InvalidRequest) as caught:
        await table.upsert(bad)
    assert str(caught.value) == 'invalid route "x": ' + "; ".join(expected)


async def test_config_routes_cannot_be_changed_or_deleted_here(table: RouteTable) -> None:
    with pytest.raises(FailedPrecondition, match='route "chat" is defined in the config file'):
        await table.upsert(spec("chat"))
    with pytest.raises(FailedPrecondition, match='route "chat" is defined in the config file'):
        await table.delete("chat")
    assert table.get("chat").configured


async def test_delete_removes_at_once_and_for_good(table: RouteTable, store: SqliteStore) -> None:
    await table.upsert(spec("nightly"))
    await table.delete("nightly")
    with pytest.raises(NotFound):
        table.get("nightly")
    assert await store.list_routes() == []
    with pytest.raises(NotFound, match='no route named "nightly" made with UpsertRoute'):
        await table.delete("nightly")


async def test_refresh_sees_routes_written_by_another_process(store: SqliteStore) -> None:
    here = await RouteTable.load(make_config(), store)
    there = await RouteTable.load(make_config(), store)
    await there.upsert(spec("nightly"))
    with pytest.raises(NotFound):
        here.get("nightly")
    await here.refresh()
    assert here.get("nightly").name == "nightly"
    await there.delete("nightly")
    await here.refresh()
    with pytest.raises(NotFound):
        here.get("nightly")


async def test_stored_routes_the_config_no_longer_supports_are_not_served_but_deletable(
    table: RouteTable, store: SqliteStore
) -> None:
    await table.upsert(spec("nightly"))
    await table.upsert(spec("shadowed", provider=""))
    changed = make_config(
        providers={"other": {"kind": "vllm", "base_url": "http://127.0.0.1:8002/v1"}},
        routes={
            "shadowed": {"type": "chat", "targets": [{"provider": "other", "model": "m"}], "allow": ["*"]}
        },
    )
    restarted = await RouteTable.load(changed, store)
    with pytest.raises(NotFound):
        restarted.get("nightly")  # its provider vllm-a is gone
    assert restarted.get("shadowed").configured  # the config's route wins
    await restarted.delete("nightly")
    assert [r.name for r in await store.list_routes()] == ["shadowed"]
