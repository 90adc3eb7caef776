"""A given-only variant (the free gift) is never sold on its own (HTTP API).

Found: an order of 5 gift totes was placed for shipping cost only. The seeded shop's
``GIFT-TOTE`` is given-only: the free-gift rule still adds it (and its stock is reserved
like any line's), but no cart or order may buy it, whichever way it is asked for.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from ordnung.plugins.loyalty.coupons import Coupons
from tests.api_support import BERLIN, Api, api_client, expect, expect_problem, held, order_body
from tests.support import GIFT_THRESHOLD, builtin_plugins

GIFT = "GIFT-TOTE"
#: a coupon that makes everything free
FREE = "EVERYTHING100"


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[Api]:
    """The seeded shop's API, with a coupon code for 100 % off."""
    coupons = (Coupons, "coupons", {"coupons": [{"code": FREE, "percent": 100,
                                                  "stackable": True}]})
    async with held(api_client(database_url, plugins=[*builtin_plugins(), coupons])) as running:
        yield running


def not_for_sale(problem: dict[str, Any], sku: str = GIFT) -> None:
    assert problem["sku"] == sku, problem
    assert sku in problem["detail"] and "given" in problem["detail"], problem


async def stock_and_orders(api: Api) -> tuple[dict[tuple[str, str], tuple[int, int]], int]:
    return await api.levels(), await api.order_count()


async def new_cart(api: Api, headers: dict[str, str]) -> str:
    cart_id: str = (await api.new_cart(headers))["id"]
    return cart_id


async def test_the_catalogue_says_which_variant_is_given_only(api: Api) -> None:
    shop = await api.storefront("web")
    tote = expect(await api.client.get("/catalogue/products/tote", headers=shop), 200)
    assert [(v["sku"], v["given_only"]) for v in tote["variants"]] == [(GIFT, True)]
    shirt = expect(await api.client.get("/catalogue/products/shirt", headers=shop), 200)
    assert [v["given_only"] for v in shirt["variants"]] == [False]


async def test_a_direct_order_cannot_buy_a_given_only_item(api: Api) -> None:
    shop = await api.storefront("web")
    before = await stock_and_orders(api)
    for lines in (((GIFT, 5),), (("SHIRT-M", 4), (GIFT, 1)), ((GIFT, 1), ("POSTER", 3))):
        for headers in (shop, api.admin):
            for codes in ([], [FREE]):
                problem = expect_problem(await api.post_order(
                    headers, order_body(*lines, codes=codes)), 422, "not-for-sale")
                not_for_sale(problem)
    assert await stock_and_orders(api) == before
    assert api.plugin("sandbox").calls == []  # nobody was charged either


async def test_a_cart_cannot_hold_a_given_only_item(api: Api) -> None:
    shop = await api.storefront("web")
    cart_id = await new_cart(api, shop)
    shop = api.holding(shop, cart_id)  # a guest cart answers to its token
    url = f"/carts/{cart_id}"
    expect(await api.client.post(f"{url}/lines", json={"sku": "MUG", "quantity": 1},
                                 headers=shop), 200)
    before = expect(await api.client.get(url, headers=shop), 200)
    refusals = [
        api.client.post(f"{url}/lines", json={"sku": GIFT, "quantity": 5}, headers=shop),
        api.client.put(f"{url}/lines/{GIFT}", json={"quantity": 1}, headers=shop),
    ]
    for call in refusals:
        not_for_sale(expect_problem(await call, 422, "not-for-sale"))
        assert expect(await api.client.get(url, headers=shop), 200) == before


