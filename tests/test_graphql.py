"""The GraphQL API at /graphql, through the real app (httpx ASGI transport), on SQLite and
PostgreSQL: the checkout scenario, the trust model, errors with extensions, idempotent
checkout, limits, and the committed SDL."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api_support import BERLIN, Api, api_client, api_fixture, expect  # noqa: F401

PROBLEMS = "https://ordnung.dev/problems/"
ROOT = Path(__file__).resolve().parent.parent

CART_FIELDS = "id status lines { sku quantity lineTotal { amount currency formatted } } " \
              "totals { total { amount currency formatted } } shippingQuotes { method }"
ADDRESS = {"name": BERLIN["name"], "line1": BERLIN["line1"], "city": BERLIN["city"],
           "postalCode": BERLIN["postal_code"], "country": BERLIN["country"]}


async def gql(api: Api, headers: dict[str, str], query: str,
              variables: dict[str, Any] | None = None) -> dict[str, Any]:
    """POST /graphql; GraphQL answers 200 with ``data`` and/or ``errors``."""
    response = await api.client.post("/graphql", json={"query": query,
                                                       "variables": variables or {}},
                                     headers=headers)
    body: dict[str, Any] = expect(response, 200)
    return body


def only_error(body: dict[str, Any]) -> dict[str, Any]:
    errors = body.get("errors") or []
    assert len(errors) == 1, body
    error: dict[str, Any] = errors[0]
    return error


async def guest_cart(api: Api, shop: dict[str, str], *, guest: bool = True
                     ) -> tuple[str, dict[str, str]]:
    """A cart with a MUG, an address and a shipping method: its id, and the caller's
    headers holding its token (a guest's; a customer's cart has none)."""
    body = await gql(api, shop, "mutation { createCart(channel: \"web\") "
                                "{ cart { id } cartToken } }")
    created = body["data"]["createCart"]
    assert bool(created["cartToken"]) is guest, body
    cart_id = created["cart"]["id"]
    holding = {**shop, "X-Cart-Token": created["cartToken"]} if guest else dict(shop)
    body = await gql(api, holding, "mutation($c: String!) { addCartLine(cartId: $c, "
                                   f"sku: \"MUG\", quantity: 2) {{ {CART_FIELDS} }} }}",
                     {"c": cart_id})
    assert body["data"]["addCartLine"]["lines"][0]["quantity"] == 2, body
    body = await gql(api, holding, "mutation($c: String!, $a: AddressInput!) { "
                                   "setCartAddresses(cartId: $c, shipping: $a, "
                                   "email: \"erika@example.com\") { id } }",
                     {"c": cart_id, "a": ADDRESS})
    assert "errors" not in body, body
    body = await gql(api, holding, "query($c: String!) { cart(id: $c) { shippingQuotes "
                                   "{ method } } }", {"c": cart_id})
    method = body["data"]["cart"]["shippingQuotes"][0]["method"]
    body = await gql(api, holding, "mutation($c: String!, $m: String!) { "
                                   "setCartShippingMethod(cartId: $c, method: $m) { id } }",
                     {"c": cart_id, "m": method})
    assert "errors" not in body, body
    return cart_id, holding


CHECKOUT = ("mutation($c: String!) { checkout(cartId: $c, payment: {gateway: \"sandbox\", "
            "token: \"tok_success\"}) { id number status totals { total { amount currency "
            "formatted } } holdReason riskScore } }")


async def test_checkout_scenario(api: Api) -> None:
    shop = await api.storefront("web")
    page = await gql(api, shop, "{ products(first: 2) { edges { cursor node { id variants "
                                "{ sku prices { amount { amount currency formatted } } } } } "
                                "pageInfo { hasNextPage endCursor } } }")
    products = page["data"]["products"]
    assert len(products["edges"]) == 2 and products["pageInfo"]["hasNextPage"] is True
    after = products["pageInfo"]["endCursor"]
    nxt = await gql(api, shop, "query($a: String) { products(first: 2, after: $a) "
                               "{ edges { node { id } } } }", {"a": after})
    assert nxt["data"]["products"]["edges"][0]["node"]["id"] not in {
        e["node"]["id"] for e in products["edges"]}

    cart_id, holding = await guest_cart(api, shop)
    placed = await gql(api, holding, CHECKOUT, {"c": cart_id})
    order = placed["data"]["checkout"]
    total = order["totals"]["total"]
    assert total["currency"] == "EUR" and total["amount"] > 0
    assert total["formatted"].startswith("EUR ")
    # a storefront key reads the customer's view: no staff facts
    assert order["holdReason"] is None and order["riskScore"] is None
    # staff read the same order whole, as REST does
    staff = await gql(api, api.admin, "query($o: String!) { order(id: $o) { id riskScore "
                                      "holdReason } }", {"o": order["id"]})
    assert staff["data"]["order"]["riskScore"] is not None
    rest = await api.order(order["id"])
    assert rest["totals"]["total"] == total["amount"]
    # the guest's page follows its order with a stream token, which opens the SSE stream
    body = await gql(api, holding, "mutation($c: String!) { cartOrderStreamToken(cartId: $c) "
                                   "{ orderId url } }", {"c": cart_id})
    minted = body["data"]["cartOrderStreamToken"]
    assert minted["orderId"] == order["id"] and "stream_token=" in minted["url"], body
    body = await gql(api, shop, "mutation($c: String!) { cartOrderStreamToken(cartId: $c) "
                                "{ url } }", {"c": cart_id})
    assert only_error(body)["extensions"]["status"] == 404
    queue = await gql(api, api.admin, "{ fulfilmentQueue(first: 10) { edges { cursor } } }")
    assert order["id"] in {e["cursor"] for e in queue["data"]["fulfilmentQueue"]["edges"]}
    # the spent cart still explains its price; staff see the order's payment methods
    steps = await gql(api, holding, "query($c: String!) { cartExplanation(cartId: $c) "
                                    "{ step message amount { formatted } } }", {"c": cart_id})
    assert {s["step"] for s in steps["data"]["cartExplanation"]} >= {"lines"}, steps
    methods = await gql(api, api.admin, "query($o: String!) { paymentMethods(orderId: $o) "
                                        "{ gateway method } }", {"o": order["id"]})
    assert methods["data"]["paymentMethods"], methods
    body = await gql(api, shop, "query($o: String!) { paymentMethods(orderId: $o) "
                                "{ gateway } }", {"o": order["id"]})
    assert only_error(body)["extensions"]["status"] == 403


async def test_guest_cart_needs_its_token(api: Api) -> None:
    shop = await api.storefront("web")
    other_shop = await api.storefront("web")
    cart_id, holding = await guest_cart(api, shop)
    for headers in (shop, other_shop, {**other_shop, "X-Cart-Token": "ct_wrong"}):
        body = await gql(api, headers, "query($c: String!) { cart(id: $c) { id } }",
                         {"c": cart_id})
        error = only_error(body)
        assert error["extensions"]["type"] == PROBLEMS + "not-found"
        assert error["extensions"]["status"] == 404
        assert body["data"] is None
        body = await gql(api, headers, CHECKOUT, {"c": cart_id})
        assert only_error(body)["extensions"]["status"] == 404
    assert await api.order_count() == 0
    ok = await gql(api, holding, "query($c: String!) { cart(id: $c) { id } }", {"c": cart_id})
    assert ok["data"]["cart"]["id"] == cart_id


async def test_customer_sees_only_own_orders_in_customer_view(api: Api) -> None:
    shop = await api.storefront("web")
    cart_id, holding = await guest_cart(api, shop)
    guest_order = (await gql(api, holding, CHECKOUT, {"c": cart_id}))["data"]["checkout"]
    _, erika = await api.customer()
    mine = await gql(api, erika, "{ orders(first: 10) { edges { node { id riskScore "
                                 "metadata } } } }")
    assert mine["data"]["orders"]["edges"] == []
    body = await gql(api, erika, "query($o: String!) { order(id: $o) { id } }",
                     {"o": guest_order["id"]})
    assert only_error(body)["extensions"]["status"] == 404
    # staff-only operations answer forbidden (403) with the REST problem type
    body = await gql(api, erika, "mutation($o: String!) { capturePayment(orderId: $o) "
                                 "{ id } }", {"o": guest_order["id"]})
    ext = only_error(body)["extensions"]
    assert ext["type"] == PROBLEMS + "forbidden" and ext["status"] == 403
    # a storefront key cannot list orders at all
    body = await gql(api, shop, "{ orders(first: 1) { edges { cursor } } }")
    assert only_error(body)["extensions"]["status"] == 403
    # the customer's own order: listed, in the customer's view, timeline without staff notes
    cart_id, _ = await guest_cart(api, erika, guest=False)
    own = (await gql(api, erika, CHECKOUT, {"c": cart_id}))["data"]["checkout"]
    assert own["riskScore"] is None and own["holdReason"] is None
    await gql(api, api.admin, "mutation($o: String!) { addOrderNote(orderId: $o, note: "
                              "\"staff only\") { id } }", {"o": own["id"]})
    mine = await gql(api, erika, "{ orders(first: 10) { edges { node { id riskScore } } } }")
    assert [e["node"] for e in mine["data"]["orders"]["edges"]] == [
        {"id": own["id"], "riskScore": None}]
    query = "query($o: String!) { orderTimeline(orderId: $o) { kind actor } }"
    seen = (await gql(api, erika, query, {"o": own["id"]}))["data"]["orderTimeline"]
    whole = (await gql(api, api.admin, query, {"o": own["id"]}))["data"]["orderTimeline"]
    assert len(seen) < len(whole) and "staff only" not in str(seen), (seen, whole)


async def test_engine_errors_carry_type_status_and_facts(api: Api) -> None:
    shop = await api.storefront("web")
    cart_id, holding = await guest_cart(api, shop)
    body = await gql(api, holding, CHECKOUT.replace("tok_success", "tok_decline"),
                     {"c": cart_id})
    ext = only_error(body)["extensions"]
    assert ext["type"] == PROBLEMS + "payment-declined" and ext["status"] == 402
    assert ext["gateway"] == "sandbox"
    # the same error REST gives for the same request
    rest = await api.client.post(f"/carts/{cart_id}/order", headers=holding,
                                 json={"payment": {"gateway": "sandbox",
                                                   "token": "tok_decline"}})
    assert rest.status_code == 402 and rest.json()["type"] == ext["type"]
    # input goes through the same check_input as REST: control characters, countries
    bad = dict(ADDRESS, country="XX")
    body = await gql(api, holding, "mutation($c: String!, $a: AddressInput!) { "
                                   "setCartAddresses(cartId: $c, shipping: $a) { id } }",
                     {"c": cart_id, "a": bad})
    ext = only_error(body)["extensions"]
    assert ext["type"] == PROBLEMS + "validation" and ext["status"] == 422
    body = await gql(api, holding, "mutation($c: String!) { addCartLine(cartId: $c, "
                                   "sku: \"MU\\u0000G\") { id } }", {"c": cart_id})
    ext = only_error(body)["extensions"]
    assert ext["status"] == 422, body
    body = await gql(api, holding, "mutation($c: String!) { addCartLine(cartId: $c, "
                                   "sku: \"MUG\", quantity: 100000000) { id } }",
                     {"c": cart_id})
    assert only_error(body)["extensions"]["status"] == 422
    cart = await gql(api, holding, "query($c: String!) { cart(id: $c) { lines { quantity } "
                                   "shippingAddress { country } } }", {"c": cart_id})
    assert cart["data"]["cart"]["lines"] == [{"quantity": 2}]
    assert cart["data"]["cart"]["shippingAddress"]["country"] == "DE"


async def test_control_characters_in_ids_are_refused_alike_on_both_databases(
        api: Api) -> None:
    shop = await api.storefront("web")
    for query, variables in (
            ("query($o: String!) { order(id: $o) { id } }", {"o": "ord_\u0000x"}),
            ("query($c: String!) { cart(id: $c) { id } }", {"c": "crt\u0000"}),
            ("query($p: String!) { product(id: $p) { id } }", {"p": "mug\u001b"}),
            ("query($s: [String!]!) { availability(skus: $s) { sku } }", {"s": ["M\u0000"]}),
            ("query($a: String) { products(after: $a) { edges { cursor } } }",
             {"a": "x" * 100_000})):
        body = await gql(api, api.admin if "order" in query else shop, query, variables)
        ext = only_error(body)["extensions"]
        assert ext["type"] == PROBLEMS + "validation" and ext["status"] == 422, body


async def test_idempotent_checkout_replays_and_refuses_mismatch(api: Api) -> None:
    shop = await api.storefront("web")
    cart_id, holding = await guest_cart(api, shop)
    headers = {**holding, "Idempotency-Key": "checkout-1"}
    payload = {"query": CHECKOUT, "variables": {"c": cart_id}}
    first = await api.client.post("/graphql", json=payload, headers=headers)
    again = await api.client.post("/graphql", json=payload, headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.headers.get("idempotent-replayed") == "true"
    assert first.json() == again.json()
    assert await api.order_count() == 1
    other = await api.client.post("/graphql", json={"query": CHECKOUT.replace(
        "tok_success", "tok_other"), "variables": {"c": cart_id}}, headers=headers)
    assert other.status_code == 422
    assert other.json()["type"] == PROBLEMS + "idempotency-mismatch"
    assert await api.order_count() == 1


async def test_a_duplicate_of_a_running_checkout_gets_409(database_url: str) -> None:
    from tests.test_fault_idempotency import slow_plugins

    async with api_client(database_url, plugins=slow_plugins()) as api:
        gateway = api.plugin("sandbox")
        shop = await api.storefront("web")
        cart_id, holding = await guest_cart(api, shop)
        headers = {**holding, "Idempotency-Key": "slow-checkout"}
        payload = {"query": CHECKOUT, "variables": {"c": cart_id}}
        first = asyncio.create_task(api.client.post("/graphql", json=payload,
                                                    headers=headers))
        await asyncio.wait_for(gateway.entered.wait(), 10)
        duplicate = await api.client.post("/graphql", json=payload, headers=headers)
        assert duplicate.status_code == 409, duplicate.text
        assert duplicate.json()["type"] == PROBLEMS + "conflict"
        assert int(duplicate.headers["retry-after"]) >= 1
        gateway.release.set()
        placed = await first
        assert placed.status_code == 200 and "errors" not in placed.json(), placed.text
        replay = await api.client.post("/graphql", json=payload, headers=headers)
        assert replay.headers["idempotent-replayed"] == "true"
        assert replay.content == placed.content
        assert await api.order_count() == 1


async def test_limits_are_refused(api: Api) -> None:
    shop = await api.storefront("web")
    body = await gql(api, shop, "{ products(first: 1000) { edges { cursor } } }")
    assert only_error(body)["extensions"]["status"] == 422
    aliases = " ".join(f"a{i}: product(id: \"x\") {{ id }}" for i in range(20))
    nested = "query { " + "__typename " * 3000 + "}"
    # twice each: parsed and validated documents are cached, their refusals are not skipped
    for _ in range(2):
        body = await gql(api, shop, "{ " + aliases + " }")
        assert body.get("data") is None and "aliases" in body["errors"][0]["message"]
        body = await gql(api, shop, nested)
        assert body.get("data") is None and "token" in body["errors"][0]["message"].lower()
    deep = "{ products { edges { node { variants { prices { amount { amount } } } } } } }"
    ok = await gql(api, shop, deep)
    assert "errors" not in ok, ok
    # no type of this schema nests itself, so no query reaches MAX_DEPTH yet: the limiter
    # is checked on a schema built with a smaller one
    from ordnung.api.graphql.schema import build_schema

    schema = build_schema(max_depth=4)
    for _ in range(2):
        shallow = await schema.execute(deep)
        assert shallow.data is None and shallow.errors
        assert "depth" in shallow.errors[0].message


def test_the_document_cache_is_bounded_and_keeps_no_syntax_error() -> None:
    from graphql import GraphQLSyntaxError

    from ordnung.api.graphql.documents import DocumentCache

    cache = DocumentCache(maxsize=2)
    first = cache.document("{ a }", {})
    assert cache.document("{ a }", {}) is first
    cache.document("{ b }", {})
    cache.document("{ c }", {})  # "{ a }" was the least recently used: gone
    assert cache.document("{ a }", {}) is not first
    for _ in range(2):
        with pytest.raises(GraphQLSyntaxError):
            cache.document("{ a", {})
    validations: list[str] = []
    for _ in range(2):
        assert cache.errors("{ a }", lambda: validations.append("ran") or []) == []
    assert validations == ["ran"]


async def test_a_variable_of_the_wrong_type_is_a_400_not_a_500(api: Api) -> None:
    """graphql-core keeps a scalar's coercion error as the original error of a variable's
    error: it is the caller's mistake, answered like any other invalid document."""
    shop = await api.storefront("web")
    created = (await gql(api, shop, "mutation { createCart { cart { id } cartToken } }"))
    cart = created["data"]["createCart"]
    held = {**shop, "X-Cart-Token": cart["cartToken"]}
    add = "mutation($c: String!, $q: Int!) { addCartLine(cartId: $c, sku: \"MUG\", " \
          "quantity: $q) { id } }"
    for wrong in ("2", 2.5, True, [2], {"n": 2}, 2**40):
        body = await gql(api, held, add, {"c": cart["cart"]["id"], "q": wrong})
        extensions = only_error(body)["extensions"]
        assert extensions == {"type": PROBLEMS + "graphql-validation", "status": 400}, body
    for wrong_id in (7, None, ["x"]):
        body = await gql(api, held, add, {"c": wrong_id, "q": 1})
        assert only_error(body)["extensions"]["status"] == 400, body
    body = await gql(api, api.admin, "mutation($v: JSON) { transitionOrder(orderId: \"x\", "
                                     "event: \"y\", data: $v) { id } }", {"v": {"a": [1]}})
    assert only_error(body)["extensions"]["status"] == 404, body
    cart_state = await gql(api, held, "query($c: String!) { cart(id: $c) { lines { sku } } }",
                           {"c": cart["cart"]["id"]})
    assert cart_state["data"]["cart"]["lines"] == []


