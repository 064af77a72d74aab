"""Keys and access: who is calling, and what they may call.

    keyring = await KeyRing.load(config, store)
    principal = keyring.authenticate(metadata.get("authorization"))   # authenticate stage
    authorize(principal, route)                                        # authorize stage
    require_admin(principal)                                           # every Admin RPC

Three kinds of key, all held in memory as SHA-256 hashes only:

- admin keys (``admin_keys`` in the config): ``Principal(key_id="admin-<i>",
  is_admin=True)``; may call everything.
- config keys (``keys`` in the config): ``key_id="key_cfg_<name>"``; read-only
  through the Admin API (remove them from the file).
- store keys (``CreateKey``): ``key_id="key_<12 hex>"``; persisted as hash and
  display prefix, revocable at once.

``authenticate`` is one hash and one dict lookup: no I/O, no await.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from router.config import ConfigError, GatewayConfig, RouteSpec, TeamSpec, name_problem
from router.domain import Principal
from router.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidRequest,
    NotFound,
    PermissionDenied,
    Unauthenticated,
)
from router.secrets import SecretError, SecretRef
from router.store import KeyRecord, Store

__all__ = [
    "KeyRing",
    "KeyView",
    "authorize",
    "hash_secret",
    "require_admin",
]

log = logging.getLogger("meshgate.auth")

SECRET_PREFIX = "mg-"
_DISPLAY_PREFIX_CHARS = len(SECRET_PREFIX) + 4  # "mg-AbCd": 24 of the secret's 256 bits
_CONFIG_KEY_ID = "key_cfg_"
_ADMIN_KEY_ID = "admin-"

_MISSING = (
    "missing credentials: send the call metadata `authorization: Bearer <meshgate key>` "
    "(ask an admin for a key: `meshgate keys create`)"
)
_MALFORMED = "malformed authorization metadata: send `authorization: Bearer <meshgate key>`"
_UNKNOWN = "unknown or revoked key: check the key you send, or ask an admin for a new one"


def hash_secret(secret: str) -> str:
    """The hex SHA-256 of a key's secret: what is stored and looked up.

    A fast, unsalted hash is right here (unlike for passwords): every key is
    a high-entropy random string (``CreateKey`` makes 256 random bits), so
    there is no dictionary to try, and a fast hash keeps ``authenticate`` at
    about a microsecond on every call.
    """
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _now_unix_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True, slots=True)
class KeyView:
    """A key as the Admin API shows it: never its hash or secret.

    ``revoked_unix_ms`` is 0 while the key is valid; ``created_unix_ms`` is 0
    for config keys; ``prefix`` is empty for config keys (their secrets are
    chosen by people and may be short).
    """

    id: str
    name: str
    team: str
    created_unix_ms: int
    revoked_unix_ms: int
    configured: bool
    prefix: str

    @classmethod
    def of(cls, record: KeyRecord) -> KeyView:
        return cls(
            id=record.id,
            name=record.name,
            team=record.team,
            created_unix_ms=record.created_unix_ms,
            revoked_unix_ms=record.revoked_unix_ms,
            configured=False,
            prefix=record.prefix,
        )


class KeyRing:
    """Every key the gateway accepts, by hash, in memory.

    Build with ``await KeyRing.load(config, store)``. One per process, used on
    its event loop (not thread-safe). ``create_key`` and ``revoke_key`` change
    the store and this process's memory at once. Other gateway processes on the
    same store see those changes when they call ``refresh()``.
    """

    def __init__(
        self,
        *,
        teams: Mapping[str, TeamSpec],
        static: Mapping[str, Principal],
        config_views: list[KeyView],
        store: Store,
        clock: Callable[[], int],
    ) -> None:
        self._teams = teams
        self._static = dict(static)  # hash -> Principal, config and admin keys
        self._config_views = config_views
        self._config_ids = frozenset(view.id for view in config_views)
        self._store = store
        self._clock = clock
        self._records: dict[str, KeyRecord] = {}  # id -> record, store keys incl. revoked
        self._by_hash: dict[str, Principal] = dict(self._static)
        self._lock = asyncio.Lock()

    @classmethod
    async def load(
        cls, config: GatewayConfig, store: Store, *, clock: Callable[[], int] = _now_unix_ms
    ) -> KeyRing:
        """Hash the config's admin and consumer keys (their secrets are read
        now and dropped) and load the store's keys.

        ``ConfigError`` if a secret cannot be read any more, or two keys share
        a secret; ``StoreError`` if the store fails.
        """
        static: dict[str, Principal] = {}
        owner: dict[str, str] = {}  # hash -> config path, to name duplicates
        problems: list[str] = []

        def add(path: str, ref: SecretRef, principal: Principal) -> None:
            try:
                digest = hash_secret(ref.resolve())
            except SecretError as exc:
                problems.append(f"{path}: {exc}")
                return
            if digest in owner:
                problems.append(f"{path}: same secret as {owner[digest]}; every key needs its own")
                return
            owner[digest] = path
            static[digest] = principal

        for index, ref in enumerate(config.admin_keys):
            key_id = f"{_ADMIN_KEY_ID}{index}"
            add(
                f"admin_keys[{index}]",
                ref,
                Principal(key_id=key_id, name=key_id, team="", groups=frozenset(), is_admin=True),
            )
        views: list[KeyView] = []
        for index, spec in enumerate(config.keys):
            key_id = f"{_CONFIG_KEY_ID}{spec.name}"
            team = config.teams.get(spec.team)
            groups = team.groups if team is not None else frozenset()
            add(
                f"keys[{index}].secret",
                spec.secret,
                Principal(key_id=key_id, name=spec.name, team=spec.team, groups=groups),
            )
            views.append(KeyView(key_id, spec.name, spec.team, 0, 0, configured=True, prefix=""))
        if problems:
            raise ConfigError(problems, source=config.source)
        ring = cls(teams=config.teams, static=static, config_views=views, store=store, clock=clock)
        await ring.refresh()
        return ring

    # -- hot path

    def authenticate(self, authorization: str | None) -> Principal:
        """The ``Principal`` for ``authorization: Bearer <key>`` metadata (the
        scheme is case-insensitive). ``Unauthenticated`` otherwise; the message
        never echoes the key."""
        if not authorization:
            raise Unauthenticated(_MISSING)
        parts = authorization.split(None, 1)
        if len(parts) != 2 or parts[0].lower() != "bearer":
            raise Unauthenticated(_MALFORMED)
        principal = self._by_hash.get(hash_secret(parts[1].strip()))
        if principal is None:
            raise Unauthenticated(_UNKNOWN)
        return principal

    # -- admin operations

    async def create_key(self, name: str, team: str) -> tuple[KeyRecord, str]:
        """Make a consumer key for ``team``; returns its record and its secret
        (``"mg-"`` + 43 URL-safe characters), which is kept nowhere.

        ``InvalidRequest`` for a bad name or unknown team; ``AlreadyExists`` if
        a live key already has the name. Usable as soon as this returns.
        """
        problem = name_problem(name)
        if problem is not None:
            raise InvalidRequest(f"key name: {problem}")
        spec = self._teams.get(team)
        if spec is None:
            known = ", ".join(sorted(self._teams)) or "none are configured"
            raise InvalidRequest(
                f'unknown team "{team}": use one of: {known} (teams come from the config file)'
            )
        async with self._lock:
            if name in self._live_names():
                raise AlreadyExists(
                    f'a live key is already named "{name}": pick another name, or revoke that key first'
                )
            secret = SECRET_PREFIX + secrets.token_urlsafe(32)
            record = KeyRecord(
                id="key_" + secrets.token_hex(6),
                name=name,
                team=team,
                secret_hash=hash_secret(secret),
                prefix=secret[:_DISPLAY_PREFIX_CHARS],
                created_unix_ms=self._clock(),
            )
            await self._store.insert_key(record)
            self._records[record.id] = record
            self._by_hash[record.secret_hash] = _principal(record, spec)
        log.info("created key %s (%s) for team %s", record.id, name, team)
        return record, secret

    async def revoke_key(self, key_id: str) -> KeyRecord:
        """Revoke a store key at once; returns its record. Idempotent (a
        revoked key keeps its first revocation time).

        ``NotFound`` for an unknown id; ``FailedPrecondition`` for a key from
        the config file.
        """
        if key_id in self._config_ids or key_id.startswith(_ADMIN_KEY_ID):
            raise FailedPrecondition(
                f'key "{key_id}" is defined in the config file; remove it there (and restart)'
            )
        async with self._lock:
            known = self._records.get(key_id)
            if known is not None:
                # Out of memory before the store call: if that call fails or is
                # cancelled, the key is still refused here (fail closed).
                self._by_hash.pop(known.secret_hash, None)
            record = await self._store.revoke_key(key_id, self._clock())
            if record is None:
                raise NotFound(f'no key with id "{key_id}": ListKeys shows the ids')
            self._records[record.id] = record
            self._by_hash.pop(record.secret_hash, None)
        log.info("revoked key %s (%s)", record.id, record.name)
        return record

    def list_keys(self, team: str = "", include_revoked: bool = False) -> list[KeyView]:
        """Config and store keys, sorted by team, name and creation time; only
        ``team``'s if given; revoked ones only if ``include_revoked``."""
        views = [*self._config_views, *(KeyView.of(record) for record in self._records.values())]
        return sorted(
            (
                view
                for view in views
                if (not team or view.team == team) and (include_revoked or not view.revoked_unix_ms)
            ),
            key=lambda view: (view.team, view.name, view.created_unix_ms, view.id),
        )

    async def refresh(self) -> None:
        """Reload the store's keys: picks up keys created or revoked by other
        gateway processes sharing the store."""
        # The read is inside the lock: a create or revoke in flight must not be
        # overwritten by a list read before it landed.
        async with self._lock:
            records = await self._store.list_keys()
            by_hash: dict[str, Principal] = {}
            for record in records:
                if record.revoked:
                    continue
                spec = self._teams.get(record.team)
                if spec is None:
                    log.warning(
                        "key %s (%s) belongs to team %s, which the config no longer defines: refused",
                        record.id,
                        record.name,
                        record.team,
                    )
                    continue
                by_hash[record.secret_hash] = _principal(record, spec)
            by_hash.update(self._static)  # a config key wins over any stored key
            self._records = {record.id: record for record in records}
            self._by_hash = by_hash

    def _live_names(self) -> set[str]:
        return {view.name for view in self._config_views} | {
            record.name for record in self._records.values() if not record.revoked
        }


def _principal(record: KeyRecord, team: TeamSpec) -> Principal:
    return Principal(key_id=record.id, name=record.name, team=record.team, groups=team.groups)


def authorize(principal: Principal, route: RouteSpec) -> None:
    """Let ``principal`` call ``route`` if it is an admin, the route allows
    ``"*"``, or their groups meet; ``PermissionDenied`` otherwise."""
    if principal.is_admin or "*" in route.allow or not principal.groups.isdisjoint(route.allow):
        return
    groups = ", ".join(sorted(principal.groups)) or "none"
    raise PermissionDenied(
        f'route "{route.name}" is not open to team "{principal.team}" (key "{principal.name}"): '
        f"ask an admin to add one of the team's groups ({groups}) to the route's allow list"
    )


def require_admin(principal: Principal) -> None:
    """``PermissionDenied`` unless ``principal`` holds an admin key."""
    if not principal.is_admin:
        raise PermissionDenied(
            f'this call needs an admin key; key "{principal.name}" of team "{principal.team}" '
            "is a consumer key"
        )
