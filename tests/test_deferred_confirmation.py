"""A kept credential whose write ran no counting statement is confirmed at its gate.

A write counted from the worker's share of its rate limits (``ordnung.api.rate_shares``)
runs no statement before the route that could bring the ``access`` generation back, so
its kept key is confirmed before its first write and before its answer
(``ordnung.api.confirming``), usually by the generations its cart read brought. Two
apps on one database stand for two workers: the first ends or changes a credential the
second kept, and the second must refuse or re-decide at once, with nothing written.
"""

from __future__ import annotations

from typing import Any

from ordnung.core.errors import DatabaseUnavailable
from tests.api_support import (
    BERLIN,
    Api,
    api_client,
    bearer,
    expect,
    expect_problem,
    order_body,
)
from tests.test_kept_credentials import two_workers


async def ready_guest_cart(api: Api, headers: dict[str, str]) -> tuple[str, dict[str, str]]:
    """A guest cart with a line, an address and a method, changed through ``api`` (which
    so holds shares of the cart token's and the address's limits)."""
    cart = await api.new_cart(headers)
    holding = api.holding(headers, cart["id"])
    c = api.client
    expect(await c.post(f"/carts/{cart['id']}/lines", json={"sku": "MUG", "quantity": 1},
                        headers=holding), 200)
    expect(await c.put(f"/carts/{cart['id']}/addresses",
                       json={"shipping": BERLIN, "email": "kim@example.com"},
                       headers=holding), 200)
    expect(await c.put(f"/carts/{cart['id']}/shipping-method",
                       json={"method": "flat_rate:standard"}, headers=holding), 200)
    return cart["id"], holding


async def counted_writes(api: Api) -> int:
    rows = await api.engine.db.fetch("SELECT SUM(hits) AS n FROM rate_limits")
    return int(rows[0]["n"] or 0)


async def test_a_storefront_key_revoked_elsewhere_changes_no_cart_and_places_nothing(
        database_url: str) -> None:
    async with two_workers(database_url) as (first, second):
        issued = await first.issue_key("storefront", channel="web")
        shop = bearer(issued["secret"])
        cart_id, holding = await ready_guest_cart(second, shop)
        counted = await counted_writes(second)
        before = (await second.engine.carts.get(cart_id)).version
        levels, orders = await second.levels(), await second.order_count()
        await first.revoke(issued["key"]["id"])
        c = second.client
        with second.engine.db.tally() as spent:
            expect_problem(await c.post(f"/carts/{cart_id}/lines",
                                        json={"sku": "MUG", "quantity": 1},
                                        headers=holding), 401, "unauthorized")
        # counted from the worker's share (no counting statement ran): the save of the
        # worker's copy of the cart, guarded by the generation the key was kept at,
        # matched nothing; the cart's read (on PostgreSQL, that same statement) brought
        # the new generation, and the key was looked up again and found revoked
        assert spent.statements == (2 if second.engine.db.is_postgres else 3)
        assert await counted_writes(second) == counted
        expect_problem(await c.get(f"/carts/{cart_id}", headers=holding), 401,
                       "unauthorized")
        expect_problem(await c.post(f"/carts/{cart_id}/order", json={
            "payment": {"gateway": "sandbox", "token": "tok_success"}}, headers=holding),
            401, "unauthorized")
        # a new cart: its insert brought the generation back, and is rolled back
        carts = await second.engine.db.fetch("SELECT COUNT(*) AS n FROM carts")
        expect_problem(await c.post("/carts", json={}, headers=shop), 401, "unauthorized")
        assert await second.engine.db.fetch("SELECT COUNT(*) AS n FROM carts") == carts
        assert (await second.engine.carts.get(cart_id)).version == before
        assert await second.order_count() == orders
        assert await second.levels() == levels


async def test_a_revoked_key_gets_401_over_graphql_not_an_error_in_a_200(
        database_url: str) -> None:
    async with two_workers(database_url) as (first, second):
        issued = await first.issue_key("storefront", channel="web")
        shop = bearer(issued["secret"])
        cart_id, holding = await ready_guest_cart(second, shop)
        await first.revoke(issued["key"]["id"])
        for query in ("query($c: String!) { cart(id: $c) { id } }",
                      'mutation($c: String!) { addCartLine(cartId: $c, sku: "POSTER", '
                      "quantity: 1) { id } }"):
            response = await second.client.post(
                "/graphql", json={"query": query, "variables": {"c": cart_id}},
                headers=holding)
            expect_problem(response, 401, "unauthorized")
        stored = await second.engine.carts.get(cart_id)
        assert [line.sku for line in stored.lines] == ["MUG"]


async def test_a_key_whose_scopes_changed_elsewhere_is_judged_by_its_scopes_now(
        database_url: str) -> None:
    """Scopes taken away: the read that passed before is refused. Scopes given: the
    write refused before is made, once, with the body it was sent."""
    async with two_workers(database_url) as (first, second):
        issued = await first.issue_key("admin", scopes=["orders", "customers"])
        key_id, headers = issued["key"]["id"], bearer(issued["secret"])
        created = expect(await second.client.post(
            "/customers", json={"email": "one@example.com", "name": "One"},
            headers=headers), 201)
        expect(await second.client.get(f"/customers/{created['id']}", headers=headers), 200)
        await first.engine.access.keys.set_scopes(key_id, "orders")
        expect_problem(await second.client.get(f"/customers/{created['id']}",
                                               headers=headers), 403, "forbidden")
        expect_problem(await second.client.post(
            "/customers", json={"email": "two@example.com", "name": "Two"},
            headers=headers), 403, "forbidden")
        await first.engine.access.keys.set_scopes(key_id, "customers,orders")
        made: dict[str, Any] = expect(await second.client.post(
            "/customers", json={"email": "three@example.com", "name": "Three"},
            headers=headers), 201)
        assert made["email"] == "three@example.com"
        listed = expect(await second.client.get("/customers?limit=100",
                                                headers=first.admin), 200)["items"]
        assert sorted(c["email"] for c in listed if c["email"].endswith("@example.com")
                      and c["email"].split("@")[0] in ("one", "two", "three")) == [
            "one@example.com", "three@example.com"]


async def test_a_database_gone_at_the_answer_s_confirmation_is_a_503_not_a_500(
        database_url: str) -> None:
    """A read ran no statement that brings the generations back, so its kept key is
    confirmed just before the answer goes out. If the database is unavailable right then
    (it restarts), the caller gets the 503 it would get from any statement, with
    nothing of the held-back answer, not a broken 500."""
    async with api_client(database_url) as api:
        shop = await api.storefront("web")
        order = expect(await api.client.post("/orders", json=order_body(("MUG", 1)),
                                             headers=shop), 201)
        path = f"/orders/{order['id']}"
        expect(await api.client.get(path, headers=api.admin), 200)  # the key is kept
        access = api.engine.access
        confirm = access.confirm

        async def database_gone(*args: Any) -> Any:
            raise DatabaseUnavailable("the database is not available (test); try again")

        access.confirm = database_gone  # type: ignore[method-assign]
        try:
            response = await api.client.get(path, headers=api.admin)
        finally:
            access.confirm = confirm  # type: ignore[method-assign]
        problem = expect_problem(response, 503, "database-unavailable")
        assert "not available" in problem["detail"]
        expect(await api.client.get(path, headers=api.admin), 200)
