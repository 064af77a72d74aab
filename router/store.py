"""Durable control-plane state: keys, routes made through the Admin API, and
registered backends.

    store = await open_store("sqlite:///.meshgate/meshgate.db")
    await store.insert_key(record)
    ...
    await store.close()

``Store`` is the interface (PostgreSQL can implement it later); ``SqliteStore``
is the embedded default: one SQLite file in WAL mode. The store holds what
must survive a restart and nothing else; the gateway keeps its working copies
in memory (``KeyRing``, ``RouteTable``, the backend registry), so no read on
the request path touches it.

Secrets never reach the store: keys arrive here as a SHA-256 hash and a short
display prefix.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TypeVar

from router.config import ConfigError, RouteSpec, TargetSpec, sqlite_path
from router.errors import AlreadyExists, Unavailable

__all__ = [
    "BackendRecord",
    "KeyRecord",
    "SqliteStore",
    "Store",
    "StoreError",
    "open_store",
]

log = logging.getLogger("meshgate.store")

_T = TypeVar("_T")


class StoreError(Unavailable):
    """The state store failed (disk full, file locked too long, corrupt file...).

    UNAVAILABLE to callers: the request may succeed later. The message names
    the store's file, never any key material."""


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """A consumer key made with ``CreateKey``.

    ``id`` is ``"key_<12 hex>"``, safe to show and log. ``secret_hash`` is the
    hex SHA-256 of the secret (never the secret); ``prefix`` its first
    characters, to tell keys apart. ``revoked_unix_ms`` is 0 while the key is
    valid.
    """

    id: str
    name: str
    team: str
    secret_hash: str = field(repr=False)
    prefix: str
    created_unix_ms: int
    revoked_unix_ms: int = 0

    @property
    def revoked(self) -> bool:
        return self.revoked_unix_ms != 0


@dataclass(frozen=True, slots=True)
class BackendRecord:
    """A registered model host, as stored. Lease times in Unix milliseconds."""

    id: str
    url: str
    models: tuple[str, ...]
    protocol: str
    labels: Mapping[str, str]
    lease_ttl_s: float
    lease_expires_unix_ms: int
    registered_unix_ms: int


class Store(abc.ABC):
    """Durable state. Contract for every implementation:

    - Every method is a coroutine that never blocks the event loop.
    - Calls take effect in the order they were made, one at a time.
    - A call whose awaiting task is cancelled may still take effect.
    - Failures of the database raise ``StoreError``; nothing else escapes.
    - Routes read back have ``configured=False``.
    """

    @abc.abstractmethod
    async def close(self) -> None:
        """Finish the calls already made, then release the database. Idempotent;
        later calls raise ``StoreError``."""

    # -- keys
    @abc.abstractmethod
    async def insert_key(self, record: KeyRecord) -> None:
        """Store a new key. ``AlreadyExists`` if a live key has its name (or the
        id or hash is taken)."""

    @abc.abstractmethod
    async def revoke_key(self, key_id: str, at_unix_ms: int) -> KeyRecord | None:
        """Mark the key revoked at ``at_unix_ms`` and return it; ``None`` if no
        key has that id. Idempotent: a revoked key keeps its first revocation
        time."""

    @abc.abstractmethod
    async def list_keys(self) -> list[KeyRecord]:
        """Every stored key, revoked ones included, oldest first."""

    # -- routes
    @abc.abstractmethod
    async def upsert_route(self, spec: RouteSpec) -> None:
        """Create or replace the route named ``spec.name``."""

    @abc.abstractmethod
    async def delete_route(self, name: str) -> bool:
        """Delete a route; ``False`` if there was none."""

    @abc.abstractmethod
    async def list_routes(self) -> list[RouteSpec]:
        """Every stored route, by name."""

    # -- registered backends
    @abc.abstractmethod
    async def upsert_backend(self, record: BackendRecord) -> None:
        """Create or replace the backend with ``record.id``."""

    @abc.abstractmethod
    async def delete_backend(self, backend_id: str) -> bool:
        """Delete a backend; ``False`` if there was none."""

    @abc.abstractmethod
    async def list_backends(self) -> list[BackendRecord]:
        """Every stored backend, by id."""


async def open_store(url: str) -> Store:
    """Open the store a ``state`` URL names (see ``GatewayConfig.state``),
    creating the database, its parent directory and its schema as needed.

    ``ConfigError`` for a URL that names no supported store; ``StoreError`` if
    the database cannot be opened or is newer than this version knows.
    """
    try:
        path = sqlite_path(url)
    except ValueError as exc:
        raise ConfigError([f"state: {exc}"], source="state URL") from None
    return await SqliteStore.open(path)


# ----------------------------------------------------------------------- SQLite

_COMPONENT = "control"
"""This module's row in ``schema_version``; other modules sharing the file
(the ledger) keep their own rows there."""

_MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: keys, routes, registered backends.
    (
        """CREATE TABLE keys (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL,
            team TEXT NOT NULL,
            secret_hash TEXT NOT NULL UNIQUE,
            prefix TEXT NOT NULL,
            created_unix_ms INTEGER NOT NULL,
            revoked_unix_ms INTEGER NOT NULL DEFAULT 0
        )""",
        # Names are unique among live keys only: a revoked key's name may be reused.
        "CREATE UNIQUE INDEX keys_live_name ON keys (name) WHERE revoked_unix_ms = 0",
        """CREATE TABLE routes (
            name TEXT PRIMARY KEY,
            type TEXT NOT NULL,
            targets TEXT NOT NULL,
            allow TEXT NOT NULL
        )""",
        """CREATE TABLE backends (
            id TEXT PRIMARY KEY,
            url TEXT NOT NULL,
            models TEXT NOT NULL,
            protocol TEXT NOT NULL,
            labels TEXT NOT NULL,
            lease_ttl_s REAL NOT NULL,
            lease_expires_unix_ms INTEGER NOT NULL,
            registered_unix_ms INTEGER NOT NULL
        )""",
    ),
)
"""Schema migrations, in order: entry ``i`` takes the schema from version ``i``
to ``i + 1``. Append, never edit."""

_KEY_COLUMNS = "id, name, team, secret_hash, prefix, created_unix_ms, revoked_unix_ms"
_BACKEND_COLUMNS = "id, url, models, protocol, labels, lease_ttl_s, lease_expires_unix_ms, registered_unix_ms"