async def test_queries_by_get_may_span_lines(api: Api) -> None:
    """A GraphQL document is not a REST query parameter: line breaks and length are the
    document's own business (the token limit bounds it), while its arguments get the
    parameter rules (see the control-character test)."""
    shop = await api.storefront("web")
    query = "query Catalogue {\n  products(first: 1) {\n    edges { cursor }\n  }\n}\n" + \
        "# " + "x" * 600 + "\n"
    response = await api.client.get("/graphql", params={"query": query}, headers=shop)
    body = expect(response, 200)
    assert "errors" not in body and body["data"]["products"]["edges"], body
    mutation = await api.client.get("/graphql", params={
        "query": "mutation { createCart(channel: \"web\") { cartToken } }"}, headers=shop)
    assert mutation.status_code in (400, 405), mutation.text  # no mutation over GET


async def test_no_key_no_graphql(api: Api) -> None:
    response = await api.client.post("/graphql", json={"query": "{ __typename }"})
    assert response.status_code == 401


async def test_order_list_costs_a_fixed_number_of_statements(api: Api) -> None:
    shop = await api.storefront("web")
    for _ in range(4):
        cart_id, holding = await guest_cart(api, shop)
        assert "errors" not in await gql(api, holding, CHECKOUT, {"c": cart_id})
    query = ("query($n: Int!) { orders(first: $n) { edges { node { id lines { sku } "
             "payments { status amount { amount } } shipments { id lines { sku } } } } } }")
    costs = []
    for n in (1, 4):
        await api.engine.runtime.journal.flush_marks()
        with api.engine.db.tally() as spent:
            body = await gql(api, api.admin, query, {"n": n})
        costs.append(spent.statements)
        assert len(body["data"]["orders"]["edges"]) == n
    print(f"SQL statements for an order list of 1 and 4 orders: {costs}")
    assert costs[0] == costs[1]


