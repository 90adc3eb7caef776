"""The fulfilment queue's one statement: its states merged, highest priority first, then
oldest, on every page whatever its size."""

from __future__ import annotations

import random

import pytest

from ordnung.core import Engine
from ordnung.core.errors import NotFound
from tests.support import order_request

STATES = ["processing", "partially_fulfilled"]
_SET = "UPDATE orders SET status = {}, priority = {} WHERE id = {}"


async def test_the_queue_merges_its_states_by_priority_then_age_on_every_page(
        engine: Engine) -> None:
    rng = random.Random(14)
    layout: dict[str, tuple[str, int]] = {}
    for _ in range(14):
        order = await engine.orders.place(order_request(("POSTER", 1)))
        layout[order.id] = (rng.choice([*STATES, "cancelled"]), rng.choice([0, 0, 0, 5, 10]))
        await engine.db.run(_SET, *layout[order.id], order.id)
    expected = sorted((oid for oid, (status, _) in layout.items() if status in STATES),
                      key=lambda oid: (-layout[oid][1], oid))
    store = engine.runtime.orders
    for size in (1, 2, 3, 5, 100):
        got: list[str] = []
        after: str | None = None
        while True:
            with engine.db.tally() as spent:
                page = await store.queue(STATES, limit=size, after=after)
            if page:
                assert spent.statements == 1
            got += [o.id for o in page]
            if len(page) < size:
                break
            after = page[-1].id
        assert got == expected, size


async def test_a_queue_page_after_an_unknown_order_is_not_found(engine: Engine) -> None:
    with pytest.raises(NotFound):
        await engine.runtime.orders.queue(STATES, limit=10, after="ord_gone")
