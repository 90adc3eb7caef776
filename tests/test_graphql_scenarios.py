"""SPEC's scenarios from the field again, through GraphQL only, and the trust-model and
input-limit edges of the REST suite (``test_api_scenarios.py``, ``test_edge_*.py``) that
``test_graphql.py`` does not already cover.

Every call after the bootstrap admin key goes through ``/graphql``: keys, customers,
carts, orders, fulfilment, returns and erasure, with the key a real caller would have.
"""

from __future__ import annotations

import asyncio
import json
from datetime import date
from typing import Any

from tests.api_support import Api, api_client, api_fixture  # noqa: F401
from tests.support import builtin_plugins
from tests.test_api_scenarios import (
    ADA_ADDRESS,
    ADA_PERSONAL,
    BigOrderReview,
    ConfirmationRecorder,
    VipAndHighValueFirst,
)
from tests.test_graphql import ADDRESS, CHECKOUT, PROBLEMS, gql, guest_cart, only_error

ORDER_FIELDS = ("id status channel lines { id sku quantity } "
                "shipments { id status lines { sku quantity } } returns { id status } "
                "payments { status }")


async def key(api: Api, kind: str, *, channel: str | None = None,
              scopes: list[str] | None = None, caller: dict[str, str] | None = None
              ) -> dict[str, str]:
    """Headers of a key issued through ``issueKey``."""
    body = await gql(api, caller or api.admin,
                     "mutation($k: String!, $c: String, $s: [String!]) { issueKey(kind: $k, "
                     "channel: $c, scopes: $s) { secret } }",
                     {"k": kind, "c": channel, "s": scopes})
    assert "errors" not in body, body
    return {"Authorization": f"Bearer {body['data']['issueKey']['secret']}"}


async def place(api: Api, shop: dict[str, str], channel: str, sku: str, quantity: int,
                token: str = "tok_success") -> dict[str, Any]:
    """``placeOrder`` in one request; the body of the answer (data or errors)."""
    return await gql(api, shop, "mutation($ch: String!, $l: [LineInput!]!, $a: AddressInput!, "
                                "$p: PaymentInput!) { placeOrder(channel: $ch, lines: $l, "
                                "email: \"erika@example.com\", shippingAddress: $a, "
                                "shippingMethod: \"flat_rate:standard\", payment: $p) "
                                f"{{ {ORDER_FIELDS} }} }}",
                     {"ch": channel, "l": [{"sku": sku, "quantity": quantity}], "a": ADDRESS,
                      "p": {"gateway": "sandbox", "token": token}})


async def staff(api: Api, query: str, **variables: Any) -> dict[str, Any]:
    body = await gql(api, api.admin, query, variables)
    assert "errors" not in body, body
    data: dict[str, Any] = next(iter(body["data"].values()))
    return data


# --------------------------------------------------------------------------- scenarios


async def test_scenario_1_every_channel_sees_the_one_availability(api: Api) -> None:
    etsy, ebay = await key(api, "storefront", channel="etsy"), \
        await key(api, "storefront", channel="ebay")
    web = await key(api, "storefront", channel="web")
    for _ in range(6):
        assert "errors" not in await place(api, etsy, "etsy", "SHIRT-M", 1)
    for quantity in (4, 6):
        assert "errors" not in await place(api, ebay, "ebay", "SHIRT-M", quantity)
    # a storefront key sells on its own channel only
    body = await place(api, etsy, "ebay", "SHIRT-M", 1)
    assert only_error(body)["extensions"]["status"] == 403
    query = "{ availability(skus: [\"SHIRT-M\"]) { sku available } }"
    seen = {str(shop): (await gql(api, shop, query))["data"]["availability"]
            for shop in (etsy, ebay, web)}
    assert all(levels == [{"sku": "SHIRT-M", "available": 484}] for levels in seen.values())
    orders = await staff(api, "{ orders(first: 50) { edges { node { channel lines "
                              "{ sku quantity } } } } }")
    by_channel: dict[str, int] = {}
    for edge in orders["edges"]:
        node = edge["node"]
        by_channel[node["channel"]] = by_channel.get(node["channel"], 0) + sum(
            line["quantity"] for line in node["lines"] if line["sku"] == "SHIRT-M")
    assert by_channel == {"etsy": 6, "ebay": 10}