async def test_staff_capture_and_fulfilment(api: Api) -> None:
    shop = await api.storefront("web")
    cart_id, holding = await guest_cart(api, shop)
    order_id = (await gql(api, holding, CHECKOUT, {"c": cart_id}))["data"]["checkout"]["id"]
    shipments = "id status shipments { id status lines { sku quantity } }"
    # the storefront key that placed it may not capture or ship it
    for op in ("capturePayment(orderId: $o)", "createShipment(orderId: $o)"):
        body = await gql(api, shop, f"mutation($o: String!) {{ {op} {{ id }} }}",
                         {"o": order_id})
        assert only_error(body)["extensions"]["type"] == PROBLEMS + "forbidden"
    cashier = await api.admin_with("payments")
    body = await gql(api, cashier, "mutation($o: String!) { capturePayment(orderId: $o) "
                                   "{ payments { status captured { amount } } } }",
                     {"o": order_id})
    assert body["data"]["capturePayment"]["payments"][0]["captured"]["amount"] > 0, body
    warehouse = await api.admin_with("fulfilment")
    body = await gql(api, warehouse, f"mutation($o: String!) {{ createShipment(orderId: $o) "
                                     f"{{ {shipments} }} }}", {"o": order_id})
    shipment = body["data"]["createShipment"]["shipments"][0]
    ids = {"o": order_id, "s": shipment["id"]}
    assert "errors" not in await gql(api, warehouse, "mutation($o: String!, $s: String!) "
                                     "{ pickShipment(orderId: $o, shipmentId: $s) { id } }", ids)
    scans = [ln["sku"] for ln in shipment["lines"] for _ in range(ln["quantity"])]
    # a wrong scan is the engine's error, with the REST status
    body = await gql(api, warehouse, "mutation($o: String!, $s: String!) { packShipment("
                                     "orderId: $o, shipmentId: $s, scans: [\"NOPE\"]) "
                                     "{ id } }", ids)
    assert only_error(body)["extensions"]["status"] in (409, 422)
    body = await gql(api, warehouse, "mutation($o: String!, $s: String!, $x: [String!]!) { "
                                     "packShipment(orderId: $o, shipmentId: $s, scans: $x) "
                                     "{ id } }", {**ids, "x": scans})
    assert "errors" not in body, body
    body = await gql(api, warehouse, "mutation($o: String!, $s: String!) { shipShipment("
                                     f"orderId: $o, shipmentId: $s) {{ {shipments} }} }}", ids)
    assert body["data"]["shipShipment"]["shipments"][0]["status"] == "shipped", body
    body = await gql(api, warehouse, "mutation($o: String!, $s: String!) { deliverShipment("
                                     f"orderId: $o, shipmentId: $s) {{ {shipments} }} }}", ids)
    assert body["data"]["deliverShipment"]["shipments"][0]["status"] == "delivered", body
    rest = await api.order(order_id)
    assert rest["shipments"][0]["status"] == "delivered"
    # a return of one unit, approved, received and refunded, each step by its scope
    line_id = rest["lines"][0]["id"]
    returns = "returns { id status refundAmount { amount } }"
    body = await gql(api, shop, "mutation($o: String!, $l: String!) { requestReturn("
                                "orderId: $o, lines: [{lineId: $l, quantity: 1}]) { id } }",
                     {"o": order_id, "l": line_id})
    assert only_error(body)["extensions"]["status"] == 403
    body = await gql(api, api.admin, "mutation($o: String!, $l: String!) { requestReturn("
                                     "orderId: $o, reason: \"too big\", lines: [{lineId: $l, "
                                     f"quantity: 1}}]) {{ {returns} }} }}",
                     {"o": order_id, "l": line_id})
    ret = body["data"]["requestReturn"]["returns"][0]
    ids = {"o": order_id, "r": ret["id"]}
    body = await gql(api, warehouse, "mutation($o: String!, $r: String!) { approveReturn("
                                     "orderId: $o, returnId: $r) { id } }", ids)
    assert only_error(body)["extensions"]["status"] == 403
    for step, who in (("approveReturn", api.admin), ("receiveReturn", warehouse),
                      ("refundReturn", await api.admin_with("refunds"))):
        body = await gql(api, who, f"mutation($o: String!, $r: String!) {{ {step}("
                                   f"orderId: $o, returnId: $r) {{ {returns} }} }}", ids)
        assert "errors" not in body, body
    assert body["data"]["refundReturn"]["returns"][0]["status"] in ("refunded", "closed")
    # the lists across orders, each for its scope
    body = await gql(api, warehouse, "query($o: String!) { shipments(orderId: $o) { edges { "
                                     "node { id orderId status } } } }", {"o": order_id})
    listed = body["data"]["shipments"]["edges"][0]["node"]
    assert listed["id"] == shipment["id"] and listed["status"] == "delivered", body
    body = await gql(api, warehouse, "query($s: String!) { shipment(id: $s) { orderNumber } }",
                     {"s": shipment["id"]})
    assert body["data"]["shipment"]["orderNumber"] == rest["number"], body
    body = await gql(api, api.admin, "query($o: String!) { returns(orderId: $o) { edges { "
                                     "node { id status } } } }", {"o": order_id})
    assert body["data"]["returns"]["edges"][0]["node"]["id"] == ret["id"], body
    body = await gql(api, api.admin, "query($r: String!) { return(id: $r) { orderId } }",
                     {"r": ret["id"]})
    assert body["data"]["return"]["orderId"] == order_id, body
    body = await gql(api, warehouse, "{ returns { edges { cursor } } }")
    assert only_error(body)["extensions"]["status"] == 403


