"""Every stock movement goes through one path: the ledger always sums to the levels."""

from __future__ import annotations

import pytest

from ordnung.core import Engine
from ordnung.core.errors import OutOfStock
from ordnung.core.persistence.stock import Want
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


async def test_a_placement_reserves_all_its_lines_or_none(engine: Engine) -> None:
    before = await engine.inventory.levels()
    with pytest.raises(OutOfStock) as caught:
        await engine.orders.place(order_request(("MUG", 2), ("POSTER", 21), ("SHIRT-M", 1)))
    assert [(s["sku"], s["requested"], s["available"]) for s in caught.value.shortages] == [
        ("POSTER", 21, 20)]
    assert await engine.inventory.levels() == before
    assert await engine.inventory.ledger_discrepancies() == []


async def test_a_line_that_fits_no_single_location_is_spread_over_them(engine: Engine) -> None:
    """MUG has 50 units at wh1 and 50 at wh2: 60 cannot come from one level."""
    order = await engine.orders.place(order_request(("MUG", 60), ("POSTER", 1)))
    allocations = {ln.sku: sorted((a.location_id, a.quantity) for a in ln.allocations)
                   for ln in order.lines}
    assert allocations == {"MUG": [("wh1", 50), ("wh2", 10)], "POSTER": [("wh1", 1)],
                           "GIFT-TOTE": [("wh1", 1)]}  # the order earned the free gift
    assert await engine.inventory.available(["MUG", "POSTER"]) == {"MUG": 40, "POSTER": 19}
    assert await engine.inventory.ledger_discrepancies() == []


async def test_reserving_costs_one_statement_and_a_miss_is_not_tried_twice(
        engine: Engine) -> None:
    """One statement for every line that fits; a SKU's only line that it missed goes
    straight to the spread over the levels (read the levels, take the 19 there, read
    them again, give the 19 back, read what is available), not to the same attempt
    again."""
    stock = engine.runtime.stock
    async with engine.db.transaction():
        with engine.db.tally() as spent:
            outcome = await stock.reserve([Want("a", "MUG", 2), Want("b", "POSTER", 1),
                                           Want("c", "GIFT-TOTE", 1, optional=True)])
        assert spent.statements == 1
        assert not outcome.shortages and not outcome.skipped
        with engine.db.tally() as spent:
            outcome = await stock.reserve([Want("d", "POSTER", 20)])
        assert spent.statements == 1 + 5
        assert outcome.shortages == [{"sku": "POSTER", "requested": 20, "available": 19}]
