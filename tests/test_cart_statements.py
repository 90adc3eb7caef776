"""What each step of a guest checkout costs in SQL statements, through the real app.

Each request authenticates its key (one read: a revoked key answers 401 at once), and a
write raises its rate-limit counters in one statement; a cart request reads the cart
once, for the token check, and the services change that copy. A change that reads the
cart or the catalogue again, or counts a limit in a statement of its own, fails here.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from ordnung.core.domain.carts import Cart
from tests.api_support import BERLIN, Api, api_client, expect

#: statements per request: auth, rate limits (writes), cart read, variants, save
BUDGET = {"create": 3, "line": 5, "address": 5, "quotes": 2, "method": 5}


async def cost(api: Api, request: Callable[[], Awaitable[httpx.Response]],
               status: int) -> tuple[int, Any]:
    """The statements ``request`` ran, and its answer's body."""
    before = api.engine.db.statements
    body = expect(await request(), status)
    return api.engine.db.statements - before, body


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
        assert {step: max(spent) for step, spent in costs.items()} == BUDGET
        # the one read per request is the one the changes were made to
        stored = await api.engine.carts.get(cid)
        assert stored.version == cart["version"] == 6  # one save per change
        assert [(ln.sku, ln.quantity) for ln in stored.lines] == [
            ("SHIRT-M", 1), ("MUG", 2), ("POSTER", 1)]
        assert stored.email == "kim@example.com" and stored.shipping_address is not None
        assert stored.shipping_method == "flat_rate:standard"
        assert [q["method"] for q in quotes] == ["flat_rate:standard"]


async def test_a_cart_changed_after_the_token_check_is_a_conflict(
        database_url: str) -> None:
    """The read that checked the token is the version the change is saved against."""
    async with api_client(database_url) as api:
        shop = await api.storefront("web")
        cart = await api.new_cart(shop)
        holding = api.holding(shop, cart["id"])
        carts = api.engine.carts
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