async def test_timeline_notes_refund_and_lookups(api: Api) -> None:
    shop = await api.storefront("web")
    body = await gql(api, shop, '{ availability(skus: ["MUG"]) { sku available } }')
    assert body["data"]["availability"][0]["available"] > 0, body
    body = await gql(api, shop, "{ availability(skus: []) { sku } }")
    assert only_error(body)["extensions"]["status"] == 422
    cart_id, holding = await guest_cart(api, shop)
    order = (await gql(api, holding, CHECKOUT, {"c": cart_id}))["data"]["checkout"]
    ids = {"o": order["id"]}
    staff = api.admin
    body = await gql(api, staff, "mutation($o: String!) { addOrderNote(orderId: $o, "
                                 "note: \"call before delivery\") { id } }", ids)
    assert "errors" not in body, body
    body = await gql(api, staff, "mutation($o: String!) { capturePayment(orderId: $o) { id } "
                                 "}", ids)
    assert "errors" not in body, body
    body = await gql(api, staff, "mutation($o: String!) { refundPayment(orderId: $o, "
                                 "amount: 100, reason: \"goodwill\") { payments { refunded "
                                 "{ amount } } } }", ids)
    assert body["data"]["refundPayment"]["payments"][0]["refunded"]["amount"] == 100, body
    refunds_only = await api.admin_with("refunds")
    body = await gql(api, refunds_only, "mutation($o: String!) { voidPayment(orderId: $o) "
                                        "{ id } }", ids)
    assert only_error(body)["extensions"]["type"] == PROBLEMS + "forbidden"
    timeline = "query($o: String!) { orderTimeline(orderId: $o) { seq kind actor } }"
    whole = (await gql(api, staff, timeline, ids))["data"]["orderTimeline"]
    assert any(e["kind"] == "order.note_added" or "note" in e["kind"] for e in whole), whole
    rest = expect(await api.client.get(f"/orders/{order['id']}/timeline", headers=staff), 200)
    assert [e["seq"] for e in rest["items"]] == [e["seq"] for e in whole]
    # a customer who does not own it sees neither the order nor its timeline
    _, erika = await api.customer()
    body = await gql(api, erika, timeline, ids)
    assert only_error(body)["extensions"]["status"] == 404
    body = await gql(api, erika, "query($n: String!) { orderByNumber(number: $n) { id } }",
                     {"n": order["number"]})
    assert only_error(body)["extensions"]["status"] == 404
    body = await gql(api, staff, "query($n: String!) { orderByNumber(number: $n) { id } }",
                     {"n": order["number"]})
    assert body["data"]["orderByNumber"]["id"] == order["id"]