async def test_scenario_3_a_declined_order_cannot_be_fulfilled(api: Api) -> None:
    shop = await key(api, "storefront", channel="web")
    body = await place(api, shop, "web", "MUG", 1, token="tok_decline")
    error = only_error(body)
    assert error["extensions"]["status"] == 402, error
    assert await api.order_count() == 1  # kept, cancelled: the decline is on record
    orders = await staff(api, "{ orders(first: 5) { edges { node { id status } } } }")
    order = orders["edges"][0]["node"]
    assert order["status"] == "cancelled", order
    body = await gql(api, api.admin, "mutation($o: String!) { createShipment(orderId: $o) "
                                     "{ id } }", {"o": order["id"]})
    assert only_error(body)["extensions"]["status"] == 409, body


async def test_scenario_3_and_5_shipping_too_early_says_why_and_packing_checks_items(
        api: Api) -> None:
    shop = await key(api, "storefront", channel="web")
    oid = (await place(api, shop, "web", "MUG", 2))["data"]["placeOrder"]["id"]
    order = await staff(api, f"mutation($o: String!) {{ createShipment(orderId: $o) "
                             f"{{ {ORDER_FIELDS} }} }}", o=oid)
    sid = order["shipments"][0]["id"]
    ship = ("mutation($o: String!, $s: String!) { shipShipment(orderId: $o, shipmentId: $s) "
            "{ id } }")
    # not picked or packed yet: the shipment's state is the reason
    extensions = only_error(await gql(api, api.admin, ship, {"o": oid, "s": sid}))["extensions"]
    assert (extensions["status"], extensions["type"]) == (
        409, PROBLEMS + "illegal-transition"), extensions
    await staff(api, "mutation($o: String!, $s: String!) { pickShipment(orderId: $o, "
                     "shipmentId: $s) { id } }", o=oid, s=sid)
    # a wrong item in the box: refused, and nothing is packed
    pack = ("mutation($o: String!, $s: String!, $x: [String!]!) { packShipment(orderId: $o, "
            f"shipmentId: $s, scans: $x) {{ {ORDER_FIELDS} }} }}")
    body = await gql(api, api.admin, pack, {"o": oid, "s": sid, "x": ["MUG", "POSTER"]})
    assert only_error(body)["extensions"]["status"] in (409, 422), body
    order = await staff(api, pack, o=oid, s=sid, x=["MUG", "MUG"])
    assert order["shipments"][0]["status"] == "packed", order
    await staff(api, "mutation($o: String!) { voidPayment(orderId: $o) { id } }", o=oid)
    # unpaid: the payment is the reason
    extensions = only_error(await gql(api, api.admin, ship, {"o": oid, "s": sid}))["extensions"]
    assert (extensions["status"], extensions["type"]) == (
        409, PROBLEMS + "invariant-violation"), extensions