class SqliteStore(Store):
    """``Store`` on one SQLite file (WAL), or ``":memory:"``.

    All database work runs on one dedicated worker thread, which owns the
    connection (created there): calls are serialised by that thread's queue,
    and the event loop only awaits. Several gateway processes may open the
    same file; SQLite's locking (with a busy timeout) serialises their writes.
    Open with ``await SqliteStore.open(path)`` or ``open_store(url)``.
    """

    def __init__(self, path: str, executor: ThreadPoolExecutor, connection: sqlite3.Connection) -> None:
        self.path = path
        self._executor = executor
        self._connection = connection
        self._closed = False

    @classmethod
    async def open(cls, path: str) -> SqliteStore:
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="meshgate-store")
        loop = asyncio.get_running_loop()
        try:
            connection = await loop.run_in_executor(executor, _connect, path)
        except (sqlite3.Error, OSError) as exc:
            executor.shutdown(wait=False)
            raise StoreError(f"cannot open the state database {path}: {exc}") from exc
        except BaseException:
            executor.shutdown(wait=False)
            raise
        return cls(path, executor, connection)

    async def _run(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run ``work`` on the store's thread; the one place database errors
        become ``StoreError``."""
        if self._closed:
            raise StoreError(f"the state database {self.path} is closed")
        return await self._submit(work)

    async def _submit(self, work: Callable[[sqlite3.Connection], _T]) -> _T:
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, work, self._connection)
        except sqlite3.Error as exc:
            raise StoreError(f"the state database {self.path} failed: {exc}") from exc

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Queued behind every call already made, so those finish first.
        await self._submit(lambda connection: connection.close())
        # The thread is idle now: shutting down without waiting leaks nothing.
        self._executor.shutdown(wait=False)

    # -- keys

    async def insert_key(self, record: KeyRecord) -> None:
        def work(connection: sqlite3.Connection) -> None:
            try:
                connection.execute(
                    f"INSERT INTO keys ({_KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        record.id,
                        record.name,
                        record.team,
                        record.secret_hash,
                        record.prefix,
                        record.created_unix_ms,
                        record.revoked_unix_ms,
                    ),
                )
            except sqlite3.IntegrityError as exc:
                if "keys.name" in str(exc):
                    raise AlreadyExists(
                        f'a live key is already named "{record.name}": pick another name, '
                        "or revoke that key first"
                    ) from None
                raise AlreadyExists(f"key {record.id} (or its secret) already exists") from None

        await self._run(work)

    async def revoke_key(self, key_id: str, at_unix_ms: int) -> KeyRecord | None:
        def work(connection: sqlite3.Connection) -> KeyRecord | None:
            with _transaction(connection):
                connection.execute(
                    "UPDATE keys SET revoked_unix_ms = ? WHERE id = ? AND revoked_unix_ms = 0",
                    (at_unix_ms, key_id),
                )
                row = connection.execute(
                    f"SELECT {_KEY_COLUMNS} FROM keys WHERE id = ?", (key_id,)
                ).fetchone()
            return None if row is None else _key(row)

        return await self._run(work)

    async def list_keys(self) -> list[KeyRecord]:
        def work(connection: sqlite3.Connection) -> list[KeyRecord]:
            rows = connection.execute(f"SELECT {_KEY_COLUMNS} FROM keys ORDER BY created_unix_ms, id")
            return [_key(row) for row in rows]

        return await self._run(work)

    # -- routes

    async def upsert_route(self, spec: RouteSpec) -> None:
        targets = json.dumps(
            [{"provider": t.provider, "model": t.model, "weight": t.weight} for t in spec.targets]
        )
        allow = json.dumps(sorted(spec.allow))
        await self._run(
            lambda connection: connection.execute(
                "INSERT INTO routes (name, type, targets, allow) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (name) DO UPDATE SET "
                "type = excluded.type, targets = excluded.targets, allow = excluded.allow",
                (spec.name, spec.type, targets, allow),
            )
        )

    async def delete_route(self, name: str) -> bool:
        def work(connection: sqlite3.Connection) -> bool:
            return connection.execute("DELETE FROM routes WHERE name = ?", (name,)).rowcount > 0

        return await self._run(work)

    async def list_routes(self) -> list[RouteSpec]:
        def work(connection: sqlite3.Connection) -> list[tuple[str, str, str, str]]:
            return connection.execute(
                "SELECT name, type, targets, allow FROM routes ORDER BY name"
            ).fetchall()

        return [_route(*row) for row in await self._run(work)]

    # -- registered backends

    async def upsert_backend(self, record: BackendRecord) -> None:
        row = (
            record.id,
            record.url,
            json.dumps(list(record.models)),
            record.protocol,
            json.dumps(dict(record.labels), sort_keys=True),
            float(record.lease_ttl_s),
            record.lease_expires_unix_ms,
            record.registered_unix_ms,
        )
        await self._run(
            lambda connection: connection.execute(
                f"INSERT OR REPLACE INTO backends ({_BACKEND_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", row
            )
        )

    async def delete_backend(self, backend_id: str) -> bool:
        def work(connection: sqlite3.Connection) -> bool:
            return connection.execute("DELETE FROM backends WHERE id = ?", (backend_id,)).rowcount > 0

        return await self._run(work)

    async def list_backends(self) -> list[BackendRecord]:
        def work(connection: sqlite3.Connection) -> list[BackendRecord]:
            rows = connection.execute(f"SELECT {_BACKEND_COLUMNS} FROM backends ORDER BY id")
            return [_backend(row) for row in rows]

        return await self._run(work)


# Everything below runs on the store's thread.


def _connect(path: str) -> sqlite3.Connection:
    if path != ":memory:":
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, exist_ok=True)
    # isolation_level=None: autocommit; multi-statement writes open their own
    # transaction (_transaction), so nothing is ever left uncommitted.
    connection = sqlite3.connect(path, isolation_level=None)
    try:
        # Several processes may share the file: wait for a writer rather than fail.
        connection.execute("PRAGMA busy_timeout = 5000")
        mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if path != ":memory:" and str(mode).lower() != "wal":
            log.warning("state database %s: WAL unavailable, using journal mode %s", path, mode)
        # Control-plane writes are rare and must survive power loss (a revoked
        # key must stay revoked), so pay for a full sync on each commit.
        connection.execute("PRAGMA synchronous = FULL")
        _migrate(connection, path)
    except BaseException:
        connection.close()
        raise
    return connection


def _migrate(connection: sqlite3.Connection, path: str) -> None:
    with _transaction(connection):
        connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_version (component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
        )
        row = connection.execute(
            "SELECT version FROM schema_version WHERE component = ?", (_COMPONENT,)
        ).fetchone()
        current = 0 if row is None else int(row[0])
        if current > len(_MIGRATIONS):
            raise StoreError(
                f"the state database {path} has schema version {current}, newer than this "
                f"meshgate knows ({len(_MIGRATIONS)}): upgrade meshgate, or use another state file"
            )
        for version in range(current, len(_MIGRATIONS)):
            for statement in _MIGRATIONS[version]:
                connection.execute(statement)
        if current != len(_MIGRATIONS):
            connection.execute(
                "INSERT INTO schema_version (component, version) VALUES (?, ?) "
                "ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                (_COMPONENT, len(_MIGRATIONS)),
            )
            log.info("state database %s: schema %d -> %d", path, current, len(_MIGRATIONS))


@contextlib.contextmanager
def _transaction(connection: sqlite3.Connection) -> Iterator[None]:
    # IMMEDIATE takes the write lock up front, so a read-then-write cannot be
    # overtaken by another process between the two.
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def _key(row: tuple[str, str, str, str, str, int, int]) -> KeyRecord:
    return KeyRecord(
        id=row[0],
        name=row[1],
        team=row[2],
        secret_hash=row[3],
        prefix=row[4],
        created_unix_ms=int(row[5]),
        revoked_unix_ms=int(row[6]),
    )


def _route(name: str, type_: str, targets: str, allow: str) -> RouteSpec:
    return RouteSpec(
        name=name,
        type=type_,
        targets=tuple(
            TargetSpec(provider=t["provider"], model=t["model"], weight=int(t["weight"]))
            for t in json.loads(targets)
        ),
        allow=frozenset(json.loads(allow)),
        configured=False,
    )


def _backend(row: tuple[str, str, str, str, str, float, int, int]) -> BackendRecord:
    return BackendRecord(
        id=row[0],
        url=row[1],
        models=tuple(json.loads(row[2])),
        protocol=row[3],
        labels=MappingProxyType(json.loads(row[4])),
        lease_ttl_s=float(row[5]),
        lease_expires_unix_ms=int(row[6]),
        registered_unix_ms=int(row[7]),
    )