async def test_keys_and_admin_routes(api: Api) -> None:
    keeper = await api.admin_with("keys", "orders")
    body = await gql(api, keeper, "mutation { issueKey(kind: \"admin\", name: \"ops\", "
                                  "scopes: [\"payments\"]) { secret } }")
    # an admin key gets only scopes the calling key holds itself, as in REST
    assert only_error(body)["extensions"]["status"] == 403, body
    body = await gql(api, keeper, "mutation { issueKey(kind: \"storefront\", name: \"pos\", "
                                  "channel: \"web\") { secret key { id kind channel } } }")
    issued = body["data"]["issueKey"]
    assert issued["secret"] and issued["key"]["channel"] == "web", body
    fresh = {"Authorization": f"Bearer {issued['secret']}"}
    ok = await gql(api, fresh, "{ products(first: 1) { edges { cursor } } }")
    assert "errors" not in ok, ok
    listed = await gql(api, keeper, "{ apiKeys { id kind } }")
    assert issued["key"]["id"] in {k["id"] for k in listed["data"]["apiKeys"]}
    assert "secret" not in str(listed)
    body = await gql(api, keeper, "mutation($k: String!) { revokeKey(keyId: $k) }",
                     {"k": issued["key"]["id"]})
    assert body["data"]["revokeKey"] == issued["key"]["id"], body
    gone = await api.client.post("/graphql", json={"query": "{ __typename }"}, headers=fresh)
    assert gone.status_code == 401
    for query in ("{ plugins }", "{ lifecycle }", "mutation { runMaintenance }"):
        assert only_error(await gql(api, keeper, query))["extensions"]["status"] == 403
        body = await gql(api, api.admin, query)
        assert "errors" not in body, body