async def test_scenario_7_return_requested_approved_received_refunded(api: Api) -> None:
    shop = await key(api, "storefront", channel="web")
    oid = (await place(api, shop, "web", "MUG", 2))["data"]["placeOrder"]["id"]
    await staff(api, "mutation($o: String!) { capturePayment(orderId: $o) { id } }", o=oid)
    order = await staff(api, f"mutation($o: String!) {{ createShipment(orderId: $o) "
                             f"{{ {ORDER_FIELDS} }} }}", o=oid)
    sid = order["shipments"][0]["id"]
    for step, extra in (("pickShipment", ""), ("packShipment", ", scans: [\"MUG\", \"MUG\"]"),
                        ("shipShipment", ""), ("deliverShipment", "")):
        await staff(api, f"mutation($o: String!, $s: String!) {{ {step}(orderId: $o, "
                         f"shipmentId: $s{extra}) {{ id }} }}", o=oid, s=sid)
    before = (await gql(api, shop, "{ availability(skus: [\"MUG\"]) { available } }"))
    line = order["lines"][0]["id"]
    order = await staff(api, "mutation($o: String!, $l: [ReturnLineInput!]!) { requestReturn("
                             f"orderId: $o, lines: $l, reason: \"chipped\") "
                             f"{{ {ORDER_FIELDS} }} }}",
                        o=oid, l=[{"lineId": line, "quantity": 1}])
    rid = order["returns"][0]["id"]
    for step in ("approveReturn", "receiveReturn", "refundReturn"):
        order = await staff(api, f"mutation($o: String!, $r: String!) {{ {step}(orderId: $o, "
                                 f"returnId: $r) {{ {ORDER_FIELDS} }} }}", o=oid, r=rid)
    assert order["returns"][0]["status"] == "refunded", order
    after = (await gql(api, shop, "{ availability(skus: [\"MUG\"]) { available } }"))
    assert after["data"]["availability"][0]["available"] == \
        before["data"]["availability"][0]["available"] + 1


async def test_scenario_11_export_then_erase(api: Api) -> None:
    customer = await staff(api, "mutation { createCustomer(email: \"kim@example.com\", "
                                "name: \"Kim\") { id } }")
    issued = await staff(api, "mutation($c: String!) { issueCustomerToken(customerId: $c) "
                              "{ secret } }", c=customer["id"])
    kim = {"Authorization": f"Bearer {issued['secret']}"}
    cart_id, _ = await guest_cart(api, kim, guest=False)
    assert "errors" not in await gql(api, kim, CHECKOUT, {"c": cart_id})
    exported = await gql(api, kim, "{ customerExport(id: \"me\") }")
    assert "kim@example.com" in str(exported["data"]), exported
    erased = await staff(api, "mutation($c: String!) { eraseCustomer(id: $c) { id email } }",
                         c=customer["id"])
    assert "kim@example.com" not in str(erased), erased
    orders = await staff(api, "{ orders(first: 5) { edges { node { email shippingAddress "
                              "{ name } } } } }")
    assert "kim@example.com" not in str(orders) and "Erika" not in str(orders), orders


async def test_scenario_11_erasure_also_forgets_what_the_customers_carts_held(
        api: Api) -> None:
    ada = await staff(api, "mutation { createCustomer(email: \"ada@example.com\", "
                           "name: \"Ada Lovelace\") { id } }")
    issued = await staff(api, "mutation($c: String!) { issueCustomerToken(customerId: $c) "
                              "{ secret } }", c=ada["id"])
    token = {"Authorization": f"Bearer {issued['secret']}"}
    address = {"name": ADA_ADDRESS["name"], "line1": ADA_ADDRESS["line1"],
               "city": ADA_ADDRESS["city"], "postalCode": ADA_ADDRESS["postal_code"],
               "country": ADA_ADDRESS["country"], "phone": ADA_ADDRESS["phone"],
               "email": ADA_ADDRESS["email"]}

    async def cart_with_address() -> str:
        body = await gql(api, token, "mutation { createCart(channel: \"web\") "
                                     "{ cart { id } } }")
        cart_id: str = body["data"]["createCart"]["cart"]["id"]
        body = await gql(api, token, "mutation($c: String!, $a: AddressInput!) { "
                                     "setCartAddresses(cartId: $c, shipping: $a, "
                                     "email: \"ada@example.com\") { id } }",
                         {"c": cart_id, "a": address})
        assert "errors" not in body, body
        return cart_id

    cart_id = await cart_with_address()
    for step in ("addCartLine(cartId: $c, sku: \"MUG\", quantity: 1) { id }",
                 "setCartShippingMethod(cartId: $c, method: \"flat_rate:standard\") { id }"):
        body = await gql(api, token, f"mutation($c: String!) {{ {step} }}", {"c": cart_id})
        assert "errors" not in body, body
    placed = await gql(api, token, CHECKOUT, {"c": cart_id})
    order = placed["data"]["checkout"]
    await cart_with_address()  # a second cart, still open, its address filled in

    await staff(api, "mutation($c: String!) { eraseCustomer(id: $c) { id } }", c=ada["id"])
    seen = await staff(api, "query($o: String!) { order(id: $o) { email shippingAddress "
                            "{ name line1 city postalCode phone email } } }", o=order["id"])
    assert not [p for p in ADA_PERSONAL if p in json.dumps(seen)], seen
    export = await staff(api, "query($c: String!) { customerExport(id: $c) }", c=ada["id"])
    assert [o["number"] for o in export["orders"]] == [order["number"]]
    leaked = [p for p in ADA_PERSONAL if p in json.dumps(export)]
    assert leaked == [], f"personal data left in the export after erasure: {leaked}"


