"""Errors over HTTP: RFC 9457 problems with a stable type and the facts a client needs."""

from __future__ import annotations

import time
from typing import Any

from ordnung.core import hookimpl
from tests.api_support import (
    PROBLEM_MEDIA_TYPE,
    Api,
    api_client,
    api_fixture,  # noqa: F401  (the ``api`` fixture)
    expect,
    expect_problem,
    order_body,
)
from tests.support import builtin_plugins

Snapshot = tuple[dict[tuple[str, str], tuple[int, int]], int, int, int]


async def snapshot(api: Api) -> Snapshot:
    """Stock levels, orders, timeline events and customers: what bad input must not touch."""
    counts = []
    for table in ("orders", "events", "customers"):
        rows = await api.engine.db.fetch(f"SELECT COUNT(*) AS n FROM {table}")
        counts.append(int(rows[0]["n"]))
    return await api.levels(), counts[0], counts[1], counts[2]


def fields_of(problem: dict[str, Any]) -> list[str]:
    """The fields a problem names (a decoding problem names its first one twice: in
    ``errors`` and as ``field``)."""
    return list(dict.fromkeys([e["field"] for e in problem.get("errors", [])] + (
        [problem["field"]] if problem.get("field") else [])))


# --------------------------------------------------------------------------- validation


async def test_validation_problems_name_the_field(api: Api) -> None:
    shop = await api.storefront("web")
    before = await snapshot(api)

    def body(**changes: Any) -> dict[str, Any]:
        data = order_body(("SHIRT-M", 1))
        for path, value in changes.items():
            target: Any = data
            *parents, leaf = path.split("__")
            for part in parents:
                target = target[int(part)] if part.isdigit() else target[part]
            if value is KeyError:
                del target[leaf]
            else:
                target[leaf] = value
        return data

    cases: list[tuple[dict[str, Any], str, str]] = [
        (body(coupon="FREE"), "coupon", "unknown field"),
        (body(shipping_address__tax_id="x"), "shipping_address.tax_id", "unknown field"),
        (body(payment__amount=1), "payment.amount", "unknown field"),
        (body(lines__0__quantity="two"), "lines[0].quantity", "Expected `int`"),
        (body(email=42), "email", "Expected `str`"),
        (body(lines="SHIRT-M"), "lines", "Expected `array`"),
        (body(channel=KeyError), "channel", "required field"),
        (body(lines__0__sku=KeyError), "lines[0].sku", "required field"),
        (body(shipping_address__city=KeyError), "shipping_address.city", "required field"),
        (body(lines__0__quantity=0), "quantity", "positive"),
        (body(lines=[]), "lines", "at least one line"),
        (body(shipping_method="pigeon:express"), "shipping_method", "not available"),
        (body(payment__gateway="bitcoin"), "payment.gateway", "unknown payment gateway"),
    ]
    for data, field, message in cases:
        problem = expect_problem(await api.post_order(shop, data), 422, "validation")
        assert field in fields_of(problem), (field, problem)
        assert message in problem["detail"], (message, problem)
        assert problem["title"] and problem["instance"] == "/orders"
    assert await snapshot(api) == before


async def test_malformed_bodies_are_422_problems(api: Api) -> None:
    shop = await api.storefront("web")
    before = await snapshot(api)
    for raw in (b"", b"{not json", b"[]", b"null", b"42", b'"order"', b"\xff\xfe\x00",
                b'{"channel": "web", "lines": [{"sku": "SHIRT-M", "quantity": 1}]' * 2):
        response = await api.client.post("/orders", content=raw, headers={
            **shop, "Content-Type": "application/json"})
        problem = expect_problem(response, 422, "validation")
        assert problem["detail"] and problem["detail"] != "'data'", problem
    assert await snapshot(api) == before


async def test_a_client_can_never_set_a_price_total_tax_or_status(api: Api) -> None:
    shop = await api.storefront("web")
    before = await snapshot(api)
    for field, value in (("price", 1), ("unit_price", 1), ("total", 1), ("totals", {"total": 1}),
                         ("subtotal", 1), ("tax", 0), ("tax_total", 0), ("discount", 2500),
                         ("shipping_price", 0), ("status", "fulfilled"), ("paid", 99999),
                         ("number", "ORD-FREE-0001"), ("id", "ord_mine")):
        problem = expect_problem(await api.post_order(shop, {**order_body(), field: value}),
                                 422, "validation")
        assert fields_of(problem) == [field], problem
        assert "unknown field" in problem["detail"]
    cart = await api.new_cart(shop)
    for field in ("price", "unit_price", "total"):
        problem = expect_problem(await api.client.post(
            f"/carts/{cart['id']}/lines", json={"sku": "MUG", "quantity": 1, field: 1},
            headers=api.holding(shop, cart["id"])), 422, "validation")
        assert fields_of(problem) == [field]
    problem = expect_problem(await api.client.post(
        f"/carts/{cart['id']}/order", json={"total": 0, "payment": {"gateway": "sandbox"}},
        headers=api.holding(shop, cart["id"])), 422, "validation")
    assert fields_of(problem) == ["total"]
    assert await snapshot(api) == before


