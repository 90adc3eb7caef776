"""Payments: authorize, capture, refund, void, manual methods and gateway webhooks."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from ordnung.core import Engine, hookimpl
from ordnung.core.errors import (
    Forbidden,
    IllegalTransition,
    InvalidInput,
    InvariantViolation,
    PaymentDeclined,
)
from ordnung.core.lifecycle import StateExtension, StateSpec, Transition
from ordnung.plugins.payments.sandbox import sign
from tests.support import builtin_plugins, order_request, seed_shop


async def test_partial_captures_and_refunds_respect_the_invariants(engine: Engine) -> None:
    order = await engine.orders.place(order_request(("SHIRT-M", 2)))
    total = order.totals.total
    order = await engine.payments.capture(order.id, amount=1000)
    assert order.payments[0].status == "partially_captured"
    with pytest.raises(InvariantViolation):
        await engine.payments.capture(order.id, amount=total)  # more than is left
    order = await engine.payments.capture(order.id)
    assert (order.totals.paid, order.payments[0].status) == (total, "captured")
    with pytest.raises(InvalidInput, match="no payment that can capture"):
        await engine.payments.capture(order.id, amount=1)
    order = await engine.payments.refund(order.id, amount=500)
    assert order.payments[0].status == "partially_refunded"
    with pytest.raises(InvariantViolation):
        await engine.payments.refund(order.id, amount=total)
    order = await engine.payments.refund(order.id)
    assert order.totals.refunded == total
    assert order.payments[0].status == "refunded"


async def test_async_confirmation_arrives_by_signed_webhook(engine: Engine) -> None:
    order = await engine.orders.place(order_request(("SHIRT-M", 1), token="tok_async"))
    assert order.status == "placed"
    payment = order.payments[0]
    assert payment.status == "awaiting_confirmation" and payment.reference
    body = json.dumps({"reference": payment.reference, "outcome": "authorized"}).encode()
    # tampered and stale calls are refused and change nothing
    with pytest.raises(Forbidden):
        await engine.payments.webhook("sandbox", {"Sandbox-Signature": sign("wrong", body)},
                                      body)
    stale = sign("sandbox-secret", body, int(time.time()) - 3600)
    with pytest.raises(Forbidden):
        await engine.payments.webhook("sandbox", {"Sandbox-Signature": stale}, body)
    assert (await engine.orders.get(order.id)).status == "placed"
    headers = {"Sandbox-Signature": sign("sandbox-secret", body)}
    assert await engine.payments.webhook("sandbox", headers, body) == [order.id]
    order = await engine.orders.get(order.id)
    assert (order.status, order.payments[0].status) == ("processing", "authorized")
    # a repeated webhook changes nothing
    await engine.payments.webhook("sandbox", headers, body)
    timeline = await engine.orders.timeline(order.id)
    assert [e.kind for e in timeline].count("payment.authorized") == 1


async def test_bank_transfer_waits_for_staff_to_mark_it_paid(engine: Engine) -> None:
    order = await engine.orders.place(order_request(("MUG", 1), token=None, gateway="manual",
                                                    method="bank_transfer"))
    assert order.status == "placed"
    assert order.payments[0].status == "awaiting_payment"
    with pytest.raises(IllegalTransition) as err:
        await engine.fulfilment.create_shipment(order.id)
    assert err.value.current == "placed"
    order = await engine.payments.capture(order.id)  # staff: "money arrived"
    assert order.status == "processing"
    assert order.payments[0].status == "captured"
    assert order.totals.paid == order.totals.total


async def test_cash_on_delivery_grants_terms_to_ship_unpaid(engine: Engine) -> None:
    order = await engine.orders.place(order_request(("MUG", 1), token=None, gateway="manual",
                                                    method="cash_on_delivery"))
    assert order.status == "processing"
    assert order.payments[0].grants_terms and order.totals.paid == 0
    order, shipments = await engine.fulfilment.create_shipment(order.id)
    assert shipments


async def test_cancel_voids_the_authorization(engine: Engine) -> None:
    order = await engine.orders.place(order_request(("SHIRT-M", 1)))
    order = await engine.orders.cancel(order.id, reason="customer changed mind")
    assert order.status == "cancelled"
    assert order.payments[0].status == "voided"
    assert order.totals.authorized == 0


async def test_decline_on_a_separate_authorization_keeps_the_order(engine: Engine) -> None:
    order = await engine.orders.place(order_request(("SHIRT-M", 1), token=None,
                                                    gateway="manual", method="bank_transfer"))
    order = await engine.payments.void(order.id)
    with pytest.raises(PaymentDeclined):
        await engine.payments.authorize(order.id, gateway="sandbox", token="tok_fraud")
    order = await engine.orders.get(order.id)
    assert order.status == "placed"
    assert [p.status for p in order.payments] == ["voided", "failed"]
    order = await engine.payments.authorize(order.id, gateway="sandbox", token="tok_success")
    assert order.status == "processing"


class LaxShop:
    """A plugin that (wrongly) lets placed orders ship straight away."""

    @hookimpl
    def ordnung_lifecycle_extensions(self) -> list[StateExtension]:
        placed = StateSpec("placed", frozenset({"authorize", "capture", "hold", "cancel",
                                                "fulfil"}))
        return [StateExtension("order", states=(placed,), transitions=(
            Transition("placed", "ship_partial", "partially_fulfilled"),
            Transition("placed", "ship_all", "fulfilled")))]


async def test_core_refuses_to_ship_unpaid_whatever_a_plugin_allows(make_engine: Any) -> None:
    engine = await make_engine(plugins=[*builtin_plugins(), (LaxShop(), "lax")])
    await seed_shop(engine)
    order = await engine.orders.place(order_request(("MUG", 1), token="tok_async"))
    assert order.status == "placed"
    with pytest.raises(InvariantViolation, match="not paid"):
        await engine.fulfilment.create_shipment(order.id)