# --------------------------------------------------------------------------- trust model


async def test_a_storefront_key_of_another_channel_cannot_use_a_guest_cart(api: Api) -> None:
    web = await key(api, "storefront", channel="web")
    etsy = await key(api, "storefront", channel="etsy")
    cart_id, holding = await guest_cart(api, web)
    # even with the cart's own token, another channel's key does not open it
    stolen = {**etsy, "X-Cart-Token": holding["X-Cart-Token"]}
    for query in ("query($c: String!) { cart(id: $c) { id } }", CHECKOUT):
        body = await gql(api, stolen, query, {"c": cart_id})
        assert only_error(body)["extensions"]["status"] == 404, body
    assert await api.order_count() == 0


async def test_a_key_issues_only_keys_within_its_own_scopes(api: Api) -> None:
    keys_only = await key(api, "admin", scopes=["keys"])
    body = await gql(api, keys_only, "mutation { issueKey(kind: \"admin\", "
                                     "scopes: [\"keys\", \"refunds\"]) { secret } }")
    assert only_error(body)["extensions"]["status"] == 403, body
    body = await gql(api, keys_only, "mutation { issueKey(kind: \"admin\", "
                                     "scopes: [\"keys\"]) { secret } }")
    assert "errors" not in body, body
    # a customer token and a storefront key issue nothing
    shop = await key(api, "storefront", channel="web")
    body = await gql(api, shop, "mutation { issueKey(kind: \"storefront\", channel: \"web\") "
                                "{ secret } }")
    assert only_error(body)["extensions"]["status"] == 403, body


# --------------------------------------------------------------------------- input limits


async def test_strict_types_limits_control_characters_and_countries(api: Api) -> None:
    shop = await key(api, "storefront", channel="web")
    cart = (await gql(api, shop, "mutation { createCart { cart { id } cartToken } }"))
    created = cart["data"]["createCart"]
    held = {**shop, "X-Cart-Token": created["cartToken"]}
    cid = created["cart"]["id"]
    add = "mutation($c: String!, $q: Int!) { addCartLine(cartId: $c, sku: \"MUG\", " \
          "quantity: $q) { id } }"
    # a string for an Int: a validation error before anything runs (no type coercion)
    body = await gql(api, held, add, {"c": cid, "q": "2"})
    assert only_error(body)["extensions"]["status"] == 400, body
    # over the quantity limit, or not positive
    for quantity in (10**6, 0, -1):
        body = await gql(api, held, add, {"c": cid, "q": quantity})
        assert only_error(body)["extensions"]["status"] == 422, (quantity, body)
    addresses = "mutation($c: String!, $a: AddressInput!) { setCartAddresses(cartId: $c, " \
                "shipping: $a) { id } }"
    for bad in ({"name": "Erika\x00"}, {"city": "Berlin\x1b[31m"}, {"country": "XX"},
                {"country": "de "}, {"name": "E" * 10_000}):
        body = await gql(api, held, addresses, {"c": cid, "a": {**ADDRESS, **bad}})
        assert only_error(body)["extensions"]["status"] == 422, (bad, body)
    state = await gql(api, held, "query($c: String!) { cart(id: $c) { lines { sku } "
                                 "shippingAddress { name } } }", {"c": cid})
    assert state["data"]["cart"] == {"lines": [], "shippingAddress": None}, state