async def test_a_line_cannot_carry_a_price(api: Api) -> None:
    shop = await api.storefront("web")
    data = order_body(("SHIRT-M", 1))
    data["lines"][0]["unit_price"] = 1
    problem = expect_problem(await api.post_order(shop, data), 422, "validation")
    assert fields_of(problem) == ["lines[0].unit_price"]


# --------------------------------------------------------------------------- the engine's errors


async def test_illegal_transitions_say_the_current_state_and_what_is_allowed(api: Api) -> None:
    shop = await api.storefront("web")
    pending = await api.place_order(shop, order_body(("MUG", 1), token="tok_async"))
    assert pending["status"] == "placed"
    problem = expect_problem(await api.client.post(
        f"/orders/{pending['id']}/shipments", json={}, headers=api.admin), 409,
        "illegal-transition")
    assert problem["current_state"] == "placed"
    assert problem["attempted"] == "fulfil"
    assert "cancel" in problem["allowed"] and "fulfil" not in problem["allowed"]
    assert problem["machine"] == "order" and problem["entity_id"] == pending["id"]

    cancelled = expect(await api.client.post(f"/orders/{pending['id']}/cancel", json={},
                                             headers=api.admin), 200)
    assert cancelled["status"] == "cancelled"
    before = await snapshot(api)
    problem = expect_problem(await api.client.post(
        f"/orders/{pending['id']}/cancel", json={}, headers=api.admin), 409,
        "illegal-transition")
    assert problem["current_state"] == "cancelled" and problem["allowed"] == []
    assert problem["detail"]
    assert await snapshot(api) == before


async def test_out_of_stock_lists_each_shortage(api: Api) -> None:
    shop = await api.storefront("web")
    before = await snapshot(api)
    problem = expect_problem(await api.post_order(shop, order_body(("POSTER", 21),
                                                                   ("MUG", 101),
                                                                   ("SHIRT-M", 1))),
                             409, "out-of-stock")
    shortages = {s["sku"]: (s["requested"], s["available"]) for s in problem["shortages"]}
    assert shortages == {"POSTER": (21, 20), "MUG": (101, 100)}
    assert await snapshot(api) == before


async def test_a_declined_payment_gives_the_gateways_reason(api: Api) -> None:
    shop = await api.storefront("web")
    levels = await api.levels()
    for token, reason in (("tok_decline", "insufficient funds"),
                          ("tok_fraud", "suspected fraud")):
        problem = expect_problem(await api.post_order(shop, order_body(("MUG", 2), token=token)),
                                 402, "payment-declined")
        assert problem["gateway"] == "sandbox" and problem["reason"] == reason
        assert reason in problem["detail"]
        assert problem["order_status"] == "cancelled"
        # the placement holds nothing: its order is cancelled and its stock released
        order = await api.order(problem["order_id"])
        assert order["status"] == "cancelled"
    assert await api.levels() == levels


class FinalSale:
    """Guards: point-of-sale orders cannot be cancelled."""

    @hookimpl
    def ordnung_guard_transition(self, ctx: Any) -> str | None:
        if ctx.machine == "order" and ctx.event == "cancel" and ctx.order.channel == "pos":
            return "POS orders are final"
        return None


async def test_a_guard_veto_names_the_plugin_and_its_reason(database_url: str) -> None:
    async with api_client(database_url,
                          plugins=[*builtin_plugins(), (FinalSale(), "final_sale")]) as api:
        pos = await api.storefront("pos")
        order = await api.place_order(pos, order_body(("MUG", 1), channel="pos"))
        before = await snapshot(api)
        problem = expect_problem(await api.client.post(
            f"/orders/{order['id']}/cancel", json={"reason": "oops"}, headers=api.admin), 409,
            "guard-veto")
        assert problem["plugin"] == "final_sale"
        assert problem["reason"] == "POS orders are final"
        assert problem["attempted"] == "cancel"
        assert await snapshot(api) == before
        assert (await api.order(order["id"]))["status"] == order["status"]


