"""Fulfilment: the priority queue, packing with scan verification, shipping, tracking, holds."""

from __future__ import annotations

from typing import Any

import pytest

from ordnung.core import Engine, hookimpl
from ordnung.core.domain.pricing import RiskAssessment
from ordnung.core.errors import IllegalTransition, InvalidInput
from tests.support import builtin_plugins, order_request, paid_order, seed_shop, ship_all


async def test_packing_refuses_a_wrong_item_and_a_missing_one(engine: Engine) -> None:
    order = await paid_order(engine, ("SHIRT-M", 2), ("MUG", 1))
    order, (shipment,) = await engine.fulfilment.create_shipment(order.id)
    with pytest.raises(IllegalTransition):
        await engine.fulfilment.pack(order.id, shipment.id, ["SHIRT-M"])  # not picked yet
    order = await engine.fulfilment.pick(order.id, shipment.id)
    with pytest.raises(InvalidInput, match="POSTER"):
        await engine.fulfilment.pack(order.id, shipment.id, ["SHIRT-M", "POSTER", "MUG"])
    with pytest.raises(InvalidInput, match="missing 1 × SHIRT-M"):
        await engine.fulfilment.pack(order.id, shipment.id, ["SHIRT-M", "MUG"])
    with pytest.raises(InvalidInput, match="3 times"):
        await engine.fulfilment.pack(order.id, shipment.id,
                                     ["SHIRT-M", "4006381333931", "SHIRT-M", "MUG"])
    assert (await engine.orders.get(order.id)).shipment(shipment.id).status == "picking"
    # barcodes count as the SKU they belong to
    order = await engine.fulfilment.pack(order.id, shipment.id,
                                         ["4006381333931", "SHIRT-M", "4006381333948"])
    assert order.shipment(shipment.id).status == "packed"


async def test_shipping_consumes_stock_and_tracking_delivers(engine: Engine) -> None:
    order = await paid_order(engine, ("SHIRT-M", 2))
    order = await ship_all(engine, order)
    shipment = order.shipments[0]
    assert order.status == "fulfilled"
    assert shipment.tracking_number.startswith("FR")
    level = (await engine.inventory.levels(["SHIRT-M"]))[0]
    assert (level.on_hand, level.reserved) == (498, 0)
    touched = await engine.fulfilment.tracking("flat_rate", {
        "tracking_number": shipment.tracking_number, "status": "delivered",
        "description": "handed to resident"})
    assert touched == [shipment.id]
    order = await engine.orders.get(order.id)
    assert order.status == "delivered"
    assert order.shipment(shipment.id).tracking[0].description == "handed to resident"


async def test_partial_shipments_move_the_order_step_by_step(engine: Engine) -> None:
    order = await paid_order(engine, ("SHIRT-M", 2), ("MUG", 1))
    order, (first,) = await engine.fulfilment.create_shipment(order.id, lines={"L1": 2})
    order = await engine.fulfilment.pick(order.id, first.id)
    order = await engine.fulfilment.pack(order.id, first.id, ["SHIRT-M", "SHIRT-M"])
    order = await engine.fulfilment.ship(order.id, first.id)
    assert order.status == "partially_fulfilled"
    with pytest.raises(InvalidInput, match="left to ship"):
        await engine.fulfilment.create_shipment(order.id, lines={"L1": 1})
    order = await ship_all(engine, order)
    assert order.status == "fulfilled"


async def test_an_order_cannot_be_shipped_twice(engine: Engine) -> None:
    order = await ship_all(engine, await paid_order(engine, ("MUG", 1)))
    with pytest.raises(IllegalTransition, match="fulfilled"):
        await engine.fulfilment.create_shipment(order.id)
    with pytest.raises(IllegalTransition):
        await engine.fulfilment.ship(order.id, order.shipments[0].id, tracking_number="X")


class VipFirst:
    """Orders of VIP-tagged customers get 100 priority points."""

    @hookimpl
    def ordnung_fulfilment_priority(self, order: Any, customer: Any) -> int | None:
        return 100 if customer is not None and "vip" in customer.tags else None


class Suspicious:
    """Holds every order above 300.00."""

    @hookimpl
    def ordnung_assess_risk(self, ctx: Any) -> RiskAssessment:
        big = ctx.order.totals.total > 30_000
        return RiskAssessment(score=90 if big else 5, reasons=["amount"] if big else [],
                              hold=big)


async def test_queue_serves_vip_first_then_oldest(make_engine: Any) -> None:
    engine = await make_engine(plugins=[*builtin_plugins(), (VipFirst(), "vip")])
    await seed_shop(engine)
    vip = await engine.customers.create(email="vip@example.com", tags=["vip"])
    regular = await engine.orders.place(order_request(("MUG", 1)))
    important = await engine.orders.place(order_request(("MUG", 1), customer_id=vip.id,
                                                        email=""))
    also_regular = await engine.orders.place(order_request(("MUG", 2)))
    unpaid = await engine.orders.place(order_request(("MUG", 1), token="tok_async"))
    queue = [o.id for o in await engine.fulfilment.queue()]
    assert queue == [important.id, regular.id, also_regular.id]
    assert unpaid.id not in queue


async def test_suspicious_order_is_held_until_released(make_engine: Any) -> None:
    engine = await make_engine(plugins=[*builtin_plugins(), (Suspicious(), "risk")])
    await seed_shop(engine, shirts=500)
    order = await engine.orders.place(order_request(("SHIRT-M", 20)))
    assert order.status == "on_hold"
    assert order.payments[0].status == "authorized"
    assert "risk: amount" in order.hold_reason
    with pytest.raises(IllegalTransition):
        await engine.payments.capture(order.id)
    with pytest.raises(IllegalTransition):
        await engine.fulfilment.create_shipment(order.id)
    assert order.id not in [o.id for o in await engine.fulfilment.queue()]
    order = await engine.orders.release(order.id, note="called the customer")
    assert order.status == "processing"
    order = await engine.payments.capture(order.id)
    order = await ship_all(engine, order)
    assert order.status == "fulfilled"