async def test_scenario_2_gift_line_follows_the_threshold_in_a_cart(api: Api) -> None:
    shop = await key(api, "storefront", channel="web")
    created = (await gql(api, shop, "mutation { createCart(email: \"erika@example.com\") "
                                    "{ cart { id } cartToken } }"))["data"]["createCart"]
    held = {**shop, "X-Cart-Token": created["cartToken"]}
    cid = created["cart"]["id"]
    fields = "lines { sku quantity unitPrice { amount } } totals { subtotal { amount } }"

    async def cart_after(mutation: str, **variables: Any) -> dict[str, Any]:
        body = await gql(api, held, mutation.replace("FIELDS", fields), {"c": cid, **variables})
        assert "errors" not in body, body
        data: dict[str, Any] = next(iter(body["data"].values()))
        return data

    def gifts(cart: dict[str, Any]) -> list[tuple[str, int, int]]:
        return [(ln["sku"], ln["quantity"], ln["unitPrice"]["amount"]) for ln in cart["lines"]
                if ln["sku"] == "GIFT-TOTE"]

    add = "mutation($c: String!, $s: String!, $q: Int!) { addCartLine(cartId: $c, sku: $s, " \
          "quantity: $q) { FIELDS } }"
    cart = await cart_after(add, s="POSTER", q=2)
    assert cart["totals"]["subtotal"]["amount"] == 8000 and gifts(cart) == []
    explain = "query($c: String!) { cartExplanation(cartId: $c) { source message } }"
    steps = (await gql(api, held, explain, {"c": cid}))["data"]["cartExplanation"]
    assert [s["message"] for s in steps if s["source"] == "free_gift"] == [
        "spend EUR 20.00 more for a free tote bag"]
    cart = await cart_after(add, s="MUG", q=2)
    assert gifts(cart) == [("GIFT-TOTE", 1, 0)]
    assert cart["totals"]["subtotal"]["amount"] == 10_400  # the gift costs nothing
    cart = await cart_after("mutation($c: String!) { removeCartLine(cartId: $c, sku: \"MUG\") "
                            "{ FIELDS } }")
    assert gifts(cart) == [] and [ln["sku"] for ln in cart["lines"]] == ["POSTER"]
    cart = await cart_after("mutation($c: String!) { setCartLine(cartId: $c, sku: \"MUG\", "
                            "quantity: 2) { FIELDS } }")
    assert gifts(cart) == [("GIFT-TOTE", 1, 0)]
    await cart_after("mutation($c: String!, $a: AddressInput!) { setCartAddresses(cartId: $c, "
                     "shipping: $a) { id } }", a=ADDRESS)
    await cart_after("mutation($c: String!) { setCartShippingMethod(cartId: $c, "
                     "method: \"flat_rate:standard\") { id } }")
    order = (await gql(api, held, CHECKOUT, {"c": cid}))["data"]["checkout"]
    assert order["status"] == "processing", order
    levels = (await gql(api, shop, "{ availability(skus: [\"GIFT-TOTE\", \"POSTER\"]) "
                                   "{ sku available } }"))["data"]["availability"]
    assert {lv["sku"]: lv["available"] for lv in levels} == {"GIFT-TOTE": 9, "POSTER": 18}


