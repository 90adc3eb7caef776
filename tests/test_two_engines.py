"""Two engines with two databases in one process: each order lands in its own database.

Nothing is queried through piccolo's table classes (whose binding to a database is one
per process), so every ``Engine`` talks only to its own ``Database``: a process may
serve two shops, or a test compare two databases, side by side.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from ordnung.core import Engine, EngineConfig
from ordnung.core.errors import NotFound
from tests.conftest import TEST_DB
from tests.databases import fresh_pg_database
from tests.support import builtin_plugins, order_request, seed_shop


@pytest.fixture
def two_urls(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """Two empty databases of the suite's kind (two SQLite files, or two PostgreSQL
    databases made for this test)."""
    if TEST_DB != "postgres":
        yield f"sqlite:///{tmp_path / 'first.db'}", f"sqlite:///{tmp_path / 'second.db'}"
        return
    with fresh_pg_database("ordnung_first") as first, \
            fresh_pg_database("ordnung_second") as second:
        yield first, second


def _engine(url: str) -> Engine:
    return Engine(EngineConfig(database_url=url, load_entry_points=False),
                  plugins=builtin_plugins())


async def _count(engine: Engine) -> int:
    rows = await engine.db.fetch("SELECT COUNT(*) AS n FROM orders")
    return int(rows[0]["n"])


async def test_two_engines_on_two_databases_keep_their_orders_apart(
        two_urls: tuple[str, str]) -> None:
    first, second = _engine(two_urls[0]), _engine(two_urls[1])
    await first.start()
    try:
        await second.start()
        try:
            await seed_shop(first)
            await seed_shop(second, shirts=3)
            # interleaved on one event loop: every statement goes to its own database
            placed = await asyncio.gather(
                first.orders.place(order_request(("MUG", 1))),
                second.orders.place(order_request(("SHIRT-M", 2))),
                second.orders.place(order_request(("SHIRT-M", 1))),
                first.orders.place(order_request(("POSTER", 1))))
            mine, theirs = [placed[0], placed[3]], [placed[1], placed[2]]
            assert (await _count(first), await _count(second)) == (2, 2)
            for order in mine:
                assert (await first.orders.get(order.id)).id == order.id
                with pytest.raises(NotFound):
                    await second.orders.get(order.id)
            for order in theirs:
                with pytest.raises(NotFound):
                    await first.orders.get(order.id)
            # the stock each shop seeded is its own: the second sold its last three shirts
            assert (await second.inventory.available(["SHIRT-M"]))["SHIRT-M"] == 0
            assert (await first.inventory.available(["SHIRT-M"]))["SHIRT-M"] == 500
            assert await first.inventory.ledger_discrepancies() == []
            assert await second.inventory.ledger_discrepancies() == []
        finally:
            await second.stop()
        # the first goes on once the second has stopped
        again = await first.orders.place(order_request(("MUG", 1)))
        assert (await first.orders.get(again.id)).id == again.id and await _count(first) == 3
    finally:
        await first.stop()
