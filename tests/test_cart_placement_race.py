"""A cart that changes while it is being placed is not placed as it was read.

The placement prices the cart it read at the start of the request. If the shopper adds a
line (another tab, a double click) before the order is recorded, the order must not go
through with the old lines while the cart is marked placed with the new ones: the line
would be lost without a word. The placement is refused (409) and leaves nothing behind.
"""

from __future__ import annotations

from typing import Any

import pytest

from ordnung.core import hookimpl
from ordnung.core.domain.pricing import Violation
from tests.api_support import BERLIN, Api, api_client, expect, expect_problem, order_body
from tests.support import builtin_plugins


class ShopperAddsALine:
    """While the placement validates its priced order, the shopper adds a line to the
    cart through the API (once)."""

    def __init__(self) -> None:
        self.api: Api | None = None
        self.cart: tuple[str, dict[str, str]] | None = None

    @hookimpl
    async def ordnung_validate_order(self, ctx: Any) -> list[Violation]:
        if self.api is not None and self.cart is not None:
            cid, headers = self.cart
            self.cart = None
            expect(await self.api.client.post(f"/carts/{cid}/lines",
                                              json={"sku": "POSTER"}, headers=headers), 200)
        return []


@pytest.mark.parametrize("sku", ["MUG", "SHIRT-M"])
async def test_a_cart_changed_while_it_is_placed_is_refused_and_leaves_nothing(
        database_url: str, sku: str) -> None:
    """MUG is stocked at two locations; SHIRT-M at one, which the worker learns from the
    first order, and then reserves with the order's writes (on PostgreSQL: see
    ``sole_levels``), which also mark the cart placed."""
    shopper = ShopperAddsALine()
    async with api_client(database_url,
                          plugins=[*builtin_plugins(), (shopper, "shopper")]) as api:
        shop = await api.storefront("web")
        expect(await api.client.post("/orders", json=order_body((sku, 1), ("POSTER", 1)),
                                     headers=shop), 201)
        orders = await api.order_count()
        cid, headers = await api.ready_cart(shop, sku)
        mugs, posters = await api.available(sku), await api.available("POSTER")
        shopper.api, shopper.cart = api, (cid, headers)

        problem = expect_problem(await api.client.post(
            f"/carts/{cid}/order", json={"payment": {"gateway": "sandbox",
                                                     "token": "tok_success"}},
            headers=headers), 409, "conflict")

        assert "changed while it was being placed" in problem["detail"]
        assert await api.order_count() == orders
        assert (await api.available(sku), await api.available("POSTER")) == (mugs, posters)
        cart = expect(await api.client.get(f"/carts/{cid}", headers=headers), 200)
        assert cart["status"] == "open"
        assert sorted(line["sku"] for line in cart["lines"]) == sorted([sku, "POSTER"])

        # placed again, the order is the cart as it is now
        order = expect(await api.client.post(
            f"/carts/{cid}/order", json={"payment": {"gateway": "sandbox",
                                                     "token": "tok_success"}},
            headers=headers), 201)
        assert sorted(line["sku"] for line in order["lines"]) == sorted([sku, "POSTER"])
        assert order["shipping_address"]["city"] == BERLIN["city"]