async def test_scenario_10_a_rush_on_scarce_stock_oversells_nothing(api: Api) -> None:
    stock, buyers = 5, 20
    await staff(api, "mutation($v: [VariantInput!]) { putProduct(id: \"bf-deal\", name: "
                     "\"Black Friday deal\", variants: $v) { id } }",
                v=[{"sku": "BF-DEAL", "name": "Deal of the day", "prices": {"EUR": 1999},
                    "weightGrams": 300}])
    await staff(api, "mutation($n: Int!) { adjustInventory(sku: \"BF-DEAL\", locationId: "
                     "\"wh1\", delta: $n, kind: \"receive\") { available } }", n=stock)
    shop = await key(api, "storefront", channel="web")
    mutation = ("mutation($l: [LineInput!]!, $a: AddressInput!, $p: PaymentInput!) { "
                "placeOrder(channel: \"web\", lines: $l, email: \"rush@example.com\", "
                "shippingAddress: $a, shippingMethod: \"flat_rate:standard\", payment: $p) "
                "{ id payments { status } } }")
    variables = {"l": [{"sku": "BF-DEAL", "quantity": 1}], "a": ADDRESS,
                 "p": {"gateway": "sandbox", "token": "tok_success"}}

    async def buy(i: int) -> dict[str, Any]:
        response = await api.client.post("/graphql", json={
            "query": mutation, "variables": variables},
            headers={**shop, "Idempotency-Key": f"rush-{i}"})
        assert response.status_code < 500, response.text
        body: dict[str, Any] = response.json()
        return body

    answers = await asyncio.gather(*(buy(i) for i in range(buyers)))
    placed = [a["data"]["placeOrder"] for a in answers if a.get("data")]
    refused = [a["errors"][0]["extensions"] for a in answers if a.get("errors")]
    assert len(placed) == stock and len({o["id"] for o in placed}) == stock, answers
    assert all(o["payments"] == [{"status": "authorized"}] for o in placed), placed
    assert [(e["status"], e["type"]) for e in refused] == \
        [(409, PROBLEMS + "out-of-stock")] * (buyers - stock), refused
    assert await api.order_count() == stock
    # a buyer's retry with the same key replays the same order
    again = await api.client.post("/graphql", json={"query": mutation, "variables": variables},
                                  headers={**shop, "Idempotency-Key": "rush-0"})
    first = answers[0]
    assert again.json() == first
    assert await api.order_count() == stock
    levels = (await gql(api, shop, "{ availability(skus: [\"BF-DEAL\"]) { available } }"))
    assert levels["data"]["availability"] == [{"available": 0}]
    assert await api.engine.inventory.ledger_discrepancies() == []


async def test_scenario_8_a_suspicious_order_waits_for_review(database_url: str) -> None:
    async with api_client(database_url,
                          plugins=[*builtin_plugins(), (BigOrderReview(), "review")]) as api:
        shop = await key(api, "storefront", channel="web")
        warehouse = await key(api, "admin", scopes=["fulfilment"])
        reviewer = await key(api, "admin", scopes=["orders"])
        small = (await place(api, shop, "web", "MUG", 1))["data"]["placeOrder"]
        body = await place(api, shop, "web", "SHIRT-M", 20)  # EUR 500.00
        big = body["data"]["placeOrder"]
        assert (small["status"], big["status"]) == ("processing", "on_hold"), body
        view = "query($o: String!) { order(id: $o) { status holdReason riskScore } }"
        seen = (await gql(api, shop, view, {"o": big["id"]}))
        assert "errors" in seen or seen["data"]["order"]["holdReason"] is None, seen
        whole = (await gql(api, reviewer, view, {"o": big["id"]}))["data"]["order"]
        assert whole == {"status": "on_hold", "holdReason": "review: amount above 300.00",
                         "riskScore": 90}
        queue = "{ fulfilmentQueue(first: 10) { edges { node { id } } } }"
        ids = [e["node"]["id"] for e in
               (await gql(api, warehouse, queue))["data"]["fulfilmentQueue"]["edges"]]
        assert ids == [small["id"]]
        release = "mutation($o: String!) { releaseOrder(orderId: $o, note: \"called\") " \
                  "{ status } }"
        assert only_error(await gql(api, warehouse, release, {"o": big["id"]})
                          )["extensions"]["status"] == 403
        released = await gql(api, reviewer, release, {"o": big["id"]})
        assert released["data"]["releaseOrder"]["status"] == "processing", released
        ids = [e["node"]["id"] for e in
               (await gql(api, warehouse, queue))["data"]["fulfilmentQueue"]["edges"]]
        assert ids == [small["id"], big["id"]]


