"""Cart tokens: a guest's cart answers only to whoever holds its token.

A publishable storefront key ships inside every visitor's browser, so it cannot be
what protects one visitor's cart (and address) from the next. Every route that takes
a cart id is walked from the OpenAPI document, so a route added later is covered too.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from tests.api_support import (
    BERLIN,
    CART_TOKEN,
    Api,
    api_fixture,  # noqa: F401  (the ``api`` fixture)
    expect,
    expect_problem,
)

PLACE = {"payment": {"gateway": "sandbox", "token": "tok_success"}}
#: a body for each cart route that takes one (the rest take none)
BODIES: dict[tuple[str, str], Any] = {
    ("post", "/carts/{cart_id}/lines"): {"sku": "POSTER", "quantity": 1},
    ("put", "/carts/{cart_id}/lines/{sku}"): {"quantity": 3},
    ("put", "/carts/{cart_id}/addresses"): {"shipping": {**BERLIN, "name": "Mallory"},
                                            "email": "mallory@example.com"},
    ("post", "/carts/{cart_id}/codes"): {"code": "WELCOME10"},
    ("put", "/carts/{cart_id}/shipping-method"): {"method": "flat_rate:standard"},
    ("post", "/carts/{cart_id}/order"): PLACE,
}


async def cart_routes(api: Api) -> list[tuple[str, str]]:
    """Every (method, path template) of the API that takes a cart id."""
    document = expect(await api.client.get("/schema/openapi.json"), 200)
    return sorted((method, path) for path, item in document["paths"].items()
                  if "{cart_id}" in path for method in item
                  if method in ("get", "post", "put", "patch", "delete"))


def url(template: str, cart_id: str) -> str:
    return template.replace("{cart_id}", cart_id).replace("{sku}", "MUG").replace(
        "{code}", "WELCOME10")


async def filled_cart(api: Api, headers: dict[str, str]) -> dict[str, Any]:
    """A guest cart with a line, an address and a shipping method (its token kept)."""
    cart = await api.new_cart(headers)
    held = api.holding(headers, cart["id"])
    expect(await api.client.post(f"/carts/{cart['id']}/lines", json={"sku": "MUG"},
                                 headers=held), 200)
    expect(await api.client.put(f"/carts/{cart['id']}/addresses",
                                json={"shipping": BERLIN, "email": "erika@example.com"},
                                headers=held), 200)
    result: dict[str, Any] = expect(await api.client.put(
        f"/carts/{cart['id']}/shipping-method", json={"method": "flat_rate:standard"},
        headers=held), 200)
    return result


async def test_every_cart_route_answers_404_without_the_carts_token(api: Api) -> None:
    shop = await api.storefront("web")
    other_visitor = await api.storefront("web", name="same channel, another browser")
    cart = await filled_cart(api, shop)
    cid = cart["id"]
    routes = await cart_routes(api)
    assert len(routes) >= 11, routes  # every cart route, not only the ones we thought of
    before = expect(await api.client.get(f"/carts/{cid}", headers=api.admin), 200)
    nothing = expect_problem(await api.client.get("/carts/cart_nope", headers=shop), 404,
                             "not-found")
    wrong_tokens: list[dict[str, str]] = [
        {}, {CART_TOKEN: ""}, {CART_TOKEN: "crt_guessed"},
        {CART_TOKEN: api.cart_tokens[cid][:-1]},  # one character short
    ]
    for method, template in routes:
        for headers in (shop, other_visitor):
            for token in wrong_tokens:
                response = await api.client.request(
                    method.upper(), url(template, cid), json=BODIES.get((method, template)),
                    headers={**headers, **token})
                problem = expect_problem(response, 404, "not-found")
                # exactly what a cart that does not exist answers
                assert set(problem) == set(nothing), (method, template)
                assert problem["resource"] == "cart" and problem["key"] == cid
    after = expect(await api.client.get(f"/carts/{cid}", headers=api.admin), 200)
    assert after == before  # nothing was changed, nothing placed
    assert after["shipping_address"]["name"] == BERLIN["name"]
    assert await api.order_count() == 0

    # the holder of the token does all of it
    held = api.holding(shop, cid)
    for method, template in routes:
        if template.endswith("/order"):
            continue
        response = await api.client.request(method.upper(), url(template, cid),
                                            json=BODIES.get((method, template)), headers=held)
        assert response.status_code in (200, 201, 404, 409, 422), response.text
        if response.status_code == 404:  # only "no such line/code", never "no such cart"
            assert response.json()["resource"] != "cart", (method, template)
    expect(await api.client.put(f"/carts/{cid}/lines/MUG", json={"quantity": 1}, headers=held),
           200)
    order = expect(await api.client.post(f"/carts/{cid}/order", json=PLACE, headers=held), 201)
    assert order["customer_id"] is None and order["channel"] == "web"


async def test_the_cart_token_is_shown_once_and_stored_hashed(api: Api) -> None:
    shop = await api.storefront("web")
    cart = await api.new_cart(shop)
    token = cart["cart_token"]
    assert re.fullmatch(r"crt_[A-Za-z0-9_-]{32}", token), token
    read = expect(await api.client.get(f"/carts/{cart['id']}",
                                       headers=api.holding(shop, cart["id"])), 200)
    assert "cart_token" not in read and token not in str(read)
    rows = await api.engine.db.fetch("SELECT * FROM carts WHERE id = {}", cart["id"])
    assert rows[0]["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    assert token not in repr(rows)
    # each guest cart has its own token: one cart's token opens no other cart
    second = await api.new_cart(shop)
    assert second["cart_token"] != token
    expect_problem(await api.client.get(f"/carts/{second['id']}",
                                        headers={**shop, CART_TOKEN: token}), 404, "not-found")
    # the OpenAPI document names the header on every cart route
    document = expect(await api.client.get("/schema/openapi.json"), 200)
    for method, template in await cart_routes(api):
        parameters = document["paths"][template][method].get("parameters", [])
        assert any(p["name"] == CART_TOKEN and p["in"] == "header" and not p["required"]
                   for p in parameters), (method, template)


async def test_a_guest_cart_stays_in_its_channel_even_with_its_token(api: Api) -> None:
    web, etsy = await api.storefront("web"), await api.storefront("etsy")
    cart = await api.new_cart(web)
    expect_problem(await api.client.get(f"/carts/{cart['id']}",
                                        headers=api.holding(etsy, cart["id"])), 404, "not-found")


async def test_a_customers_cart_answers_to_that_customer_and_staff_only(api: Api) -> None:
    erika, erika_token = await api.customer("erika@example.com")
    _, max_token = await api.customer("max@example.com", "Max")
    shop = await api.storefront("web")
    cart = await api.new_cart(erika_token, {"channel": "web"})
    assert cart["customer_id"] == erika["id"] and cart["cart_token"] is None
    cid = cart["id"]
    for headers in (max_token, shop):
        expect_problem(await api.client.get(f"/carts/{cid}", headers=headers), 404, "not-found")
        expect_problem(await api.client.put(f"/carts/{cid}/addresses", json={"shipping": BERLIN},
                                            headers=headers), 404, "not-found")
    expect(await api.client.post(f"/carts/{cid}/lines", json={"sku": "MUG"},
                                 headers=erika_token), 200)
    # staff: an admin key with the orders scope, not just any admin key
    expect(await api.client.get(f"/carts/{cid}", headers=await api.admin_with("orders")), 200)
    expect_problem(await api.client.get(f"/carts/{cid}",
                                        headers=await api.admin_with("catalogue")), 403,
                   "forbidden")
    # a guest cart's token does not open a customer's cart
    guest = await api.new_cart(shop)
    expect_problem(await api.client.get(f"/carts/{cid}", headers={
        **shop, CART_TOKEN: api.cart_tokens[guest["id"]]}), 404, "not-found")


async def test_a_signed_in_customer_holding_a_guest_carts_token_orders_it_as_theirs(
        api: Api) -> None:
    """Browse as a guest, sign in at the checkout: the cart and its order are the
    customer's, and the guest token no longer opens the cart."""
    shop = await api.storefront("web")
    cart = await filled_cart(api, shop)
    cid = cart["id"]
    erika, token = await api.customer("erika@example.com")
    expect_problem(await api.client.get(f"/carts/{cid}", headers=token), 404, "not-found")
    read = expect(await api.client.get(f"/carts/{cid}", headers=api.holding(token, cid)), 200)
    assert read["customer_id"] is None
    order = expect(await api.client.post(f"/carts/{cid}/order", json=PLACE,
                                         headers=api.holding(token, cid)), 201)
    assert order["customer_id"] == erika["id"]
    mine = expect(await api.client.get("/orders", headers=token), 200)
    assert [o["id"] for o in mine["items"]] == [order["id"]]
    assert expect(await api.client.get(f"/carts/{cid}", headers=token), 200)["customer_id"] == \
        erika["id"]
    expect_problem(await api.client.get(f"/carts/{cid}", headers=api.holding(shop, cid)), 404,
                   "not-found")