async def test_not_found_forbidden_conflict_and_the_other_types(api: Api) -> None:
    shop = await api.storefront("web")
    problem = expect_problem(await api.client.get("/orders/ord_nope", headers=api.admin), 404,
                             "not-found")
    assert (problem["resource"], problem["key"]) == ("order", "ord_nope")
    problem = expect_problem(await api.post_order(shop, order_body(("NO-SUCH-SKU", 1))), 404,
                             "not-found")
    assert problem["key"] == "NO-SUCH-SKU"
    expect_problem(await api.client.get("/no/such/thing", headers=api.admin), 404, "not-found")

    problem = expect_problem(await api.client.get("/orders", headers=shop), 403, "forbidden")
    assert "orders" in problem["detail"]

    expect(await api.client.post("/customers", json={"email": "kim@example.com"},
                                 headers=api.admin), 201)
    problem = expect_problem(await api.client.post("/customers", json={
        "email": "kim@example.com"}, headers=api.admin), 409, "conflict")
    assert problem["field"] == "email"

    cid = await api.placed_cart(shop)
    problem = expect_problem(await api.client.post(f"/carts/{cid}/lines", json={"sku": "MUG"},
                                                   headers=api.holding(shop, cid)), 409,
                             "conflict")
    assert problem["cart_id"] == cid

    order = await api.place_order(shop, order_body(("MUG", 1)))
    before = await snapshot(api)
    problem = expect_problem(await api.client.post(
        f"/orders/{order['id']}/payments/capture", json={"amount": 10_000_000},
        headers=api.admin), 409, "invariant-violation")
    assert "capture" in problem["detail"]
    assert await snapshot(api) == before

    nowhere = order_body(("MUG", 1), address={"name": "Kim", "line1": "1 Main St",
                                               "city": "Springfield", "postal_code": "12345",
                                               "country": "BR"})
    problem = expect_problem(await api.post_order(shop, nowhere), 422, "tax-unavailable")
    assert "tax" in problem["detail"]

    problem = expect_problem(await api.client.delete("/orders", headers=api.admin), 405,
                             "method-not-allowed")
    assert problem["status"] == 405


# --------------------------------------------------------------------------- robustness


GARBAGE: list[Any] = [
    None, [], "x", 0, -1, 2**63, 10**30, 1.5, True, {"x": 1}, [{"sku": "MUG"}],
    {"lines": "x"}, {"sku": None}, {"sku": "MUG", "quantity": 2**64},
    {"sku": "MUG", "location_id": "wh1", "delta": 2**70},
    {"sku": "MUG", "location_id": "wh1", "delta": -(2**63)},
    {"sku": "MUG", "location_id": "wh1", "counted": -5},
    {"amount": -100}, {"amount": 2**63}, {"amount": 0},
    {"scans": [None]}, {"scans": "MUG"}, {"lines": {"L1": -1}}, {"lines": {"L1": 2**63}},
    {"kind": "root"}, {"kind": "admin", "scopes": ["*"]},
    {"email": "a" * 100_000}, {"reason": 5}, {"event": "x" * 10_000},
    {"channel": "web", "lines": [{"sku": "MUG", "quantity": 2**63}]},
    {"channel": "web", "lines": [{"sku": "MUG", "quantity": 10**30}]},
    {"channel": "web", "lines": [{"sku": "\x00", "quantity": 1}]},
]


