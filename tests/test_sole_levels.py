"""A placement whose lines are all on levels known to be their SKU's only one reserves
with its writes, in one statement (PostgreSQL); when that knowledge is wrong, or a line
has no room, the statement writes nothing and the placement goes on as before."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

import asyncpg
import pytest

from ordnung.core import Engine, hookimpl
from ordnung.core.domain.inventory import AvailabilityChange, Location
from ordnung.core.errors import OutOfStock
from tests.api_support import api_client, bearer, expect, expect_problem, order_body
from tests.conftest import TEST_DB
from tests.support import builtin_plugins, order_request, seed_shop
from tests.test_kept_credentials import two_workers

pytestmark = pytest.mark.skipif(
    TEST_DB != "postgres", reason="PostgreSQL runs a placement as one statement; SQLite's "
    "statements cost no round trip")


class Pushes:
    """Records what the availability push is told."""

    def __init__(self) -> None:
        self.changes: list[dict[str, int]] = []

    @hookimpl
    def ordnung_availability_changed(self, changes: Sequence[AvailabilityChange]) -> None:
        self.changes.append({c.sku: c.available for c in changes})


async def _shop(make_engine: Any, *more: Any) -> Engine:
    engine: Engine = await make_engine(plugins=[*builtin_plugins(), *more])
    await seed_shop(engine)
    return engine


def _placed(order: Any) -> dict[str, list[tuple[str, int]]]:
    return {ln.sku: [(a.location_id, a.quantity) for a in ln.allocations] for ln in order.lines}


async def test_a_placement_on_known_levels_is_one_statement(make_engine: Any) -> None:
    pushes = Pushes()
    engine = await _shop(make_engine, (pushes, "pushes"))
    lines = (("POSTER", 1), ("SHIRT-M", 1))
    with engine.db.tally() as learning:
        first = await engine.orders.place(order_request(*lines, token=None))
    with engine.db.tally() as spent:
        second = await engine.orders.place(order_request(*lines, token=None))
    with engine.db.tally() as again:
        third = await engine.orders.place(order_request(*lines, token=None))
    # the first reserved in a statement of its own (the worker learned the levels), the
    # others with their writes (after the read of the variants, which a placement outside
    # a request does not keep); the availability push was told the figures, nothing read
    # them again
    assert spent.statements == again.statements == 2 < learning.statements
    assert _placed(second) == {"POSTER": [("wh1", 1)], "SHIRT-M": [("wh1", 1)]}
    assert await engine.inventory.available(["POSTER", "SHIRT-M"]) == {
        "POSTER": 17, "SHIRT-M": 497}
    assert pushes.changes[-2:] == [{"POSTER": 18, "SHIRT-M": 498},
                                   {"POSTER": 17, "SHIRT-M": 497}]
    moves = await engine.inventory.movements(order_id=second.id)
    assert sorted((m.kind, m.sku, m.location_id, m.reserved_delta) for m in moves) == [
        ("reserve", "POSTER", "wh1", 1), ("reserve", "SHIRT-M", "wh1", 1)]
    kinds = [ev.kind for ev in await engine.orders.timeline(second.id)]
    assert kinds == [ev.kind for ev in await engine.orders.timeline(first.id)]
    assert "inventory.availability_changed" in kinds
    assert third.status == second.status == first.status
    assert await engine.inventory.ledger_discrepancies() == []


async def test_a_level_another_worker_joined_by_a_closer_one_is_reserved_as_before(
        make_engine: Any) -> None:
    """This worker learned that POSTER has one level; another adds one at a location of
    higher priority. The next placement's one statement refuses itself, writes nothing,
    and the placement reserves as before: at the closer location."""
    engine = await _shop(make_engine)
    await engine.orders.place(order_request(("POSTER", 1), token=None))
    other: Engine = await make_engine()
    await other.inventory.upsert_location(Location(id="wh0", name="Front", priority=1))
    await other.inventory.adjust("POSTER", "wh0", 5, kind="receive", reason="delivery")
    with engine.db.tally() as spent:
        order = await engine.orders.place(order_request(("POSTER", 2), token=None))
    assert spent.statements > 1
    assert _placed(order) == {"POSTER": [("wh0", 2)]}
    again = await engine.orders.place(order_request(("POSTER", 1), token=None))
    assert _placed(again) == {"POSTER": [("wh0", 1)]}
    assert await engine.inventory.available(["POSTER"]) == {"POSTER": 21}
    assert await engine.inventory.ledger_discrepancies() == []


async def test_a_shortage_on_a_known_level_is_told_and_nothing_is_held(
        make_engine: Any) -> None:
    engine = await _shop(make_engine)
    await engine.orders.place(order_request(("POSTER", 1), ("SHIRT-M", 1), token=None))
    before = await engine.inventory.levels()
    orders_before = len(await engine.orders.list())
    with pytest.raises(OutOfStock) as caught:
        await engine.orders.place(order_request(("POSTER", 25), ("SHIRT-M", 1), token=None))
    assert [(s["sku"], s["requested"], s["available"]) for s in caught.value.shortages] == [
        ("POSTER", 25, 19)]
    assert await engine.inventory.levels() == before
    assert len(await engine.orders.list()) == orders_before
    assert await engine.inventory.ledger_discrepancies() == []


async def test_a_gift_whose_level_was_cut_into_slices_is_still_reserved(
        make_engine: Any) -> None:
    """The gift's level, learned as one row, is cut into slices by another worker: the
    placement's statement refuses itself and the gift is reserved on a slice."""
    engine = await _shop(make_engine)
    earned = order_request(("MUG", 2), ("SHIRT-M", 4), token=None)
    first = await engine.orders.place(earned)
    assert "GIFT-TOTE" in _placed(first)
    other: Engine = await make_engine()
    await other.inventory.set_slices("GIFT-TOTE", "wh1", 4)
    second = await engine.orders.place(earned)
    assert _placed(second)["GIFT-TOTE"] == [("wh1", 1)]
    assert await engine.inventory.available(["GIFT-TOTE"]) == {"GIFT-TOTE": 8}
    assert await engine.inventory.ledger_discrepancies() == []


