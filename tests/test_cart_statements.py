"""What each step of a guest checkout costs in SQL statements, through the real app.

A write counts against its rate limits from the worker's shares (``ordnung.api.
rate_shares``): only the cart token's first write takes a share, in one statement. A
change to a cart this worker wrote or read last starts from its copy
(``ordnung.core.persistence.kept_carts``) and costs its save alone, which brings back the
generations that confirm the key and the variants the worker kept. A read reads the
cart once, for the token check, and that read brings the generations back. A change
that reads the cart, the key or the catalogue again, or counts a limit in a statement
of its own on every write, fails here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from ordnung.core.domain.carts import Cart
from tests.api_support import BERLIN, Api, api_client, expect

#: statements per request: a change, the save of the kept copy (with the generations);
#: the quotes, the cart's read (with the generations); the first line also takes the
#: cart token's share of its rate limit; a new cart's insert brings the generations back
BUDGET = {"create": 1, "line": 1, "address": 1, "quotes": 1, "method": 1}


async def cost(api: Api, request: Callable[[], Awaitable[httpx.Response]],
               status: int) -> tuple[int, Any]:
    """The statements ``request`` ran, and its answer's body."""
    with api.engine.db.tally() as spent:
        body = expect(await request(), status)
    return spent.statements, body


async def test_each_cart_step_of_a_guest_checkout_stays_within_its_statements(
        database_url: str) -> None:
    async with api_client(database_url) as api:
        shop = await api.storefront("web")
        await api.new_cart(shop)  # the channels are read once, then kept
        costs: dict[str, list[int]] = {step: [] for step in BUDGET}
        c = api.client

        spent, cart = await cost(api, lambda: c.post(
            "/carts", json={"email": "kim@example.com"}, headers=shop), 201)
        costs["create"].append(spent)
        cid = cart["id"]
        holding = {**shop, "X-Cart-Token": cart["cart_token"]}
        for sku in ("SHIRT-M", "MUG", "POSTER", "MUG"):
            spent, cart = await cost(api, lambda sku=sku: c.post(  # type: ignore[misc]
                f"/carts/{cid}/lines", json={"sku": sku, "quantity": 1}, headers=holding), 200)
            costs["line"].append(spent)
        spent, cart = await cost(api, lambda: c.put(
            f"/carts/{cid}/addresses", json={"shipping": BERLIN, "email": "Kim@Example.com"},
            headers=holding), 200)
        costs["address"].append(spent)
        spent, quotes = await cost(api, lambda: c.get(
            f"/carts/{cid}/shipping-quotes", headers=holding), 200)
        costs["quotes"].append(spent)
        spent, cart = await cost(api, lambda: c.put(
            f"/carts/{cid}/shipping-method", json={"method": "flat_rate:standard"},
            headers=holding), 200)
        costs["method"].append(spent)

        print(f"SQL statements per cart step: {costs}")
        assert costs["line"][0] == BUDGET["line"] + 1  # the cart token's share
        costs["line"] = costs["line"][1:]
        assert {step: max(spent) for step, spent in costs.items()} == BUDGET
        # the one read per request is the one the changes were made to
        stored = await api.engine.carts.get(cid)
        assert stored.version == cart["version"] == 6  # one save per change
        assert [(ln.sku, ln.quantity) for ln in stored.lines] == [
            ("SHIRT-M", 1), ("MUG", 2), ("POSTER", 1)]
        assert stored.email == "kim@example.com" and stored.shipping_address is not None
        assert stored.shipping_method == "flat_rate:standard"
        assert [q["method"] for q in quotes] == ["flat_rate:standard"]
        # placing it (from the kept copy, no read): the reservation, then the order's
        # writes with the cart's mark, and the authorization's: one statement each on
        # PostgreSQL, one per table on SQLite
        spent, order = await cost(api, lambda: c.post(f"/carts/{cid}/order", json={
            "payment": {"gateway": "sandbox", "token": "tok_success"}}, headers=holding), 201)
        assert spent == (3 if api.engine.db.is_postgres else 10)
        assert (await api.engine.carts.get(cid)).order_id == order["id"]