async def test_bad_input_never_answers_500_and_changes_nothing(api: Api) -> None:
    shop = await api.storefront("web")
    order = await api.place_order(shop, order_body(("MUG", 1)))
    oid = order["id"]
    shipment_order = await api.place_order(shop, order_body(("POSTER", 1)))
    expect(await api.client.post(f"/orders/{shipment_order['id']}/payments/capture", json={},
                                 headers=api.admin), 200)
    shipped = expect(await api.client.post(f"/orders/{shipment_order['id']}/shipments",
                                           json={}, headers=api.admin), 201)
    sid = shipped["shipments"][0]["id"]
    before = await snapshot(api)
    order_before = await api.order(oid)
    targets = [
        ("POST", "/orders"), ("POST", "/carts"), ("POST", "/customers"),
        ("POST", "/inventory/adjustments"), ("POST", "/inventory/counts"),
        ("POST", "/admin/keys"), ("POST", f"/orders/{oid}/payments/capture"),
        ("POST", f"/orders/{oid}/payments/refund"), ("POST", f"/orders/{oid}/payments"),
        ("POST", f"/orders/{oid}/returns"), ("POST", f"/orders/{oid}/hold"),
        ("POST", f"/orders/{oid}/transitions"), ("POST", f"/orders/{oid}/notes"),
        ("POST", f"/orders/{shipment_order['id']}/shipments/{sid}/pack"),
        ("POST", f"/orders/{shipment_order['id']}/shipments"),
        ("PUT", "/catalogue/products/mug"), ("PUT", "/inventory/locations/wh1"),
        ("PATCH", "/customers/cus_nope"),
    ]
    seen: set[int] = set()
    for method, path in targets:
        for payload in GARBAGE:
            response = await api.client.request(method, path, json=payload, headers=api.admin)
            seen.add(response.status_code)
            assert 400 <= response.status_code < 500, (method, path, payload, response.text)
            assert response.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE), \
                (method, path, payload, response.headers["content-type"])
            assert response.json()["type"].startswith("https://ordnung.dev/problems/")
    for params in ({"limit": "0"}, {"limit": "-1"}, {"limit": "x"}, {"limit": str(2**70)},
                   {"after": "\x00"}, {"status": "nonsense"}):
        response = await api.client.get("/orders", params=params, headers=api.admin)
        assert response.status_code < 500, (params, response.text)
    assert 500 not in seen
    assert await snapshot(api) == before
    assert await api.order(oid) == order_before
    # values a database refuses (PostgreSQL: too long for the column, NUL characters)
    # are the client's mistake too; SQLite may store them
    long_id = "L" * 300
    for method, path, payload in [
        ("PUT", f"/inventory/locations/{long_id}", {"id": long_id, "name": "x"}),
        ("PUT", f"/channels/{long_id}", {"id": long_id, "name": "x"}),
        ("POST", "/customers", {"email": "nul\x00@example.com"}),
        ("POST", f"/orders/{oid}/notes", {"note": "\x00"}),
    ]:
        response = await api.client.request(method, path, json=payload, headers=api.admin)
        assert response.status_code < 500, (method, path, response.text)


async def test_error_responses_are_problem_json(api: Api) -> None:
    shop = await api.storefront("web")
    responses = [
        await api.client.get("/orders"),
        await api.client.get("/orders", headers=shop),
        await api.client.get("/orders/ord_nope", headers=api.admin),
        await api.post_order(shop, {"channel": "web"}),
        await api.post_order(shop, order_body(("POSTER", 999))),
        await api.post_order(shop, order_body(token="tok_decline")),
    ]
    for response in responses:
        assert response.status_code >= 400
        assert response.headers["content-type"].split(";")[0] == PROBLEM_MEDIA_TYPE
        body = response.json()
        assert set(body) >= {"type", "title", "status", "detail"}
        assert body["status"] == response.status_code
        assert body["type"].startswith("https://ordnung.dev/problems/")


# --------------------------------------------------------------------------- webhooks


async def test_a_tracking_payload_the_carrier_refuses_is_a_422_problem(api: Api) -> None:
    """A carrier plugin that raises on a malformed push refuses it (the hook's contract):
    a validation problem naming the carrier, not a 500, and nothing changes."""
    before = await snapshot(api)
    for payload in ({"status": "delivered"}, {"tracking_number": "FR1"},
                    {"tracking_number": "FR1", "status": "delivered", "at": 5},
                    {"tracking_number": "FR1", "status": "delivered", "at": "yesterday"}):
        problem = expect_problem(await api.client.post(
            "/webhooks/tracking/flat_rate", json=payload, headers=api.admin), 422, "validation")
        assert "flat_rate refused the tracking payload" in problem["detail"], problem
        assert problem["field"] == "payload"
    assert await snapshot(api) == before


async def test_a_malformed_webhook_signature_is_refused_not_a_500(api: Api) -> None:
    now = int(time.time())
    for signature in (f"t={now},v1=\u00e9\u00e9".encode("latin-1"),  # not ASCII
                      b"t=" + b"9" * 400 + b",v1=00",  # no time is that large
                      b"t=soon,v1=00"):
        headers = {k.encode(): v.encode() for k, v in api.admin.items()}
        headers[b"sandbox-signature"] = signature
        problem = expect_problem(await api.client.post(
            "/webhooks/payments/sandbox", content=b"{}", headers=headers), 403, "forbidden")
        assert "signature" in problem["detail"]