async def test_customers(api: Api) -> None:
    staff = await api.admin_with("customers")
    body = await gql(api, staff, "mutation($a: AddressInput!) { createCustomer(email: "
                                 "\"max@example.com\", name: \"Max\", tags: [\"vip\"], "
                                 "addresses: [$a], consents: {newsletter: true}) { id email "
                                 "tags consents } }", {"a": ADDRESS})
    max_ = body["data"]["createCustomer"]
    assert max_["tags"] == ["vip"] and max_["consents"] == {"newsletter": True}, body
    body = await gql(api, staff, "mutation($a: AddressInput!) { createCustomer(email: "
                                 "\"x@example.com\", addresses: [$a]) { id } }",
                     {"a": dict(ADDRESS, country="XX")})
    assert only_error(body)["extensions"]["status"] == 422
    body = await gql(api, staff, "mutation($c: String!) { issueCustomerToken(customerId: $c) "
                                 "{ secret } }", {"c": max_["id"]})
    token = {"Authorization": f"Bearer {body['data']['issueCustomerToken']['secret']}"}
    me = await gql(api, token, "{ customer(id: \"me\") { id name } }")
    assert me["data"]["customer"] == {"id": max_["id"], "name": "Max"}
    body = await gql(api, token, "mutation { updateCustomer(id: \"me\", name: \"Maxi\") "
                                 "{ name } }")
    assert body["data"]["updateCustomer"]["name"] == "Maxi", body
    body = await gql(api, token, "mutation { updateCustomer(id: \"me\", tags: [\"gold\"]) "
                                 "{ name } }")
    assert only_error(body)["extensions"]["status"] == 422
    erika, erika_token = await api.customer()
    body = await gql(api, erika_token, "query($c: String!) { customer(id: $c) { id } }",
                     {"c": max_["id"]})
    assert only_error(body)["extensions"]["status"] == 404
    assert only_error(await gql(api, erika_token, "{ customers { edges { cursor } } }")
                      )["extensions"]["status"] == 403
    export = await gql(api, token, "{ customerExport(id: \"me\") }")
    assert "Maxi" in str(export["data"]["customerExport"]), export
    listed = await gql(api, staff, "{ customers(first: 50) { edges { node { id } } } }")
    assert {max_["id"], erika["id"]} <= {
        e["node"]["id"] for e in listed["data"]["customers"]["edges"]}
    body = await gql(api, staff, "mutation($c: String!) { eraseCustomer(id: $c) { erased } }",
                     {"c": max_["id"]})
    assert body["data"]["eraseCustomer"]["erased"] is True, body


async def test_inventory_and_channels(api: Api) -> None:
    stock = await api.admin_with("inventory")
    body = await gql(api, stock, "mutation { putLocation(id: \"annex\", name: \"Annex\", "
                                 "priority: 300) { id priority } }")
    assert body["data"]["putLocation"] == {"id": "annex", "priority": 300}, body
    body = await gql(api, stock, "mutation { adjustInventory(sku: \"MUG\", locationId: "
                                 "\"annex\", delta: 7, kind: \"receive\") { onHand available } "
                                 "}")
    assert body["data"]["adjustInventory"] == {"onHand": 7, "available": 7}, body
    body = await gql(api, stock, "mutation { adjustInventory(sku: \"MUG\", locationId: "
                                 "\"annex\", delta: 1, kind: \"steal\") { onHand } }")
    assert only_error(body)["extensions"]["status"] == 422
    body = await gql(api, stock, "mutation { countInventory(sku: \"MUG\", locationId: "
                                 "\"annex\", counted: 5) { onHand } }")
    assert body["data"]["countInventory"]["onHand"] == 5, body
    levels = await gql(api, stock, "{ inventoryLevels(skus: [\"MUG\"], locationId: "
                                   "\"annex\") { onHand } }")
    assert levels["data"]["inventoryLevels"] == [{"onHand": 5}]
    moves = await gql(api, stock, "{ inventoryMovements(sku: \"MUG\", first: 200) { edges { "
                                  "node { kind onHandDelta locationId } } } }")
    annex = [e["node"] for e in moves["data"]["inventoryMovements"]["edges"]
             if e["node"]["locationId"] == "annex"]
    assert sorted((m["kind"], m["onHandDelta"]) for m in annex) == [
        ("count", -2), ("receive", 7)], moves
    locations = await gql(api, stock, "{ inventoryLocations { id } }")
    assert "annex" in {x["id"] for x in locations["data"]["inventoryLocations"]}
    assert only_error(await gql(api, stock, "{ channels { id } }"))["extensions"][
        "status"] == 403
    catalogue = await api.admin_with("catalogue")
    body = await gql(api, catalogue, "mutation { putChannel(id: \"pos\", name: \"Shop\", "
                                     "kind: \"pos\", currencies: [\"EUR\", \"CHF\"]) "
                                     "{ id currencies } }")
    assert body["data"]["putChannel"]["currencies"] == ["EUR", "CHF"], body
    channels = await gql(api, catalogue, "{ channels { id } }")
    assert "pos" in {c["id"] for c in channels["data"]["channels"]}