async def test_a_cart_changed_after_the_token_check_is_a_conflict(
        database_url: str) -> None:
    """The read that checked the token is the version the change is saved against (a
    worker with no copy of the cart; ``test_kept_carts`` has one with)."""
    async with api_client(database_url) as api:
        shop = await api.storefront("web")
        cart = await api.new_cart(shop)
        holding = api.holding(shop, cart["id"])
        carts = api.engine.carts
        carts.rt.carts.kept.forget(cart["id"])
        checked = carts.for_caller

        async def changed_meanwhile(cart_id: str, *args: Any) -> Cart:
            seen = await checked(cart_id, *args)
            await carts.add_line(cart_id, "POSTER", 1)  # another request, in between
            return seen

        carts.for_caller = changed_meanwhile  # type: ignore[method-assign]
        try:
            response = await api.client.post(f"/carts/{cart['id']}/lines",
                                             json={"sku": "MUG"}, headers=holding)
        finally:
            del carts.for_caller
        assert response.status_code == 409, response.text
        stored = await carts.get(cart["id"])
        assert [(ln.sku, ln.quantity) for ln in stored.lines] == [("POSTER", 1)]


#: the same steps through GraphQL: a query is a POST too, so it is counted as a write
#: (from the worker's shares, as over REST)
GRAPHQL_BUDGET = BUDGET
ADDRESS = {"name": BERLIN["name"], "line1": BERLIN["line1"], "city": BERLIN["city"],
           "postalCode": BERLIN["postal_code"], "country": BERLIN["country"]}


async def test_the_cart_steps_through_graphql_cost_what_they_cost_over_rest(
        database_url: str) -> None:
    async with api_client(database_url) as api:
        shop = await api.storefront("web")

        async def gql(step: str, headers: dict[str, str], query: str,
                      **variables: Any) -> Any:
            spent, body = await cost(api, lambda: api.client.post(
                "/graphql", json={"query": query, "variables": variables}, headers=headers),
                200)
            assert "errors" not in body, body
            costs[step].append(spent)
            return body["data"]

        costs: dict[str, list[int]] = {step: [] for step in GRAPHQL_BUDGET}
        create = "mutation { createCart(channel: \"web\") { cart { id } cartToken } }"
        await gql("create", shop, create)  # the channels are read once, then kept
        costs["create"].clear()
        created = (await gql("create", shop, create))["createCart"]
        cid = created["cart"]["id"]
        holding = {**shop, "X-Cart-Token": created["cartToken"]}
        for sku in ("SHIRT-M", "MUG", "POSTER"):
            await gql("line", holding, "mutation($c: String!, $s: String!) { addCartLine("
                      "cartId: $c, sku: $s, quantity: 1) { id } }", c=cid, s=sku)
        await gql("address", holding, "mutation($c: String!, $a: AddressInput!) { "
                  "setCartAddresses(cartId: $c, shipping: $a, email: \"kim@example.com\") "
                  "{ id } }", c=cid, a=ADDRESS)
        await gql("quotes", holding, "query($c: String!) { cart(id: $c) { shippingQuotes "
                  "{ method } } }", c=cid)
        data = await gql("method", holding, "mutation($c: String!) { setCartShippingMethod("
                         "cartId: $c, method: \"flat_rate:standard\") { lines { sku quantity } } }",
                         c=cid)

        print(f"SQL statements per cart step (GraphQL): {costs}")
        assert costs["line"][0] == GRAPHQL_BUDGET["line"] + 1  # the cart token's share
        costs["line"] = costs["line"][1:]
        assert {step: max(spent) for step, spent in costs.items()} == GRAPHQL_BUDGET
        assert [ln["sku"] for ln in data["setCartShippingMethod"]["lines"]] == [
            "SHIRT-M", "MUG", "POSTER"]
        assert (await api.engine.carts.get(cid)).version == 5  # one save per change


async def test_a_customer_checking_out_a_guest_cart_over_graphql_orders_it_as_theirs(
        database_url: str) -> None:
    """The cart the checkout places is the adopted one, not the guest's copy the token
    check read."""
    async with api_client(database_url) as api:
        shop = await api.storefront("web")
        cid, _ = await api.ready_cart(shop, email="erika@example.com")
        erika, token = await api.customer("erika@example.com")
        body = expect(await api.client.post("/graphql", headers=api.holding(token, cid), json={
            "query": "mutation($c: String!) { checkout(cartId: $c, payment: {gateway: "
                     "\"sandbox\", token: \"tok_success\"}) { id } }",
            "variables": {"c": cid}}), 200)
        assert "errors" not in body, body
        order = await api.engine.orders.get(body["data"]["checkout"]["id"])
        assert order.customer_id == erika["id"]
        assert (await api.engine.carts.get(cid)).customer_id == erika["id"]