async def test_concurrent_placements_on_a_known_level_never_oversell(
        make_engine: Any) -> None:
    """POSTER has 20: after one, 19 are left for 30 placements at once."""
    engine = await _shop(make_engine)
    await engine.orders.place(order_request(("POSTER", 1), token=None))

    async def one() -> bool:
        try:
            await engine.orders.place(order_request(("POSTER", 1), token=None))
        except OutOfStock:
            return False
        return True

    placed = await asyncio.gather(*(one() for _ in range(30)))
    assert sum(placed) == 19
    assert await engine.inventory.available(["POSTER"]) == {"POSTER": 0}
    assert await engine.inventory.ledger_discrepancies() == []


def _end_every_other_session(url: str) -> None:
    """End the engine's pooled sessions on the server, from another thread, while the
    engine's loop waits: it learns of it only when it uses their connections."""
    async def end() -> None:
        connection = await asyncpg.connect(url)
        try:
            await connection.fetch(
                "SELECT pg_terminate_backend(pid, 5000) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        finally:
            await connection.close()

    worker = threading.Thread(target=asyncio.run, args=(end(),))
    worker.start()
    worker.join()


async def _stock_after(engine: Engine, order_id: str) -> tuple[int, dict[str, int], list[Any]]:
    orders = [o for o in await engine.orders.list() if o.id == order_id]
    moves = await engine.inventory.movements(order_id=order_id)
    return len(orders), await engine.inventory.available(["POSTER", "SHIRT-M"]), moves


async def test_a_placement_run_as_one_statement_outlives_a_dead_pooled_connection(
        make_engine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The database restarted since the last placement: the one statement finds its
    connection dead and runs once more on a fresh one, as a transaction begins once
    more; the shopper sees nothing of it."""
    engine = await _shop(make_engine)
    lines = (("POSTER", 1), ("SHIRT-M", 1))
    await engine.orders.place(order_request(*lines, token=None))
    run_headed = engine.db.run_headed

    async def after_a_restart(*args: Any, **kwargs: Any) -> Any:
        _end_every_other_session(engine.db.url)
        return await run_headed(*args, **kwargs)

    monkeypatch.setattr(engine.db, "run_headed", after_a_restart)
    order = await engine.orders.place(order_request(*lines))
    assert order.payments[-1].status == "authorized"
    found, available, moves = await _stock_after(engine, order.id)
    assert found == 1 and available == {"POSTER": 18, "SHIRT-M": 498}
    assert sorted((m.sku, m.reserved_delta) for m in moves) == [("POSTER", 1), ("SHIRT-M", 1)]
    assert await engine.inventory.ledger_discrepancies() == []


async def test_a_placement_whose_answer_was_lost_after_it_committed_is_placed_once(
        make_engine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The statement committed, then the connection went before its answer came back.
    The placement runs it once more on a fresh connection; that attempt finds the
    order's own rows already written, writes nothing, and the placement goes on with the
    order the first attempt wrote: one order, its stock reserved once, its payment
    authorized."""
    engine = await _shop(make_engine)
    lines = (("POSTER", 1), ("SHIRT-M", 1))
    await engine.orders.place(order_request(*lines, token=None))
    fetch = asyncpg.connection.Connection.fetch
    lost: list[str] = []

    async def answer_lost(self: asyncpg.Connection, query: str, *args: Any,
                          **kwargs: Any) -> Any:
        rows = await fetch(self, query, *args, **kwargs)
        if query.startswith("WITH sole_locked") and not lost:
            lost.append(query)
            self.terminate()
            raise asyncpg.ConnectionDoesNotExistError(
                "connection was closed in the middle of operation")
        return rows

    monkeypatch.setattr(asyncpg.connection.Connection, "fetch", answer_lost)
    order = await engine.orders.place(order_request(*lines))
    monkeypatch.undo()
    assert lost  # the answer of a statement that committed was lost
    assert order.payments[-1].status == "authorized"
    found, available, moves = await _stock_after(engine, order.id)
    assert found == 1 and available == {"POSTER": 18, "SHIRT-M": 498}
    assert sorted((m.sku, m.reserved_delta) for m in moves) == [("POSTER", 1), ("SHIRT-M", 1)]
    assert len(await engine.orders.list()) == 2
    kinds = [ev.kind for ev in await engine.orders.timeline(order.id)]
    assert kinds.count("order.placed") == 1 and kinds.count("payment.authorized") == 1
    assert await engine.inventory.ledger_discrepancies() == []


async def test_a_placement_through_the_app_is_one_statement_and_its_authorization(
        database_url: str) -> None:
    """``POST /orders`` with a key the worker kept, on levels it knows: the statement
    carries the checks of the kept key and variants, so nothing is read first."""
    async with api_client(database_url) as api:
        shop = await api.storefront("web")
        body = order_body(("SHIRT-M", 1), ("POSTER", 1))
        expect(await api.client.post("/orders", json=body, headers=shop), 201)
        await api.engine.runtime.journal.flush_marks()
        with api.engine.db.tally() as spent:  # its events' delivered marks come later
            order = expect(await api.client.post("/orders", json=body, headers=shop), 201)
        assert spent.statements == 2
        assert order["status"] == "processing"


async def test_a_storefront_key_revoked_elsewhere_places_no_order_on_known_levels(
        database_url: str) -> None:
    """The one statement checks that the kept key's generation is still current: revoked
    on another worker, it writes nothing, and the placement is refused as before."""
    async with two_workers(database_url) as (first, second):
        issued = await first.issue_key("storefront", channel="web")
        headers = bearer(issued["secret"])
        body = order_body(("SHIRT-M", 1), ("POSTER", 1))
        expect(await second.client.post("/orders", json=body, headers=headers), 201)
        orders, levels = await second.order_count(), await second.levels()
        await first.revoke(issued["key"]["id"])
        expect_problem(await second.client.post("/orders", json=body, headers=headers),
                       401, "unauthorized")
        assert await second.order_count() == orders
        assert await second.levels() == levels


class Budget:
    """Claims one unit of a budget all orders share: a row every placement locks."""

    @hookimpl
    async def ordnung_claim_resources(self, order: Any, store: Any) -> None:
        assert await store.claim("budget", "all")


async def test_placements_whose_plugins_claim_never_deadlock_with_each_other(
        make_engine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every placement takes its stock rows before the rows a plugin's claim takes: one
    that would reserve with its writes, after the claims, starts again reserving first
    when a claim wrote. Without that, a placement of SHIRT-M alone (its level known, so
    reserved last) and one of SHIRT-M with MUG (two levels: reserved first) lock the
    shirts' row and the budget's in opposite orders, and deadlock."""
    engine = await _shop(make_engine, (Budget(), "budget"))
    await engine.orders.place(order_request(("SHIRT-M", 1), token=None))  # learn its level
    retried: list[str] = []
    monkeypatch.setattr(engine.runtime, "transaction_retried", retried.append)

    async def one(n: int) -> None:
        lines = (("SHIRT-M", 1),) if n % 2 else (("SHIRT-M", 1), ("MUG", 1))
        await engine.orders.place(order_request(*lines, token=None))

    for _ in range(3):
        await asyncio.gather(*(one(n) for n in range(12)))
    assert retried == []
    assert await engine.plugin_store("budget").count("budget", "all") == 37
    assert await engine.inventory.available(["SHIRT-M", "MUG"]) == {"SHIRT-M": 500 - 37,
                                                                     "MUG": 100 - 18}
    assert await engine.inventory.ledger_discrepancies() == []
