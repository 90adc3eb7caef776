"""The floor: the minimal placement transactions run straight through the database driver.

What a placement commits, without the engine: transaction 1 reserves stock with
one guarded UPDATE per line (the same SKU mix as the load, plus the gift line where
the gift rule adds one) and inserts the order, its ledger movements, its
events and their outbox rows; transaction 2 records the payment authorization
(update the order, insert its events and outbox rows). Same concurrency as the
HTTP run. The ratio of the two is how close ordnung gets to the database.
"""

from __future__ import annotations

import asyncio
import random
import secrets
import sqlite3
import threading
import time
from datetime import UTC, datetime

import asyncpg

LINES = 3  # lines per order, as in the placement scenario
EVENTS_TX1 = 3  # order.placed, payment.created, inventory.availability_changed
EVENTS_TX2 = 2  # payment.authorized, order.processing


def _ids(n: int) -> list[str]:
    return [f"fl_{secrets.token_hex(12)}" for _ in range(n)]


class Catalogue:
    """What the floor needs to commit the same reservations as a placement: the SKUs the
    load draws from with their prices, and the gift the gift rule adds at its threshold."""

    def __init__(self, prices: dict[str, int], gift_sku: str, gift_threshold: int) -> None:
        self.skus = sorted(prices)
        self.prices = prices
        self.gift_sku = gift_sku
        self.gift_threshold = gift_threshold

    def lines(self, rng: random.Random) -> list[str]:
        """One order's SKUs, drawn like the load's, in the engine's fixed lock order."""
        chosen = rng.sample(self.skus, LINES)
        if sum(self.prices[s] for s in chosen) >= self.gift_threshold:
            chosen.append(self.gift_sku)
        return sorted(chosen)


async def postgres_floor(url: str, orders: int, concurrency: int, payload: str,
                         shop: Catalogue) -> float:
    pool = await asyncpg.create_pool(url, min_size=concurrency, max_size=concurrency)
    assert pool is not None
    counter = iter(range(orders))
    now = datetime.now(UTC)
    rng = random.Random(11)

    async def one(conn: asyncpg.Connection) -> None:
        order_id = _ids(1)[0]
        lines = shop.lines(rng)
        async with conn.transaction():
            for sku in lines:
                row = await conn.fetchrow(
                    "UPDATE stock_levels SET reserved = reserved + 1 WHERE sku = $1 "
                    "AND (allow_backorder OR on_hand - reserved >= 1) RETURNING location_id",
                    sku)
                assert row is not None
            await conn.execute(
                "INSERT INTO orders (id, number, channel, email, status, currency, priority, "
                "total, data, version, created_at, updated_at) VALUES ($1, $2, 'web', '', "
                "'placed', 'EUR', 0, 0, $3, 1, $4, $4)", order_id, order_id[-12:], payload, now)
            await conn.executemany(
                "INSERT INTO stock_movements (id, sku, location_id, kind, on_hand_delta, "
                "reserved_delta, order_id, at) VALUES ($1, $2, 'floor', 'reserve', 0, 1, $3, $4)",
                [(i, sku, order_id, now) for i, sku in zip(_ids(len(lines)), lines, strict=True)])
            ids = _ids(EVENTS_TX1)
            await conn.executemany(
                "INSERT INTO events (id, order_id, seq, kind, data, at) "
                "VALUES ($1, $2, 1, 'floor', $3, $4)", [(i, order_id, payload[:400], now)
                                                        for i in ids])
            await conn.executemany(
                "INSERT INTO outbox (id, kind, order_id, payload, created_at) "
                "VALUES ($1, 'floor', $2, $3, $4)", [(i, order_id, payload[:400], now)
                                                    for i in ids])
        async with conn.transaction():
            await conn.execute("UPDATE orders SET data = $2, version = 2 WHERE id = $1",
                               order_id, payload)
            ids = _ids(EVENTS_TX2)
            await conn.executemany(
                "INSERT INTO events (id, order_id, seq, kind, data, at) "
                "VALUES ($1, $2, 2, 'floor', $3, $4)", [(i, order_id, payload[:400], now)
                                                        for i in ids])
            await conn.executemany(
                "INSERT INTO outbox (id, kind, order_id, payload, created_at) "
                "VALUES ($1, 'floor', $2, $3, $4)", [(i, order_id, payload[:400], now)
                                                    for i in ids])

    async def worker() -> None:
        async with pool.acquire() as conn:
            for _ in counter:
                await one(conn)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    await pool.close()
    return orders / elapsed


