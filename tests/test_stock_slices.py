"""A sliced level behaves as the one row it replaces: the same moves give the same totals
(and the same refusals), no slice ever goes negative or holds more reserved than on hand,
and readers see the level, not its slices."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ordnung.core import Engine, EngineConfig
from ordnung.core.errors import InvalidInput, OutOfStock
from ordnung.core.persistence.database import Database
from ordnung.core.persistence.stock import StockStore, Want, spread
from tests.api_support import Api, api_fixture, expect, expect_problem  # noqa: F401
from tests.support import builtin_plugins, order_request, seed_shop

SLICED, PLAIN, WH = "MUG", "POSTER", "wh1"
_ROWS = ("SELECT slice, on_hand, reserved FROM stock_levels "
         "WHERE sku = {} AND location_id = {} ORDER BY slice")
_RESET = "DELETE FROM stock_levels WHERE sku IN ({}, {})"

Move = tuple[str, int]
MOVES = st.lists(st.tuples(st.sampled_from(
    ["receive", "reserve", "release", "ship", "write_off", "count", "slices"]),
    st.integers(0, 12)), max_size=25)


async def _apply(stock: StockStore, sku: str, move: Move) -> str:
    """One move on one level, in its own transaction: what came of it."""
    kind, n = move
    try:
        async with stock.db.transaction():
            if kind == "receive":
                await stock.apply([(sku, WH, n + 1, 0)])
            elif kind == "reserve":
                outcome = await stock.reserve([Want("k", sku, n + 1)])
                if outcome.shortages:
                    return "short"
            elif kind == "release":
                await stock.apply([(sku, WH, 0, -(n + 1))])
            elif kind == "ship":
                await stock.apply([(sku, WH, -(n + 1), -(n + 1))])
            elif kind == "write_off":
                await stock.apply([(sku, WH, -(n + 1), 0)])
            elif kind == "count":
                await stock.set_on_hand(sku, WH, n)
            elif sku == SLICED:  # the unsliced level keeps its one row
                await stock.set_slices(sku, WH, n % 6 + 1)
    except InvalidInput:
        return "refused"
    return "ok"


async def _check(stock: StockStore, moves: list[Move], slices: int) -> None:
    await stock.db.run(_RESET, SLICED, PLAIN)
    for sku in (SLICED, PLAIN):
        await stock.ensure_level(sku, WH, False)
    async with stock.db.transaction():
        await stock.set_slices(SLICED, WH, slices)
    count = slices
    for move in moves:
        assert await _apply(stock, SLICED, move) == await _apply(stock, PLAIN, move), move
        if move[0] == "slices":
            count = move[1] % 6 + 1
        sliced, plain = await stock.level(SLICED, WH), await stock.level(PLAIN, WH)
        assert (sliced.on_hand, sliced.reserved) == (plain.on_hand, plain.reserved), move
        rows = await stock.db.fetch(_ROWS, SLICED, WH)
        assert [r["slice"] for r in rows] == list(range(count))
        assert all(0 <= r["reserved"] <= r["on_hand"] for r in rows), rows
        assert (await stock.available([SLICED]))[SLICED] == plain.on_hand - plain.reserved


async def _seed(url: str) -> None:
    engine = Engine(EngineConfig(database_url=url, load_entry_points=False),
                    plugins=builtin_plugins())
    await engine.start()
    try:
        await seed_shop(engine)
    finally:
        await engine.stop()


def test_a_sliced_level_moves_as_the_row_it_replaces(database_url: str) -> None:
    asyncio.run(_seed(database_url))

    @settings(max_examples=40, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(moves=MOVES, slices=st.integers(1, 6))
    def run(moves: list[Move], slices: int) -> None:
        async def example() -> None:
            async with Database(database_url).session() as db:
                await _check(StockStore(db), moves, slices)
        asyncio.run(example())

    run()


def test_spread_never_puts_more_reserved_than_on_hand_on_a_slice() -> None:
    for count in range(1, 7):
        for on_hand in range(0, 20):
            for reserved in range(0, on_hand + 1):
                pairs = zip(spread(on_hand, count), spread(reserved, count), strict=True)
                assert all(r <= h for h, r in pairs)


async def test_readers_and_orders_see_the_level_not_its_slices(engine: Engine) -> None:
    before = await engine.inventory.levels()
    level = await engine.inventory.set_slices("SHIRT-M", "wh1", 8)
    assert await engine.inventory.levels() == before
    assert (level.on_hand, level.reserved) == next(
        (lv.on_hand, lv.reserved) for lv in before
        if (lv.sku, lv.location_id) == ("SHIRT-M", "wh1"))
    order = await engine.orders.place(order_request(("SHIRT-M", 3)))
    await engine.inventory.adjust("SHIRT-M", "wh1", 5, kind="receive")
    await engine.inventory.count("SHIRT-M", "wh1", 400)
    await engine.orders.cancel(order.id, reason="changed mind")
    levels = {(lv.sku, lv.location_id): lv for lv in await engine.inventory.levels()}
    assert (levels["SHIRT-M", "wh1"].on_hand, levels["SHIRT-M", "wh1"].reserved) == (400, 0)
    assert await engine.inventory.ledger_discrepancies() == []
    rows = await engine.db.fetch(_ROWS, "SHIRT-M", "wh1")
    assert len(rows) == 8 and sum(r["on_hand"] for r in rows) == 400
    with pytest.raises(InvalidInput):
        await engine.inventory.set_slices("SHIRT-M", "wh1", 0)


async def test_a_sliced_level_sells_its_last_units_even_when_no_slice_holds_enough(
        engine: Engine) -> None:
    """POSTER has 20 units over 8 slices (3, 3, 3, 3, 2, 2, 2, 2): an order of 20 takes
    them all from every slice; the next is refused."""
    await engine.inventory.set_slices("POSTER", "wh1", 8)
    order = await engine.orders.place(order_request(("POSTER", 20)))
    assert [(a.location_id, a.quantity) for ln in order.lines if ln.sku == "POSTER"
            for a in ln.allocations] == [("wh1", 20)]
    with pytest.raises(OutOfStock):
        await engine.orders.place(order_request(("POSTER", 1)))
    assert (await engine.inventory.available(["POSTER"]))["POSTER"] == 0
    assert await engine.inventory.ledger_discrepancies() == []


async def test_an_admin_slices_a_level_over_rest_and_graphql(api: Api) -> None:
    before = await api.levels()
    body = {"sku": "MUG", "location_id": "wh1", "slices": 4}
    level = expect(await api.client.put("/inventory/slices", json=body, headers=api.admin),
                   200)
    assert (level["sku"], level["location_id"]) == ("MUG", "wh1")
    assert await api.levels() == before
    assert len(await api.engine.db.fetch(_ROWS, "MUG", "wh1")) == 4
    shop = await api.storefront("web")
    expect_problem(await api.client.put("/inventory/slices", json=body, headers=shop),
                   403, "forbidden")
    for wrong, status in (({**body, "slices": 0}, 422), ({**body, "sku": "NOPE"}, 404)):
        response = await api.client.put("/inventory/slices", json=wrong, headers=api.admin)
        assert response.status_code == status, response.text
    query = ('mutation { setInventorySlices(sku: "MUG", locationId: "wh1", slices: 1) '
             '{ sku onHand } }')
    answer = expect(await api.client.post("/graphql", json={"query": query},
                                          headers=api.admin), 200)
    assert answer["data"]["setInventorySlices"]["sku"] == "MUG", answer
    assert len(await api.engine.db.fetch(_ROWS, "MUG", "wh1")) == 1
    assert await api.levels() == before
