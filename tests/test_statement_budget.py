"""How many SQL statements a placement costs: bounded, and the same for any number of lines."""

from __future__ import annotations

from ordnung.core import Engine
from tests.support import order_request


async def placement_cost(engine: Engine, *lines: tuple[str, int]) -> int:
    """Statements of one placement, including the (batched) delivered marks of its events."""
    await engine.runtime.journal.flush_marks()
    before = engine.db.statements
    await engine.orders.place(order_request(*lines, token=None, gateway="manual",
                                            method="bank_transfer"))
    await engine.runtime.journal.flush_marks()
    return engine.db.statements - before


async def test_placement_statements_are_bounded_and_the_same_for_more_lines(engine: Engine) -> None:
    await placement_cost(engine, ("MUG", 1))  # warm caches (channels)
    one = await placement_cost(engine, ("MUG", 1))
    three = await placement_cost(engine, ("SHIRT-M", 1), ("MUG", 1), ("POSTER", 1))
    print(f"statements per placement with payment: 1 line {one}, 3 lines {three}")
    assert three == one  # every line is reserved by the same one statement
    assert three <= 13