def sqlite_floor(path: str, orders: int, concurrency: int, payload: str,
                 shop: Catalogue) -> float:
    """SQLite allows one writer: threads with their own connection, BEGIN IMMEDIATE each."""
    lock = threading.Lock()
    remaining = [orders]
    rng = random.Random(11)
    now = datetime.now(UTC).isoformat()

    def take() -> list[str] | None:
        with lock:
            if remaining[0] <= 0:
                return None
            remaining[0] -= 1
            return shop.lines(rng)

    def worker() -> None:
        conn = sqlite3.connect(path, timeout=60, isolation_level=None)
        conn.execute("PRAGMA synchronous = NORMAL")
        while (lines := take()) is not None:
            order_id = _ids(1)[0]
            conn.execute("BEGIN IMMEDIATE")
            for sku in lines:
                row = conn.execute(
                    "UPDATE stock_levels SET reserved = reserved + 1 WHERE sku = ? "
                    "AND (allow_backorder OR on_hand - reserved >= 1) RETURNING location_id",
                    (sku,)).fetchone()
                assert row is not None
            conn.execute(
                "INSERT INTO orders (id, number, channel, email, status, currency, priority, "
                "total, data, version, created_at, updated_at) VALUES (?, ?, 'web', '', "
                "'placed', 'EUR', 0, 0, ?, 1, ?, ?)", (order_id, order_id[-12:], payload, now, now))
            conn.executemany(
                "INSERT INTO stock_movements (id, sku, location_id, kind, on_hand_delta, "
                "reserved_delta, order_id, at) VALUES (?, ?, 'floor', 'reserve', 0, 1, ?, ?)",
                [(i, sku, order_id, now) for i, sku in zip(_ids(len(lines)), lines, strict=True)])
            for table_ids in (_ids(EVENTS_TX1),):
                conn.executemany("INSERT INTO events (id, order_id, seq, kind, data, at) "
                                 "VALUES (?, ?, 1, 'floor', ?, ?)",
                                 [(i, order_id, payload[:400], now) for i in table_ids])
                conn.executemany("INSERT INTO outbox (id, kind, order_id, payload, created_at) "
                                 "VALUES (?, 'floor', ?, ?, ?)",
                                 [(i, order_id, payload[:400], now) for i in table_ids])
            conn.execute("COMMIT")
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("UPDATE orders SET data = ?, version = 2 WHERE id = ?",
                         (payload, order_id))
            ids = _ids(EVENTS_TX2)
            conn.executemany("INSERT INTO events (id, order_id, seq, kind, data, at) "
                             "VALUES (?, ?, 2, 'floor', ?, ?)",
                             [(i, order_id, payload[:400], now) for i in ids])
            conn.executemany("INSERT INTO outbox (id, kind, order_id, payload, created_at) "
                             "VALUES (?, 'floor', ?, ?, ?)",
                             [(i, order_id, payload[:400], now) for i in ids])
            conn.execute("COMMIT")
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return orders / (time.perf_counter() - started)


def floor_per_s(database_url: str, orders: int, concurrency: int, payload: str,
                shop: Catalogue) -> float:
    if database_url.startswith("postgres"):
        return asyncio.run(postgres_floor(database_url, orders, concurrency, payload, shop))
    path = database_url.split("sqlite:///", 1)[1]
    return sqlite_floor(path, orders, concurrency, payload, shop)
