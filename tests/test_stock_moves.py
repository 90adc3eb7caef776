"""Every stock movement goes through one path: the ledger always sums to the levels."""

from __future__ import annotations

from ordnung.core import Engine
from tests.support import order_request


async def test_orders_and_inventory_move_stock_through_the_ledger(engine: Engine) -> None:
    order = await engine.orders.place(order_request(("MUG", 2), ("SHIRT-M", 4)))  # + gift
    await engine.orders.cancel(order.id, reason="changed mind")
    await engine.inventory.adjust("MUG", "wh1", -3, reason="broken")
    await engine.inventory.count("POSTER", "wh1", 17)
    moves = await engine.inventory.movements(order_id=order.id)
    assert sorted((m.kind, m.sku, m.reserved_delta) for m in moves) == [
        ("release", "GIFT-TOTE", -1), ("release", "MUG", -2), ("release", "SHIRT-M", -4),
        ("reserve", "GIFT-TOTE", 1), ("reserve", "MUG", 2), ("reserve", "SHIRT-M", 4)]
    assert all(m.reason.startswith("order ") for m in moves if m.kind == "reserve")
    counted = [m for m in await engine.inventory.movements(sku="POSTER") if m.kind == "count"]
    assert [(m.on_hand_delta, m.order_id) for m in counted] == [(-3, None)]
    assert await engine.inventory.ledger_discrepancies() == []
