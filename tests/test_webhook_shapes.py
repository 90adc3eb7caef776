"""Webhook payload shapes: an endpoint chooses the staff view or the customer-safe view
of orders and their parts (SQLite and PostgreSQL, real receivers)."""

from __future__ import annotations

import json
from typing import Any

from ordnung.plugins.fraud.rules import RiskRules
from tests.api_support import ADMIN_KEY, api_client, bearer, expect, expect_problem, order_body
from tests.support import builtin_plugins
from tests.test_edge_views import NOTE, RISKY, STAFF_ORDER_FIELDS, assert_customer_view
from tests.test_webhooks import endpoint, receiving, rounds, verified

ADMIN = bearer(ADMIN_KEY)


def messages(received: list[tuple[dict[str, str], str]], secret: str) -> list[dict[str, Any]]:
    return [verified(secret, headers, body) for headers, body in received]


async def test_a_customer_shape_endpoint_receives_no_staff_or_fraud_data(
        database_url: str) -> None:
    plugins = [*builtin_plugins(), (RiskRules, "risk_rules", RISKY)]
    async with api_client(database_url, plugins=plugins, webhooks_allow_private=True,
                          webhooks_timeout_s=1.0) as api:
        with receiving() as staff_rx, receiving() as customer_rx:
            types = ["order.*", "payment.*"]
            staff = await endpoint(api, staff_rx.url, types)
            customer = await endpoint(api, customer_rx.url, types, shape="customer")
            assert (staff["shape"], customer["shape"]) == ("staff", "customer")
            placed = expect(await api.client.post("/orders", headers=await api.storefront(),
                                                  json=order_body(("MUG", 1))), 201)
            expect(await api.client.post(f"/orders/{placed['id']}/notes", headers=ADMIN,
                                         json={"note": NOTE}), 200)
            await rounds(api, lambda: len(staff_rx.received) >= 2
                         and len(customer_rx.received) == len(staff_rx.received))
        staff_msgs = messages(staff_rx.received, staff["secret"])
        customer_msgs = messages(customer_rx.received, customer["secret"])
    assert sorted(m["type"] for m in staff_msgs) == sorted(m["type"] for m in customer_msgs)
    staff_order = next(m["data"] for m in staff_msgs if m["type"] == "order.placed")
    assert staff_order["risk_score"] == 80 and staff_order["risk_reasons"], staff_order
    assert staff_order["hold_reason"]
    for message in customer_msgs:
        data = message["data"]
        if message["type"].startswith("order."):
            assert_customer_view(data)
        else:  # a payment, as the customer's order shows it
            assert not STAFF_ORDER_FIELDS & set(data), data
        text = json.dumps(data)
        assert "risk" not in text and NOTE not in text, text


async def test_the_shape_is_checked_and_can_be_changed(database_url: str) -> None:
    async with api_client(database_url, webhooks_allow_private=True) as api:
        problem = expect_problem(await api.client.post("/admin/webhooks", headers=ADMIN, json={
            "url": "http://127.0.0.1:9/hook", "event_types": ["*"], "shape": "partner"}),
            422, "validation")
        assert "shape" in json.dumps(problem), problem
        listed = expect(await api.client.get("/admin/webhooks", headers=ADMIN), 200)
        assert listed["items"] == []  # nothing stored
        made = await endpoint(api, "http://127.0.0.1:9/hook", ["*"])
        assert made["shape"] == "staff"  # the default
        changed = expect(await api.client.patch(f"/admin/webhooks/{made['id']}", headers=ADMIN,
                                                json={"shape": "customer"}), 200)
        assert changed["shape"] == "customer"
        expect_problem(await api.client.patch(f"/admin/webhooks/{made['id']}", headers=ADMIN,
                                              json={"shape": "staff "}), 422, "validation")
        read = expect(await api.client.get(f"/admin/webhooks/{made['id']}", headers=ADMIN), 200)
        assert read["shape"] == "customer"
