"""The whole order life through the Engine: place, pay, ship, deliver, return, refund."""

from __future__ import annotations

from ordnung.core import Engine, ReturnLineInput
from tests.support import order_request, ship_all


async def test_order_lives_its_whole_life(engine: Engine) -> None:
    order = await engine.orders.place(order_request(("SHIRT-M", 2), ("MUG", 1)))
    assert order.status == "processing"
    assert order.payments[0].status == "authorized"
    order = await engine.payments.capture(order.id)
    order = await ship_all(engine, order)
    assert order.status == "fulfilled"
    order = await engine.fulfilment.deliver(order.id, order.shipments[0].id)
    assert order.status == "delivered"
    order, rma = await engine.returns.request(
        order.id, [ReturnLineInput(line_id="L1", quantity=1)], reason="too small")
    order = await engine.returns.approve(order.id, rma.id)
    order = await engine.returns.receive(order.id, rma.id)
    order = await engine.returns.refund(order.id, rma.id)
    assert order.status == "partially_returned"
    assert order.totals.refunded == rma.refund_amount > 0
    kinds = [e.kind for e in await engine.orders.timeline(order.id)]
    assert kinds[0] == "order.placed" and kinds[-1] == "return.refunded"
    assert await engine.inventory.ledger_discrepancies() == []
