"""The OpenAPI document states who may call every operation, and what it does.

Every operation carries a one-line ``summary`` and an ``x-ordnung-access`` extension (the
kinds of caller and the admin scope) with the same statement in its description. Both
come from the guards that enforce access (``api/access.py``), so this test also checks
the document against the API: an operation said to be staff-only refuses a storefront
key, and one that needs a scope refuses a key with every other scope. A route without a
declared guard or a docstring stops the app from being built.
"""

from __future__ import annotations

import re
from typing import Any

import pytest
from litestar import Litestar, Request, get

from ordnung.api.access import CALLERS, AccessDocs, AccessUndeclared
from ordnung.api.auth import admin
from ordnung.core.domain.access import ADMIN_SCOPES
from tests.api_support import Api, api_client, expect

METHODS = {"get", "put", "post", "delete", "patch"}


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(method.upper(), path, op) for path, item in document["paths"].items()
            for method, op in item.items() if method in METHODS]


def concrete(path: str) -> str:
    """A path with made-up parameter values."""
    return re.sub(r"\{[^}]+\}", "x", path)


async def test_every_operation_states_its_callers_and_a_summary(database_url: str) -> None:
    async with api_client(database_url) as api:
        document = expect(await api.client.get("/schema/openapi.json"), 200)
        ops = operations(document)
        assert len(ops) > 60
        for method, path, op in ops:
            where = f"{method} {path}"
            summary = op.get("summary", "")
            assert summary and "\n" not in summary and "Route Decorator" not in summary, where
            access = op.get("x-ordnung-access")
            assert access, where
            assert access["callers"] and set(access["callers"]) <= set(CALLERS), where
            if "admin" in access["callers"]:
                assert access["admin_scope"] in ADMIN_SCOPES, where
            else:
                assert "admin_scope" not in access, where
            assert access["statement"].startswith("Who may call: "), where
            assert access["statement"] in op.get("description", ""), where
        by_route = {(m, p): op["x-ordnung-access"] for m, p, op in ops}
        # a few that matter, spelled out
        assert by_route[("POST", "/admin/keys")]["admin_scope"] == "keys"
        assert by_route[("GET", "/health")]["callers"] == ["public"]
        assert by_route[("POST", "/orders/{order_id}/payments/refund")] == {
            "callers": ["admin"], "admin_scope": "refunds",
            "statement": "Who may call: an admin key with the `refunds` scope."}
        assert set(by_route[("GET", "/orders/{order_id}/events")]["callers"]) == {
            "admin", "customer", "stream"}
        assert "cart" in by_route[("GET", "/carts/{cart_id}")]["callers"]
        assert "storefront" in by_route[("POST", "/carts")]["callers"]
        # staff get the order, everyone else the customer's view: an answer may match both
        answer = document["paths"]["/orders/{order_id}"]["get"]["responses"]["200"]
        assert answer["content"]["application/json"]["schema"] == {"anyOf": [
            {"$ref": "#/components/schemas/Order"},
            {"$ref": "#/components/schemas/CustomerOrder"}]}


async def test_no_route_hands_a_non_staff_caller_the_whole_order(database_url: str) -> None:
    """A route that returns an order to anyone but staff answers the customer's view (the
    ``order_view`` of ``api/routes/common.py``), so its schema offers ``CustomerOrder``:
    a new route that returns a bare ``Order`` to a customer fails here."""
    async with api_client(database_url) as api:
        document = expect(await api.client.get("/schema/openapi.json"), 200)
        whole = {"#/components/schemas/Order", "#/components/schemas/OrderPage"}
        offenders = []
        for method, path, op in operations(document):
            if not {"storefront", "customer", "cart", "stream"} & set(
                    op["x-ordnung-access"]["callers"]):
                continue
            for status, answer in op["responses"].items():
                schema = answer.get("content", {}).get("application/json", {}).get("schema")
                if status.startswith("2") and schema and schema.get("$ref") in whole:
                    offenders.append(f"{method} {path}")
        assert offenders == []


async def test_the_document_matches_what_the_api_enforces(database_url: str) -> None:
    async with api_client(database_url) as api:
        document = expect(await api.client.get("/schema/openapi.json"), 200)
        shop = await api.storefront("web")
        keys_by_scope = {scope: await api.admin_with(*[s for s in ADMIN_SCOPES if s != scope])
                         for scope in ADMIN_SCOPES}
        checked = 0
        for method, path, op in operations(document):
            access = op["x-ordnung-access"]
            if "public" in access["callers"]:
                continue
            url = concrete(path)
            answers = await _call(api, method, url, {})
            assert answers == 401, (method, path, answers)
            if not {"storefront", "cart"} & set(access["callers"]):
                answers = await _call(api, method, url, shop)
                assert answers == 403, (method, path, answers)
            scope = access.get("admin_scope")
            # no admin scope stated: no admin key at all, not even one with every scope
            answers = await _call(api, method, url,
                                  keys_by_scope[scope] if scope else api.admin)
            assert answers == 403, (method, path, scope, answers)
            checked += 1
        assert checked > 60


async def _call(api: Api, method: str, url: str, headers: dict[str, str]) -> int:
    body = {} if method in ("POST", "PUT", "PATCH") else None
    response = await api.client.request(method, url, headers=headers, json=body)
    return response.status_code


async def _unguarded(request: Request[Any, Any, Any]) -> dict[str, str]:
    """Looks harmless."""
    return {}


async def _undocumented(request: Request[Any, Any, Any]) -> dict[str, str]:
    return {}


def test_a_route_that_states_nothing_stops_the_app_from_being_built() -> None:
    with pytest.raises(AccessUndeclared, match="guard"):
        Litestar(route_handlers=[get("/new")(_unguarded)], plugins=[AccessDocs()])
    with pytest.raises(AccessUndeclared, match="docstring"):
        Litestar(route_handlers=[get("/new", guards=[admin("orders")])(_undocumented)],
                 plugins=[AccessDocs()])
    # declared and documented: fine
    Litestar(route_handlers=[get("/new", guards=[admin("orders")])(_unguarded)],
             plugins=[AccessDocs()])
