"""How many SQL statements a placement costs: bounded, and the same for any number of lines."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from ordnung.core import Engine
from ordnung.core.persistence import catalog as catalog_store
from ordnung.core.persistence import journal
from tests.api_support import api_client, expect, order_body
from tests.support import order_request


@pytest.fixture(autouse=True)
def counted_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    """What would make two counts of the same work differ is held back: the active
    channels are read again a second after the last read, and delivered events are
    marked by a timer that may fire between a placement's two transactions (then two
    UPDATEs, not one); held back, the marks are written by the one flush counted."""
    monkeypatch.setattr(catalog_store, "CHANNELS_TTL_S", 3600.0)
    monkeypatch.setattr(journal, "MARK_DELAY_S", 3600.0)


async def placement_cost(engine: Engine, *lines: tuple[str, int]) -> int:
    """Statements of one placement, including the (batched) delivered marks of its events."""
    await engine.runtime.journal.flush_marks()
    with engine.db.tally() as spent:
        await engine.orders.place(order_request(*lines, token=None, gateway="manual",
                                                method="bank_transfer"))
        await engine.runtime.journal.flush_marks()
    return spent.statements


async def test_placement_statements_are_bounded_and_the_same_for_more_lines(engine: Engine) -> None:
    await placement_cost(engine, ("MUG", 1))  # warm caches (channels)
    one = await placement_cost(engine, ("MUG", 1))
    three = await placement_cost(engine, ("SHIRT-M", 1), ("MUG", 1), ("POSTER", 1))
    print(f"statements per placement with payment: 1 line {one}, 3 lines {three}")
    assert three == one  # every line is reserved by the same one statement
    assert three <= 13


async def test_a_tally_counts_the_work_and_not_what_runs_beside_it(engine: Engine) -> None:
    """What a pinned cost counts: the statements of the work and of the tasks it starts,
    not those of a loop the engine started before (a clock measurement, a worker's poll)
    that happen to run at the same time."""
    db = engine.db
    go_on = asyncio.Event()

    async def beside() -> None:
        await go_on.wait()
        await db.run("SELECT 1 AS ok")

    loop = asyncio.create_task(beside())
    with db.tally() as spent:
        await db.run("SELECT 1 AS ok")
        go_on.set()
        await loop
        await asyncio.create_task(db.run("SELECT 2 AS ok"))
    await db.run("SELECT 3 AS ok")
    assert spent.statements == 2


async def test_writes_run_together_are_one_statement_on_postgresql(engine: Engine) -> None:
    """A change's writes (the order, its ledger rows, its events and outbox rows) go to
    PostgreSQL as one statement, which still tells what each part returned: a save that
    found the order changed returns no row, and the change is refused."""
    db = engine.db
    future = datetime(2999, 1, 1, tzinfo=UTC)
    upsert = ("INSERT INTO rate_limits (key, hits, expires_at) VALUES ({}, 1, {}), "
              "({}, 1, {}) RETURNING key")
    missing = "UPDATE rate_limits SET hits = hits + 1 WHERE key = {} RETURNING key"
    plain = "INSERT INTO rate_limits (key, hits, expires_at) VALUES ({}, 1, {})"
    async with db.transaction():
        with db.tally() as spent:
            counts = await db.run_together([(upsert, ["a", future, "b", future]),
                                            (missing, ["nobody"]), (plain, ["c", future])])
    assert counts == [2, 0, 0]
    assert spent.statements == (1 if db.is_postgres else 3)
    rows = await db.fetch("SELECT key FROM rate_limits ORDER BY key")
    assert [r["key"] for r in rows] == ["a", "b", "c"]


async def test_a_placement_through_the_app_reads_nothing_it_keeps(database_url: str) -> None:
    """``POST /orders`` with a key the worker kept, counted from its share of the rate
    limits: the stock reservation brings the generations back that confirm the key and
    the kept variants, so the placement is its writes only. On PostgreSQL one statement
    per transaction besides the reservation, on SQLite one per table. (Its events'
    delivered marks are written later, with other orders' marks.)"""
    async with api_client(database_url) as api:
        await api.engine.db.run("UPDATE stock_levels SET on_hand = 1000")
        shop = await api.storefront("web")
        body = order_body(("SHIRT-M", 1), ("MUG", 1), ("POSTER", 1))
        expect(await api.client.post("/orders", json=body, headers=shop), 201)
        await api.engine.runtime.journal.flush_marks()
        with api.engine.db.tally() as spent:  # its events' delivered marks come later,
            expect(await api.client.post("/orders", json=body, headers=shop), 201)
        assert spent.statements == (3 if api.engine.db.is_postgres else 9)
