"""No privilege escalation through API keys (HTTP API, SQLite and PostgreSQL).

Found: an admin key holding only the ``plugins`` scope issued a key with ``refunds`` and
``payments``, which then refunded. Now managing keys needs the ``keys`` scope, and a key
issues (and revokes) only keys whose scopes it holds all of itself: 403 otherwise, and
no key is stored.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx

from ordnung.api.app import create_app
from ordnung.core.domain.access import ADMIN_SCOPES
from tests.api_support import Api, api_client, bearer, expect, expect_problem


async def key_count(api: Api) -> int:
    rows = await api.engine.db.fetch("SELECT COUNT(*) AS n FROM api_keys")
    return int(rows[0]["n"])


def admin_body(*scopes: str) -> dict[str, Any]:
    return {"kind": "admin", "name": "attempt", "scopes": list(scopes)}


async def test_a_plugins_key_issues_no_key_at_all(database_url: str) -> None:
    async with api_client(database_url) as api:
        plugins_only = await api.admin_with("plugins")
        before = await key_count(api)
        for body in (admin_body("refunds", "payments"), admin_body("plugins"), admin_body(),
                     {"kind": "storefront", "channel": "web"}):
            problem = expect_problem(await api.client.post("/admin/keys", json=body,
                                                           headers=plugins_only),
                                     403, "forbidden")
            assert "keys" in problem["detail"]
        expect_problem(await api.client.get("/admin/keys", headers=plugins_only), 403,
                       "forbidden")
        bootstrap_id = (await api.engine.access.verify(api.admin["Authorization"][7:]))
        assert bootstrap_id is not None
        expect_problem(await api.client.delete(f"/admin/keys/{bootstrap_id.key_id}",
                                               headers=plugins_only), 403, "forbidden")
        assert await key_count(api) == before
        # the plugins routes still answer it
        expect(await api.client.get("/admin/plugins", headers=plugins_only), 200)


async def test_a_key_issues_only_keys_with_a_subset_of_its_scopes(database_url: str) -> None:
    async with api_client(database_url) as api:
        keeper = await api.admin_with("keys", "orders")
        before = await key_count(api)
        for scopes in (("refunds",), ("orders", "refunds"), ("keys", "orders", "payments")):
            problem = expect_problem(await api.client.post(
                "/admin/keys", json=admin_body(*scopes), headers=keeper), 403, "forbidden")
            assert "refunds" in problem["detail"] or "payments" in problem["detail"], problem
            assert problem["missing_scopes"], problem
        assert await key_count(api) == before

        # a subset (or the same) is fine, and so is a storefront key
        orders_only = expect(await api.client.post("/admin/keys", json=admin_body("orders"),
                                                   headers=keeper), 201)
        assert orders_only["key"]["scopes"] == ["orders"]
        same = expect(await api.client.post("/admin/keys", json=admin_body("keys", "orders"),
                                            headers=keeper), 201)
        expect(await api.client.post("/admin/keys", json={"kind": "storefront",
                                                          "channel": "web"},
                                     headers=keeper), 201)
        # what it issued cannot refund either
        refund = await api.client.post("/orders/ord_x/payments/refund", json={"amount": 1},
                                       headers=bearer(orders_only["secret"]))
        expect_problem(refund, 403, "forbidden")

        # revoking: its own kind of key yes, a stronger one no
        expect(await api.client.delete(f"/admin/keys/{same['key']['id']}",
                                       headers=keeper), 204)
        strong = await api.issue_key("admin", scopes=["orders", "refunds"])
        expect_problem(await api.client.delete(f"/admin/keys/{strong['key']['id']}",
                                               headers=keeper), 403, "forbidden")
        still = expect(await api.client.get("/orders", headers=bearer(strong["secret"])), 200)
        assert "items" in still

        # the bootstrap key holds every scope, keys included, and issues anything
        everything = expect(await api.client.post(
            "/admin/keys", json=admin_body(*ADMIN_SCOPES), headers=api.admin), 201)
        assert sorted(everything["key"]["scopes"]) == sorted(ADMIN_SCOPES)


async def test_a_bootstrap_key_from_before_the_keys_scope_gains_it(database_url: str) -> None:
    secret = "sk_old_bootstrap_key_0123456789abcdef"
    async with api_client(database_url) as api:
        old = [s for s in ADMIN_SCOPES if s != "keys"]
        await api.engine.access.issue("admin", name="old bootstrap", scopes=old, secret=secret)
        expect_problem(await api.client.get("/admin/keys", headers=bearer(secret)), 403,
                       "forbidden")
        # the next start with ORDNUNG_ADMIN_KEY set to it brings it up to every scope
        app = create_app(engine=api.engine, admin_key=secret, demo=False)
        async with app.lifespan(), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
                base_url="http://ordnung.test") as client:
            listed = expect(await client.get("/admin/keys", headers=bearer(secret)), 200)
        mine = [k for k in listed["items"] if k["name"] == "old bootstrap"]
        assert sorted(mine[0]["scopes"]) == sorted(ADMIN_SCOPES)


def test_the_readme_lists_exactly_the_admin_scopes_of_the_code() -> None:
    """README "Who may do what" and "Using the API" name every scope, and no other."""
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    trust = readme.split("### Who may do what", 1)[1].split("\n### ", 1)[0]
    scopes_paragraph = trust.split("Each holds scopes:", 1)[1].split("A scope opens", 1)[0]
    assert set(re.findall(r"`([a-z]+)`", scopes_paragraph)) == set(ADMIN_SCOPES)
    using = readme.split("## Using the API", 1)[1].split("an admin key carries scopes", 1)[1]
    listed = using.split(")", 1)[0]
    assert set(re.findall(r"`([a-z]+)`", listed)) == set(ADMIN_SCOPES)
