"""Operations: API keys (scope ``keys``), plugins, the lifecycle graph, maintenance
(scope ``plugins``)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response
from litestar.params import FromPath, JSONBody

from ordnung.api.auth import admin
from ordnung.api.problems import problems
from ordnung.api.routes.common import LOCATION, caller, created, engine_of
from ordnung.api.routes.handlers import delete, get, post
from ordnung.api.schemas import KeyIn, KeyList
from ordnung.core.domain.access import IssuedKey
from ordnung.core.errors import InvalidInput


class AdminController(Controller):
    path = "/admin"
    tags = ["admin"]

    @get("/plugins", guards=[admin("plugins")])
    async def plugins(self, request: Request[Any, Any, Any]) -> list[dict[str, Any]]:
        """The installed plugins, their hooks and settings."""
        return engine_of(request).plugins()

    @get("/lifecycle", guards=[admin("plugins")])
    async def lifecycle(self, request: Request[Any, Any, Any]) -> dict[str, Any]:
        """The merged state machines (core plus plugin states)."""
        return engine_of(request).lifecycle()

    @post("/maintenance", guards=[admin("plugins")], status_code=200)
    async def maintenance(self, request: Request[Any, Any, Any]) -> dict[str, int]:
        """Deliver stranded events and retry failed plugin reactions now."""
        return await engine_of(request).run_maintenance()

    @get("/keys", guards=[admin("keys")])
    async def keys(self, request: Request[Any, Any, Any]) -> KeyList:
        """Every key: admin, storefront and staff-issued customer tokens (never secrets)."""
        return KeyList(items=await engine_of(request).access.list())

    @post("/keys", guards=[admin("keys")], status_code=201, responses=problems(404),
          response_headers=LOCATION)
    async def issue_key(self, request: Request[Any, Any, Any], data: JSONBody[KeyIn]
                        ) -> Response[IssuedKey]:
        """Create an admin or storefront key; the secret is in this response only. An admin
        key gets only scopes the calling key holds itself (403 otherwise)."""
        engine = engine_of(request)
        if data.kind == "storefront":
            if not data.channel:
                raise InvalidInput("a storefront key needs a channel", field="channel")
            await engine.channels.get(data.channel)
        issued = await engine.access.issue(data.kind, name=data.name, scopes=data.scopes,
                                           channel=data.channel,
                                           issuer=caller(request).scopes)
        return created(issued, f"/admin/keys/{issued.key.id}")

    @delete("/keys/{key_id:str}", guards=[admin("keys")], status_code=204,
            responses=problems(404))
    async def revoke(self, request: Request[Any, Any, Any], key_id: FromPath[str]) -> None:
        """Revoke a key at once, on every worker; only a key whose scopes the calling key
        holds all of (403 otherwise)."""
        await engine_of(request).access.revoke(key_id, issuer=caller(request).scopes)