async def test_a_stored_answer_is_replayed_only_to_the_holder_of_the_cart(api: Api) -> None:
    """A publishable key is every visitor's: an Idempotency-Key repeated under it by
    someone without the cart's token must not be handed the order placed from the cart."""
    shop = await api.storefront("web")
    cid = (await api.new_cart(shop))["id"]
    held = api.holding(shop, cid)
    expect(await api.client.post(f"/carts/{cid}/lines", json={"sku": "MUG"}, headers=held),
           200)
    expect(await api.client.put(f"/carts/{cid}/addresses", json={
        "email": "erika@example.com", "shipping": BERLIN}, headers=held), 200)
    expect(await api.client.put(f"/carts/{cid}/shipping-method",
                                json={"method": "flat_rate:standard"}, headers=held), 200)
    key = {"Idempotency-Key": "checkout-1"}
    order = expect(await api.client.post(f"/carts/{cid}/order", json=PLACE,
                                         headers={**held, **key}), 201)
    replayed = await api.client.post(f"/carts/{cid}/order", json=PLACE, headers={**held, **key})
    assert replayed.status_code == 201 and replayed.json()["id"] == order["id"]
    for stranger in (shop, {**shop, CART_TOKEN: "crt_" + "x" * 32}):
        answer = await api.client.post(f"/carts/{cid}/order", json=PLACE,
                                       headers={**stranger, **key})
        assert answer.headers.get("idempotent-replayed") is None
        expect_problem(answer, 404, "not-found")
        assert order["id"] not in answer.text