async def test_a_cart_that_earned_the_gift_cannot_add_more_of_it(api: Api) -> None:
    """The gift line is there by the rule; asking for more of that SKU is buying it."""
    shop = await api.storefront("web")
    cart_id = await new_cart(api, shop)
    shop = api.holding(shop, cart_id)  # a guest cart answers to its token
    url = f"/carts/{cart_id}"
    cart = expect(await api.client.post(f"{url}/lines", json={"sku": "POSTER", "quantity": 3},
                                        headers=shop), 200)
    assert cart["priced"]["totals"]["subtotal"] >= GIFT_THRESHOLD
    assert [(ln["sku"], ln["quantity"], ln["gift"]) for ln in cart["priced"]["lines"]] == [
        ("POSTER", 3, False), (GIFT, 1, True)]
    for quantity in (1, 4):
        not_for_sale(expect_problem(await api.client.put(
            f"{url}/lines/{GIFT}", json={"quantity": quantity}, headers=shop),
            422, "not-for-sale"))
    # a code does not open another way in: with everything free the gift stays a gift
    # and the tote still cannot be bought
    cart = expect(await api.client.post(f"{url}/codes", json={"code": FREE},
                                        headers=shop), 200)
    assert cart["priced"]["totals"]["discounts"] == -12_000
    assert [(ln["sku"], ln["gift"]) for ln in cart["priced"]["lines"]] == [
        ("POSTER", False), (GIFT, True)]
    not_for_sale(expect_problem(await api.client.post(
        f"{url}/lines", json={"sku": GIFT, "quantity": 1}, headers=shop), 422, "not-for-sale"))

    # placed: the gift is reserved like any line
    expect(await api.client.delete(f"{url}/codes/{FREE}", headers=shop), 200)
    expect(await api.client.put(f"{url}/addresses", json={"shipping": BERLIN},
                                headers=shop), 200)
    expect(await api.client.put(f"{url}/shipping-method", json={"method": "flat_rate:standard"},
                                headers=shop), 200)
    gifts_before = await api.available(GIFT)
    order = expect(await api.client.post(f"{url}/order", json={
        "payment": {"gateway": "sandbox", "token": "tok_success"}}, headers=shop), 201)
    assert [(ln["sku"], ln["gift"], ln["unit_price"]) for ln in order["lines"]] == [
        ("POSTER", False, 4000), (GIFT, True, 0)]
    assert await api.available(GIFT) == gifts_before - 1


async def test_a_cart_holding_an_item_that_became_given_only_cannot_be_placed(
        api: Api) -> None:
    """Staff mark a variant given-only while carts hold it: those carts cannot buy it;
    removing the line lets the cart go on."""
    shop = await api.storefront("web")
    cart_id = await new_cart(api, shop)
    shop = api.holding(shop, cart_id)  # a guest cart answers to its token
    url = f"/carts/{cart_id}"
    expect(await api.client.post(f"{url}/lines", json={"sku": "MUG", "quantity": 2},
                                 headers=shop), 200)
    expect(await api.client.post(f"{url}/lines", json={"sku": "POSTER", "quantity": 1},
                                 headers=shop), 200)
    expect(await api.client.put(f"{url}/addresses", json={"shipping": BERLIN},
                                headers=shop), 200)
    expect(await api.client.put(f"{url}/shipping-method", json={"method": "flat_rate:standard"},
                                headers=shop), 200)
    mug = expect(await api.client.get("/catalogue/products/mug", headers=api.admin), 200)
    mug["variants"][0]["given_only"] = True
    expect(await api.client.put("/catalogue/products/mug", json=mug, headers=api.admin), 200)

    before = await stock_and_orders(api)
    pay = {"payment": {"gateway": "sandbox", "token": "tok_success"}}
    not_for_sale(expect_problem(await api.client.post(f"{url}/order", json=pay, headers=shop),
                                422, "not-for-sale"), "MUG")
    assert await stock_and_orders(api) == before
    cart = expect(await api.client.get(url, headers=shop), 200)
    assert cart["status"] == "open" and cart["order_id"] is None

    cart = expect(await api.client.delete(f"{url}/lines/MUG", headers=shop), 200)
    assert [ln["sku"] for ln in cart["lines"]] == ["POSTER"]
    order = expect(await api.client.post(f"{url}/order", json=pay, headers=shop), 201)
    assert [ln["sku"] for ln in order["lines"]] == ["POSTER"]
