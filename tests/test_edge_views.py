"""Customers see a customer's view (HTTP API, SQLite and PostgreSQL).

Found: a customer's own order and timeline showed staff notes, the hold reason, the risk
score with its reasons and staff key ids. Now every caller but staff (admin keys) reads
the projection of ``core/domain/views.py`` on every route that returns an order or its
events: the order routes, the live stream, placing through a cart, paying, returns and
the customer's own data export. Staff still read everything.
"""

from __future__ import annotations

import json
from typing import Any

from ordnung.plugins.fraud.rules import RiskRules
from tests.api_support import Api, api_client, expect, order_body
from tests.support import builtin_plugins

#: every order of this shop scores 80 (above 0.00 EUR) and is held for review at 70
RISKY: dict[str, Any] = {
    "hold_at": 70, "velocity": [], "country_mismatch_score": 0,
    "amounts": [{"currency": "EUR", "above": 0, "score": 80}]}
#: staff-only fields of an order, at the top level
STAFF_ORDER_FIELDS = {"hold_reason", "risk_score", "risk_reasons", "priority", "version",
                      "cancel_reason"}
NOTE = "called the bank: card reported stolen in 2024"


def assert_customer_view(order: dict[str, Any]) -> None:
    """No staff or fraud data anywhere in this order, not even nested."""
    assert not STAFF_ORDER_FIELDS & set(order), sorted(STAFF_ORDER_FIELDS & set(order))
    text = json.dumps(order)
    for secret in ("risk", "amount rule", "allocations", "location_id", "in_flight", NOTE):
        assert secret not in text, (secret, text)
    for line in order["lines"]:
        assert "allocations" not in line


def assert_customer_timeline(events: list[dict[str, Any]]) -> None:
    kinds = {e["kind"] for e in events}
    assert "order.placed" in kinds, kinds
    assert not kinds & {"order.note", "order.risk_assessed"}, kinds
    text = json.dumps(events)
    assert NOTE not in text and "risk" not in text and "admin:" not in text, text
    for event in events:
        assert ":" not in event["actor"], event  # never a key id
        assert "reason" not in event["data"] and "note" not in event["data"], event


def sse_events(body: str) -> list[dict[str, Any]]:
    """The ``data`` of every event of a finished server-sent event stream."""
    return [json.loads(line[len("data:"):].strip()) for line in body.splitlines()
            if line.startswith("data:")]


async def held_and_annotated(api: Api, headers: dict[str, str],
                             body: dict[str, Any]) -> dict[str, Any]:
    """Place an order (held by the fraud rules), then staff note it; as placed."""
    placed: dict[str, Any] = expect(await api.client.post("/orders", json=body,
                                                          headers=headers), 201)
    expect(await api.client.post(f"/orders/{placed['id']}/notes", json={"note": NOTE},
                                 headers=api.admin), 200)
    return placed