async def test_products_transitions_payments_and_reactions(api: Api) -> None:
    catalogue = await api.admin_with("catalogue")
    body = await gql(api, catalogue, "mutation { putProduct(id: \"cap\", name: \"Cap\", "
                                     "variants: [{sku: \"CAP\", name: \"Cap\", prices: "
                                     "{EUR: 1500}}]) { id variants { sku prices { amount { "
                                     "formatted } } } } }")
    assert body["data"]["putProduct"]["variants"][0]["prices"][0]["amount"]["formatted"] == \
        "EUR 15.00", body
    body = await gql(api, catalogue, "mutation { putProduct(id: \"cap\", name: \"Cap\", "
                                     "variants: [{sku: \"CAP\", name: \"Cap\", prices: "
                                     "{EUR: \"cheap\"}}]) { id } }")
    assert only_error(body)["extensions"]["status"] == 422
    shop = await api.storefront("web")
    product = await gql(api, shop, "{ product(id: \"cap\") { name } }")
    assert product["data"]["product"]["name"] == "Cap"
    cart_id, holding = await guest_cart(api, shop)
    order = (await gql(api, holding, CHECKOUT, {"c": cart_id}))["data"]["checkout"]
    # an event the order's state does not allow: the engine's error with its facts
    body = await gql(api, api.admin, "mutation($o: String!) { transitionOrder(orderId: $o, "
                                     "event: \"no_such_event\") { id } }", {"o": order["id"]})
    ext = only_error(body)["extensions"]
    rest = await api.client.post(f"/orders/{order['id']}/transitions", headers=api.admin,
                                 json={"event": "no_such_event"})
    assert ext["type"] == rest.json()["type"] and ext["status"] == rest.status_code, body
    assert {k for k in rest.json() if k not in ("title", "detail", "instance", "status",
                                                 "type")} <= set(ext), (rest.json(), ext)
    # authorising again: staff may; a customer who does not own the order gets 404
    _, erika = await api.customer()
    pay = ("mutation($o: String!) { authorizePayment(orderId: $o, payment: {gateway: "
           "\"sandbox\", token: \"tok_success\"}) { id } }")
    assert only_error(await gql(api, erika, pay, {"o": order["id"]}))["extensions"][
        "status"] == 404
    body = await gql(api, api.admin, "{ reactions }")
    assert body["data"]["reactions"]["items"] == [], body
    body = await gql(api, api.admin, "{ reaction(id: \"rf_x\") }")
    assert only_error(body)["extensions"]["status"] == 404
    body = await gql(api, api.admin, "mutation { retryReaction(reactionId: \"rf_x\") }")
    assert only_error(body)["extensions"]["status"] == 404
    assert only_error(await gql(api, catalogue, "{ reactions }"))["extensions"][
        "status"] == 403


async def test_customer_account_flow(api: Api) -> None:
    shop = await api.storefront("web")
    session = "{ accessToken refreshToken customerId }"
    body = await gql(api, shop, "mutation { register(email: \"neu@example.com\", password: "
                                "\"correct horse battery\", name: \"Neu\") { customer { id "
                                f"email }} session {session} }} }}")
    registered = body["data"]["register"]
    assert registered["customer"]["email"] == "neu@example.com", body
    again = await gql(api, shop, "mutation { register(email: \"neu@example.com\", password: "
                                 "\"another one 123\") { customer { id } } }")
    assert only_error(again)["extensions"]["status"] == 409
    wrong = await gql(api, shop, "mutation { signIn(email: \"neu@example.com\", password: "
                                 f"\"wrong password\") {session} }}")
    assert only_error(wrong)["extensions"]["type"] == PROBLEMS + "invalid-credentials"
    body = await gql(api, shop, "mutation { signIn(email: \"neu@example.com\", password: "
                                f"\"correct horse battery\") {session} }}")
    tokens = body["data"]["signIn"]
    me = {"Authorization": f"Bearer {tokens['accessToken']}"}
    # the rules of the REST account routes: who may call what
    assert only_error(await gql(api, me, "mutation { signIn(email: \"neu@example.com\", "
                                         "password: \"correct horse battery\") "
                                         "{ accessToken } }"))["extensions"]["status"] == 403
    assert only_error(await gql(api, shop, "mutation { signOut }"))["extensions"][
        "status"] == 403
    body = await gql(api, me, "mutation { claimOrders }")
    assert only_error(body)["extensions"]["type"] == PROBLEMS + "email-not-verified"
    body = await gql(api, me, "mutation { requestEmailVerification }")
    assert "verification" in body["data"]["requestEmailVerification"], body
    body = await gql(api, shop, "mutation($r: String!) { refreshSession(refreshToken: $r) "
                                "{ accessToken } }", {"r": tokens["refreshToken"]})
    me = {"Authorization": f"Bearer {body['data']['refreshSession']['accessToken']}"}
    body = await gql(api, shop, "mutation($r: String!) { refreshSession(refreshToken: $r) "
                                "{ accessToken } }", {"r": tokens["refreshToken"]})
    # spent: and a reused refresh token ends its session (as in REST)
    assert only_error(body)["extensions"]["status"] == 401
    body = await gql(api, shop, "mutation { requestPasswordReset(email: \"nobody@x.org\") }")
    assert "on its way" in body["data"]["requestPasswordReset"], body
    body = await gql(api, shop, "mutation { resetPassword(token: \"bogus\", password: "
                                "\"a new password 1\") }")
    assert only_error(body)["extensions"]["status"] == 401
    body = await gql(api, shop, "mutation { confirmEmail(token: \"bogus\") }")
    assert only_error(body)["extensions"]["status"] == 401
    body = await gql(api, shop, "mutation { signIn(email: \"neu@example.com\", password: "
                                "\"correct horse battery\") { accessToken } }")
    me = {"Authorization": f"Bearer {body['data']['signIn']['accessToken']}"}
    body = await gql(api, me, "mutation { signOutEverywhere }")
    assert body["data"]["signOutEverywhere"] >= 1, body
    gone = await api.client.post("/graphql", json={"query": "{ __typename }"}, headers=me)
    assert gone.status_code == 401


