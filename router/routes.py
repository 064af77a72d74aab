"""The route table: the config file's routes plus those made with ``UpsertRoute``.

    routes = await RouteTable.load(config, store)
    route = routes.get("chat")              # request path: a dict lookup
    routes.visible_to(principal)            # ListRoutes
    await routes.upsert(spec)               # UpsertRoute: validated like the config
    await routes.delete("nightly")          # DeleteRoute

Config routes (``configured=True``) are read-only here: change them in the
file. Admin routes are validated by ``router.config.route_problems``, the same
function that validates the file, against the config's providers and groups.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging

from router.config import GatewayConfig, RouteSpec, route_problems
from router.domain import Principal
from router.errors import FailedPrecondition, InvalidRequest, NotFound
from router.store import Store

__all__ = ["RouteTable"]

log = logging.getLogger("meshgate.routes")


class RouteTable:
    """Every route this gateway serves, by name, in memory.

    Build with ``await RouteTable.load(config, store)``. One per process, used
    on its event loop (not thread-safe). Reads never touch the store; writes
    go to the store, then to memory, one at a time. Other gateway processes on
    the same store see writes when they call ``refresh()``.
    """

    def __init__(self, config: GatewayConfig, store: Store) -> None:
        self._configured: dict[str, RouteSpec] = dict(config.routes)
        self._providers = frozenset(config.providers)
        self._groups = config.groups
        self._store = store
        self._routes: dict[str, RouteSpec] = dict(self._configured)
        self._sorted: list[RouteSpec] = self._sort()
        self._lock = asyncio.Lock()

    @classmethod
    async def load(cls, config: GatewayConfig, store: Store) -> RouteTable:
        """The config's routes plus the store's (``StoreError`` if it fails)."""
        table = cls(config, store)
        await table.refresh()
        return table

    # -- reads (hot path)

    def get(self, name: str) -> RouteSpec:
        """The route named ``name``; ``NotFound`` if there is none."""
        route = self._routes.get(name)
        if route is None:
            raise NotFound(f'no route named "{name}"; ListRoutes shows the routes your key may use')
        return route

    def visible_to(self, principal: Principal) -> list[RouteSpec]:
        """The routes ``principal`` may call (``router.auth.authorize``'s rule), by name."""
        if principal.is_admin:
            return list(self._sorted)
        groups = principal.groups
        return [route for route in self._sorted if "*" in route.allow or not groups.isdisjoint(route.allow)]

    def all(self) -> list[RouteSpec]:
        """Every route, by name."""
        return list(self._sorted)

    # -- writes (Admin API)

    async def upsert(self, spec: RouteSpec) -> RouteSpec:
        """Create or replace an admin route; returns it as stored.

        ``InvalidRequest`` listing every problem (the config's own rules);
        ``FailedPrecondition`` if a config route has the name.
        """
        self._refuse_configured(spec.name, "change")
        problems = route_problems(spec, providers=self._providers, groups=self._groups, path="route")
        if problems:
            raise InvalidRequest(f'invalid route "{spec.name}": ' + "; ".join(problems))
        route = dataclasses.replace(spec, configured=False)
        async with self._lock:
            await self._store.upsert_route(route)
            self._routes[route.name] = route
            self._sorted = self._sort()
        log.info("route %s upserted: %s -> %s", route.name, route.type, ", ".join(route.models))
        return route

    async def delete(self, name: str) -> None:
        """Delete an admin route. ``NotFound`` if there is none;
        ``FailedPrecondition`` for a config route."""
        self._refuse_configured(name, "delete")
        async with self._lock:
            removed = await self._store.delete_route(name)
            known = self._routes.pop(name, None) is not None
            self._sorted = self._sort()
        if not (removed or known):
            raise NotFound(f'no route named "{name}" made with UpsertRoute; ListAllRoutes shows them all')
        log.info("route %s deleted", name)

    async def refresh(self) -> None:
        """Reload the store's routes: picks up changes made by other gateway
        processes sharing the store."""
        async with self._lock:
            stored = await self._store.list_routes()
            routes = dict(self._configured)
            for route in stored:
                if route.name in routes:
                    log.warning("stored route %s is shadowed by the config route of that name", route.name)
                    continue
                # Providers or groups may have left the config since the route
                # was stored: serve only what is still valid, and say why.
                problems = route_problems(route, providers=self._providers, groups=self._groups, path="")
                if problems:
                    log.warning("stored route %s is not served: %s", route.name, "; ".join(problems))
                    continue
                routes[route.name] = route
            self._routes = routes
            self._sorted = self._sort()

    def _sort(self) -> list[RouteSpec]:
        return sorted(self._routes.values(), key=lambda route: route.name)

    def _refuse_configured(self, name: str, verb: str) -> None:
        if name in self._configured:
            raise FailedPrecondition(
                f'route "{name}" is defined in the config file ({verb} it there); '
                "UpsertRoute and DeleteRoute manage only the routes made with UpsertRoute"
            )