async def test_a_customer_reads_none_of_the_staff_and_fraud_data_of_their_order(
        database_url: str) -> None:
    plugins = [*builtin_plugins(), (RiskRules, "risk_rules", RISKY)]
    async with api_client(database_url, plugins=plugins) as api:
        customer, as_customer = await api.customer("kim@example.com")
        placed = await held_and_annotated(api, as_customer, order_body(
            ("MUG", 1), email="kim@example.com"))
        assert_customer_view(placed)
        assert placed["status"] == "on_hold"
        oid = placed["id"]

        # staff read everything
        staff = await api.order(oid)
        assert staff["risk_score"] == 80 and staff["risk_reasons"], staff
        assert staff["hold_reason"], staff
        staff_events = expect(await api.client.get(f"/orders/{oid}/timeline",
                                                   headers=api.admin), 200)["items"]
        staff_kinds = {e["kind"] for e in staff_events}
        assert {"order.note", "order.risk_assessed"} <= staff_kinds
        assert any(e["actor"].startswith("admin:") for e in staff_events)

        # the customer reads the customer's view on every route
        assert_customer_view(await api.order(oid, as_customer))
        assert_customer_view(expect(await api.client.get(
            f"/orders/by-number/{placed['number']}", headers=as_customer), 200))
        mine = expect(await api.client.get("/orders", headers=as_customer), 200)["items"]
        assert [o["id"] for o in mine] == [oid]
        assert_customer_view(mine[0])
        timeline = expect(await api.client.get(f"/orders/{oid}/timeline",
                                               headers=as_customer), 200)["items"]
        assert_customer_timeline(timeline)
        assert any(e["actor"] == "you" for e in timeline), timeline
        exported = expect(await api.client.get(f"/customers/{customer['id']}/export",
                                               headers=as_customer), 200)
        assert len(exported["orders"]) == 1
        assert_customer_view(exported["orders"][0])
        # staff's export still has it all
        staff_export = expect(await api.client.get(f"/customers/{customer['id']}/export",
                                                   headers=api.admin), 200)
        assert staff_export["orders"][0]["risk_score"] == 80

        # a return the customer asks for answers in the customer's view too (after staff
        # release and ship, so there is something to return)
        expect(await api.client.post(f"/orders/{oid}/release", json={"note": NOTE},
                                     headers=api.admin), 200)
        cancelled = expect(await api.client.post(f"/orders/{oid}/cancel", json={},
                                                 headers=as_customer), 200)
        assert_customer_view(cancelled)

        # the live stream (finished: the order is cancelled, a terminal state)
        async with api.client.stream("GET", f"/orders/{oid}/events",
                                     headers=as_customer) as response:
            assert response.status_code == 200
            body = (await response.aread()).decode()
        streamed = sse_events(body)
        assert_customer_timeline(streamed)
        assert "order.cancelled" in {e["kind"] for e in streamed}
        async with api.client.stream("GET", f"/orders/{oid}/events",
                                     headers=api.admin) as response:
            staff_streamed = sse_events((await response.aread()).decode())
        assert "order.note" in {e["kind"] for e in staff_streamed}

        # a staff note after the end is hidden: a customer who has seen everything shown
        # to them is told there is nothing more (204), or their browser would reconnect
        # for ever; staff get the note
        expect(await api.client.post(f"/orders/{oid}/notes", json={"note": NOTE},
                                     headers=api.admin), 200)
        last_shown = str(streamed[-1]["seq"])
        done = await api.client.get(f"/orders/{oid}/events",
                                    headers={**as_customer, "Last-Event-ID": last_shown})
        assert done.status_code == 204, done.text
        async with api.client.stream("GET", f"/orders/{oid}/events", headers={
                **api.admin, "Last-Event-ID": last_shown}) as response:
            assert response.status_code == 200
            late = sse_events((await response.aread()).decode())
        assert [e["kind"] for e in late] == ["order.note"]


async def test_a_storefront_placing_an_order_reads_the_customers_view(
        database_url: str) -> None:
    plugins = [*builtin_plugins(), (RiskRules, "risk_rules", RISKY)]
    async with api_client(database_url, plugins=plugins) as api:
        shop = await api.storefront("web")
        # directly
        direct = expect(await api.client.post("/orders", json=order_body(("MUG", 1)),
                                              headers=shop), 201)
        assert_customer_view(direct)
        assert (await api.order(direct["id"]))["risk_score"] == 80
        # through a guest cart
        cid = (await api.new_cart(shop))["id"]
        held = api.holding(shop, cid)
        expect(await api.client.post(f"/carts/{cid}/lines", json={"sku": "MUG"},
                                     headers=held), 200)
        expect(await api.client.put(f"/carts/{cid}/addresses", json={
            "shipping": order_body()["shipping_address"], "email": "guest@example.com"},
            headers=held), 200)
        expect(await api.client.put(f"/carts/{cid}/shipping-method",
                                    json={"method": "flat_rate:standard"}, headers=held), 200)
        via_cart = expect(await api.client.post(f"/carts/{cid}/order", json={
            "payment": {"gateway": "sandbox", "token": "tok_success"}}, headers=held), 201)
        assert_customer_view(via_cart)
        # a storefront key reads no order at all afterwards
        response = await api.client.get(f"/orders/{via_cart['id']}", headers=shop)
        assert response.status_code == 403


async def test_paying_again_answers_in_the_customers_view(database_url: str) -> None:
    plugins = [*builtin_plugins(), (RiskRules, "risk_rules", {**RISKY, "hold_at": 100})]
    async with api_client(database_url, plugins=plugins) as api:
        _, as_customer = await api.customer("pay@example.com")
        placed = expect(await api.client.post("/orders", json=order_body(
            ("MUG", 1), email="pay@example.com", token=None), headers=as_customer), 201)
        paid = await api.client.post(f"/orders/{placed['id']}/payments", json={
            "gateway": "sandbox", "token": "tok_success"}, headers=as_customer)
        assert paid.status_code == 201, paid.text
        assert_customer_view(paid.json())
        assert (await api.order(placed["id"]))["risk_score"] == 80