# --------------------------------------------------------------------------- the API document


async def test_the_openapi_document_describes_every_problem_answer(api: Api) -> None:
    """Each error answer is documented on its operation as a problem (the API fuzzer holds
    the API to that); no operation claims the 400 the API never sends."""
    document = expect(await api.client.get("/schema/openapi.json"), 200)
    shop = await api.storefront("web")
    order = await api.place_order(shop, order_body(("MUG", 1)))
    cid = await api.placed_cart(shop)
    oid = order["id"]
    cases: list[tuple[str, str, str, Any, dict[str, str], int]] = [
        ("post", "/orders", "/orders", order_body(), {}, 401),
        ("post", "/orders", "/orders", order_body(("MUG", 1), token="tok_decline"), shop, 402),
        ("post", "/orders", "/orders", order_body(("NO-SUCH-SKU", 1)), shop, 404),
        ("post", "/orders", "/orders", order_body(("POSTER", 999)), shop, 409),
        ("post", "/orders", "/orders", {"channel": "web"}, shop, 422),
        ("get", "/orders", "/orders", None, shop, 403),
        ("get", "/orders", "/orders?limit=0", None, api.admin, 422),
        ("get", "/orders/{order_id}", "/orders/ord_nope", None, api.admin, 404),
        ("get", "/orders/{order_id}/events", "/orders/ord_nope/events", None, api.admin, 404),
        ("post", "/orders/{order_id}/hold", f"/orders/{oid}/hold", {}, api.admin, 422),
        ("post", "/orders/{order_id}/payments/capture", f"/orders/{oid}/payments/capture",
         {"amount": 10_000_000}, api.admin, 409),
        ("put", "/carts/{cart_id}/lines/{sku}", f"/carts/{cid}/lines/MUG", {"quantity": 2},
         api.holding(shop, cid), 409),
        ("delete", "/carts/{cart_id}/lines/{sku}", f"/carts/{cid}/lines/MUG", None,
         api.holding(shop, cid), 409),
        ("get", "/carts/{cart_id}", "/carts/cart_nope", None, shop, 404),
        ("post", "/webhooks/tracking/{carrier}", "/webhooks/tracking/flat_rate",
         {"status": "delivered"}, api.admin, 422),
        ("post", "/webhooks/tracking/{carrier}", "/webhooks/tracking/pigeon", {}, api.admin,
         404),
        ("post", "/webhooks/payments/{gateway}", "/webhooks/payments/sandbox", None, api.admin,
         403),
        ("get", "/labels/{carrier}/{tracking_number}", "/labels/flat_rate/NOPE", None,
         api.admin, 404),
        ("delete", "/admin/keys/{key_id}", "/admin/keys/key_nope", None, api.admin, 404),
        ("put", "/inventory/locations/{location_id}", "/inventory/locations/wh9",
         {"id": "wh1", "name": "x"}, api.admin, 422),
    ]
    for method, template, path, body, headers, status in cases:
        response = await api.client.request(method, path, json=body, headers=headers)
        assert response.status_code == status, (method, path, response.text)
        documented = document["paths"][template][method]["responses"]
        assert str(status) in documented, (method, template, status, sorted(documented))
        assert list(documented[str(status)]["content"]) == [PROBLEM_MEDIA_TYPE]
        schema = documented[str(status)]["content"][PROBLEM_MEDIA_TYPE]["schema"]
        assert schema == {"$ref": "#/components/schemas/Problem"}
    # a NUL character in a look-up: SQLite finds nothing, PostgreSQL refuses the value
    for method, template, path in (("get", "/orders/{order_id}", "/orders/a%00b"),
                                   ("get", "/carts/{cart_id}", "/carts/a%00b"),
                                   ("get", "/orders/by-number/{number}", "/orders/by-number/a%00b"),
                                   ("delete", "/admin/keys/{key_id}", "/admin/keys/a%00b")):
        response = await api.client.request(method, path, headers=api.admin)
        assert response.status_code in (404, 422), (method, path, response.text)
        assert str(response.status_code) in document["paths"][template][method]["responses"]
    problem = document["components"]["schemas"]["Problem"]
    assert set(problem["required"]) == {"type", "title", "status", "detail"}
    for template, item in document["paths"].items():
        for method, operation in item.items():
            assert "400" not in operation.get("responses", {}), (method, template)
    stream = document["paths"]["/orders/{order_id}/events"]["get"]["responses"]["200"]
    assert list(stream["content"]) == ["text/event-stream"]