async def test_scenario_9_vip_and_high_value_orders_come_first(database_url: str) -> None:
    async with api_client(database_url, plugins=[*builtin_plugins(),
                                                 (VipAndHighValueFirst(), "priority")]) as api:
        shop = await key(api, "storefront", channel="web")
        vera = await staff(api, "mutation { createCustomer(email: \"vip@example.com\", "
                                "name: \"Vera\", tags: [\"vip\"]) { id } }")
        eve = await staff(api, "mutation { createCustomer(email: \"eve@example.com\", "
                               "name: \"Eve\") { id } }")
        tokens = {}
        for who in (vera, eve):
            issued = await staff(api, "mutation($c: String!) { issueCustomerToken("
                                      "customerId: $c) { secret } }", c=who["id"])
            tokens[who["id"]] = {"Authorization": f"Bearer {issued['secret']}"}
        vip, upstart = tokens[vera["id"]], tokens[eve["id"]]
        # a customer cannot make themselves VIP
        body = await gql(api, upstart, "mutation($c: String!) { updateCustomer(id: $c, "
                                       "tags: [\"vip\"]) { tags } }", {"c": eve["id"]})
        assert only_error(body)["extensions"]["status"] == 422, body
        regular = (await place(api, shop, "web", "MUG", 1))["data"]["placeOrder"]
        high_value = (await place(api, shop, "web", "POSTER", 3))["data"]["placeOrder"]
        vip_small = (await place(api, vip, "web", "MUG", 1))["data"]["placeOrder"]
        eve_small = (await place(api, upstart, "web", "MUG", 1))["data"]["placeOrder"]
        vip_high = (await place(api, vip, "web", "SHIRT-M", 5))["data"]["placeOrder"]
        queue = await staff(api, "{ fulfilmentQueue(first: 10) { edges { node { id } } } }")
        assert [e["node"]["id"] for e in queue["edges"]] == [
            vip_high["id"], vip_small["id"], high_value["id"], regular["id"], eve_small["id"]]


async def test_scenario_4_the_order_and_its_quotes_carry_the_expected_delivery(
        database_url: str) -> None:
    recorder = ConfirmationRecorder()
    async with api_client(database_url,
                          plugins=[*builtin_plugins(), (recorder, "confirmation")]) as api:
        shop = await key(api, "storefront", channel="web")
        cart_id, holding = await guest_cart(api, shop)
        quotes = await gql(api, holding, "query($c: String!) { cart(id: $c) { shippingQuotes "
                                         "{ method expectedDelivery } } }", {"c": cart_id})
        quoted = quotes["data"]["cart"]["shippingQuotes"][0]["expectedDelivery"]
        assert quoted and date.fromisoformat(quoted) > date.today(), quotes
        body = await gql(api, holding, "mutation($c: String!) { checkout(cartId: $c, payment: "
                                       "{gateway: \"sandbox\", token: \"tok_success\"}) { id "
                                       "number shipping { method expectedDelivery price "
                                       "{ amount } } } }", {"c": cart_id})
        order = body["data"]["checkout"]
        promised = date.fromisoformat(order["shipping"]["expectedDelivery"])
        assert order["shipping"]["method"] == "flat_rate:standard" and promised > date.today()
        assert recorder.sent == [{"order_id": order["id"], "number": order["number"],
                                  "to": "erika@example.com", "event": "payment.authorized",
                                  "expected_delivery": promised}]