async def test_place_order_in_one_request(api: Api) -> None:
    shop = await api.storefront("web")
    place = ("mutation($a: AddressInput!, $c: String) { placeOrder(channel: \"web\", "
             "customerId: $c, lines: [{sku: \"MUG\", quantity: 1}], email: "
             "\"erika@example.com\", shippingAddress: $a, shippingMethod: "
             "\"flat_rate:standard\", payment: {gateway: \"sandbox\", token: "
             "\"tok_success\"}) { id customerId riskScore totals { total { amount } } } }")
    body = await gql(api, shop, place, {"a": ADDRESS})
    order = body["data"]["placeOrder"]
    assert order["totals"]["total"]["amount"] > 0 and order["riskScore"] is None, body
    # a storefront key places guest orders only, as in REST
    erika, token = await api.customer()
    body = await gql(api, shop, place, {"a": ADDRESS, "c": erika["id"]})
    assert only_error(body)["extensions"]["status"] == 403
    body = await gql(api, token, place, {"a": ADDRESS})
    assert body["data"]["placeOrder"]["customerId"] == erika["id"], body
    body = await gql(api, shop, place, {"a": dict(ADDRESS, country="XX")})
    assert only_error(body)["extensions"]["status"] == 422
    assert await api.order_count() == 2


def test_committed_sdl_matches_the_code() -> None:
    printed = subprocess.run([sys.executable, "-m", "ordnung.api.cli", "graphql-schema"],
                             capture_output=True, text=True, check=True).stdout
    committed = (ROOT / "schema.graphql").read_text()
    assert printed == committed, "run `ordnung graphql-schema > schema.graphql`"


def test_committed_reference_matches_the_code() -> None:
    """docs/graphql.md is generated from the schema, like the SDL, and kept in step."""
    printed = subprocess.run([sys.executable, "-m", "ordnung.api.cli", "graphql-schema",
                              "--markdown"], capture_output=True, text=True, check=True).stdout
    committed = (ROOT / "docs" / "graphql.md").read_text()
    assert printed == committed, "run `ordnung graphql-schema --markdown > docs/graphql.md`"
    for root in ("## Queries", "## Mutations", "## Subscriptions", "## Types",
                 "### `placeOrder`", "### `orderEvents`", "### `Order`"):
        assert root in committed, root


async def test_introspection_setting_through_the_app(database_url: str,
                                                     monkeypatch: Any) -> None:
    monkeypatch.setenv("ORDNUNG_GRAPHQL_INTROSPECTION", "false")
    async with api_client(database_url) as api:
        body = await gql(api, api.admin, "{ __schema { queryType { name } } }")
        assert body.get("data") is None and body["errors"], body
        ok = await gql(api, api.admin, "{ products(first: 1) { edges { cursor } } }")
        assert "errors" not in ok


async def test_introspection_can_be_turned_off() -> None:
    from ordnung.api.graphql.schema import build_schema

    closed = await build_schema(introspection=False).execute("{ __schema { types { name } } }")
    assert closed.errors
    opened = await build_schema(introspection=True).execute("{ __schema { types { name } } }")
    assert not opened.errors


def _unused(_: httpx.Response) -> None:  # keeps httpx imported for type checkers
    return None


async def test_one_idempotency_key_covers_one_placement_of_a_document(api: Api) -> None:
    """Two placements in one document under one key: the key names the first order, so
    the second is refused as input (422 naming the header, and the order the key made) and
    places nothing; a repeat of the document replays the answer as it was."""
    shop = await api.storefront("web")
    one = ("placeOrder(channel: \"web\", lines: [{sku: \"MUG\", quantity: 1}], email: "
           "\"erika@example.com\", shippingAddress: $a, shippingMethod: "
           "\"flat_rate:standard\", payment: {gateway: \"sandbox\", token: \"tok_success\"}) "
           "{ id }")
    document = {"query": f"mutation($a: AddressInput!) {{ first: {one} second: {one} }}",
                "variables": {"a": ADDRESS}}
    headers = {**shop, "Idempotency-Key": "two-in-one"}
    response = await api.client.post("/graphql", json=document, headers=headers)
    body = expect(response, 200)
    error = only_error(body)  # placeOrder is non-null: the error nulls the whole data
    assert error["path"] == ["second"], body
    assert error["extensions"]["status"] == 422, body
    assert error["extensions"]["type"] == PROBLEMS + "validation", body
    assert error["extensions"]["field"] == "Idempotency-Key", body
    assert await api.order_count() == 1
    placed = error["message"].rsplit(" ", 1)[-1]  # the message names the first's order
    assert (await api.order(placed, api.admin))["id"] == placed
    again = await api.client.post("/graphql", json=document, headers=headers)
    assert again.headers.get("idempotent-replayed") == "true"
    assert again.json() == body and await api.order_count() == 1
