"""The floor: the minimal placement transactions run straight through the database driver.

What a placement commits, without the engine. Transaction 1 reserves stock for all of
its lines in one guarded UPDATE, as the engine does (the same SKU mix as the load, plus
the gift line where the gift rule adds one; on PostgreSQL its rows locked in SKU order
first, as the engine locks them), and inserts the order, its ledger movements, its
events and the outbox row of the one event a plugin reacts to (the availability push).
Transaction 2 records the payment authorization: the gateway reference, the order
update and its events. Same concurrency as the HTTP run; the ratio of the two is how
close ordnung gets to the database. Both drivers run the same statements
(``placement``), but for that lock order. With the gift's level in slices
(``--gift-slices``) the floor takes one slice per order, as the engine does.

On PostgreSQL each transaction above is ``BEGIN``, a statement per table and ``COMMIT``.
The engine sends fewer round trips than that: its writes of a change go as one
statement, and where it knows each line's level is its SKU's only one, the reservation
goes with them and the placement is that one statement, without ``BEGIN`` and
``COMMIT``. So the floor is also measured in that shape (``lean``): each transaction as
one statement, the reservation's check in it (the statement refuses itself unless every
SKU was reserved). Its ratio is how close the engine gets to the leanest form of the
same work (unsliced gift only).
"""

from __future__ import annotations

import asyncio
import random
import secrets
import sqlite3
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg

from bench import load

LINES = 3  # lines per order, as in the placement scenario
EVENTS_TX1 = 3  # order.placed, payment.created, inventory.availability_changed
OUTBOX_TX1 = 1  # only the availability change has a reaction (channel_log)
EVENTS_TX2 = 2  # payment.authorized, order.processing; no reactions, no outbox rows


def _ids(n: int) -> list[str]:
    return [f"fl_{secrets.token_hex(12)}" for _ in range(n)]


@dataclass(frozen=True)
class Statement:
    """One statement ({} placeholders) run once per row of arguments; a reservation
    (``reserves``) must hand back one row per SKU of its arguments, each SKU once, or
    the floor ran out of stock."""

    sql: str
    rows: list[tuple[Any, ...]]
    reserves: bool = False


def reserved_all(statement_args: tuple[Any, ...], returned: list[Any]) -> bool:
    """Whether a reservation's answer (rows whose first column is the SKU) holds every
    SKU it was asked for, once: a line left out had no stock, and a SKU twice would be
    reserved on two levels."""
    return sorted(row[0] for row in returned) == sorted(statement_args)


def reserve_sql(lines: int, *, postgres: bool, sliced: bool = False) -> str:
    """All of a placement's lines (distinct SKUs, one unit each) in one guarded UPDATE.

    On PostgreSQL its rows are first locked in SKU order, as the engine's reservation
    locks them: an UPDATE alone takes its rows in the order its scan meets them, which
    every update of a row changes, and two placements would deadlock. SQLite has one
    writer at a time and nothing to order.

    ``sliced``: the last SKU's level is cut into slices; like the engine, take one slice
    with room at random, on PostgreSQL one that no other transaction holds (``SKIP
    LOCKED``: no wait for it, and so no deadlock)."""
    skus = ", ".join("{}" for _ in range(lines - 1 if sliced else lines))
    where = (f"id IN (SELECT id FROM stock_levels WHERE sku IN ({skus}) ORDER BY sku "
             "FOR UPDATE)" if postgres else f"sku IN ({skus})")
    if sliced:
        where = f"({where} OR id = ({_free_slice(postgres)}))"
    return (f"UPDATE stock_levels SET reserved = reserved + 1 WHERE {where} "
            "AND (allow_backorder OR on_hand - reserved >= 1) RETURNING sku")


def _free_slice(postgres: bool) -> str:
    return ("SELECT id FROM stock_levels WHERE sku = {} AND on_hand - reserved >= 1 "
            "ORDER BY random() LIMIT 1" + (" FOR UPDATE SKIP LOCKED" if postgres else ""))


#: one unit of a sliced SKU alone: when every slice with room was held by others, the
#: engine pauses a moment and tries again; so does the floor
SLICE_AGAIN = ("UPDATE stock_levels SET reserved = reserved + 1 WHERE id = ("
               + _free_slice(True) + ") RETURNING sku")


def placement(order_id: str, lines: list[str], payload: str, now: Any, *,
              postgres: bool, sliced: str | None = None) -> list[list[Statement]]:
    """The two transactions of one placement; ``sliced``: a SKU whose level is in slices."""
    data = payload[:400]
    slices = sliced is not None and sliced in lines
    wanted = tuple([s for s in lines if s != sliced] + [sliced]) if slices else tuple(lines)
    events1, events2 = _ids(EVENTS_TX1), _ids(EVENTS_TX2)
    event_sql = ("INSERT INTO events (id, order_id, seq, kind, data, at) "
                 "VALUES ({}, {}, {}, 'floor', {}, {})")
    return [[
        Statement(reserve_sql(len(lines), postgres=postgres, sliced=slices), [wanted],
                  reserves=True),
        Statement("INSERT INTO orders (id, number, channel, email, status, currency, priority, "
                  "total, data, version, created_at, updated_at) VALUES ({}, {}, 'web', '', "
                  "'placed', 'EUR', 0, 0, {}, 1, {}, {})",
                  [(order_id, order_id[-12:], payload, now, now)]),
        Statement("INSERT INTO stock_movements (id, sku, location_id, kind, on_hand_delta, "
                  "reserved_delta, order_id, at) VALUES ({}, {}, 'floor', 'reserve', 0, 1, {}, {})",
                  [(i, sku, order_id, now) for i, sku in zip(_ids(len(lines)), lines,
                                                             strict=True)]),
        Statement(event_sql, [(i, order_id, n, data, now) for n, i in enumerate(events1, 1)]),
        Statement("INSERT INTO outbox (id, kind, order_id, payload, created_at) "
                  "VALUES ({}, 'floor', {}, {}, {})",
                  [(i, order_id, data, now) for i in events1[-OUTBOX_TX1:]]),
    ], [
        Statement("INSERT INTO external_refs (namespace, reference, order_id, entity_id) "
                  "VALUES ('payment:floor', {}, {}, 'pay')", [(order_id, order_id)]),
        Statement("UPDATE orders SET data = {}, version = 2 WHERE id = {}",
                  [(payload, order_id)]),
        Statement(event_sql, [(i, order_id, EVENTS_TX1 + n, data, now)
                              for n, i in enumerate(events2, 1)]),
    ]]


def _numbered(sql: str) -> str:
    parts = sql.split("{}")
    return parts[0] + "".join(f"${i}{part}" for i, part in enumerate(parts[1:], start=1))


class Catalogue:
    """What the floor needs to commit the same reservations as a placement: the SKUs the
    load draws from with their prices, and the gift the gift rule adds at its threshold."""

    def __init__(self, prices: dict[str, int], gift_sku: str, gift_threshold: int, *,
                 gift_slices: int = 1) -> None:
        self.skus = sorted(prices)
        self.prices = prices
        self.gift_sku = gift_sku
        self.gift_threshold = gift_threshold
        #: the gift's level in slices (``--gift-slices``): reserved on one slice, as the
        #: engine does
        self.sliced = gift_sku if gift_slices > 1 else None

    def lines(self, rng: random.Random) -> list[str]:
        """One order's SKUs, drawn like the load's, in the engine's fixed lock order."""
        chosen = rng.sample(self.skus, LINES)
        if sum(self.prices[s] for s in chosen) >= self.gift_threshold:
            chosen.append(self.gift_sku)
        return sorted(chosen)


async def postgres_floor(url: str, orders: int, concurrency: int, payload: str,
                         shop: Catalogue) -> float:
    now = datetime.now(UTC)
    rng = random.Random(11)

    async def one(conn: asyncpg.Connection) -> None:
        order_id = _ids(1)[0]
        for transaction in placement(order_id, shop.lines(rng), payload, now, postgres=True,
                                     sliced=shop.sliced):
            async with conn.transaction():
                for st in transaction:
                    if st.reserves:
                        for args in st.rows:
                            got = list(await conn.fetch(_numbered(st.sql), *args))
                            for _ in range(1000):
                                if shop.sliced not in args or reserved_all(args, got):
                                    break
                                await asyncio.sleep(0.001)
                                got += await conn.fetch(_numbered(SLICE_AGAIN), shop.sliced)
                            assert reserved_all(args, got)
                    elif st.rows:
                        await conn.executemany(_numbered(st.sql), st.rows)

    return await _per_s(url, orders, concurrency, one)


async def _per_s(url: str, orders: int, concurrency: int,
                 one: Callable[[asyncpg.Connection], Awaitable[None]]) -> float:
    """Orders per second of ``one`` run ``orders`` times by ``concurrency`` connections."""
    pool = await asyncpg.create_pool(url, min_size=concurrency, max_size=concurrency)
    assert pool is not None
    counter = iter(range(orders))

    async def worker() -> None:
        async with pool.acquire() as conn:
            for _ in counter:
                await one(conn)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    await pool.close()
    return orders / elapsed


def one_statement(transaction: list[Statement]) -> tuple[str, list[Any]]:
    """A transaction of ``placement`` as one PostgreSQL statement ($n placeholders): each
    statement a data-modifying ``WITH`` (an insert's rows in one ``VALUES``), refused
    whole unless the reservation returned one row per SKU it was asked for."""
    parts: list[str] = []
    values: list[Any] = []
    guard = "1"
    for i, st in enumerate(transaction):
        if not st.rows:
            continue
        sql = st.sql
        if st.reserves:
            (wanted,) = st.rows
            guard = f"1 / (CASE WHEN (SELECT COUNT(*) FROM w{i}) = {len(wanted)} THEN 1 ELSE 0 END)"
        elif " VALUES " in sql:
            head, row = sql.split(" VALUES ", 1)
            sql = f"{head} VALUES {', '.join(row for _ in st.rows)}"
        elif len(st.rows) != 1:
            raise ValueError(f"one row per statement that is not an insert: {sql}")
        parts.append(f"w{i} AS ({sql})")
        values.extend(v for row in st.rows for v in row)
    return _numbered(f"WITH {', '.join(parts)} SELECT {guard} AS ok"), values


async def postgres_lean_floor(url: str, orders: int, concurrency: int, payload: str,
                              shop: Catalogue) -> float:
    """The floor's transactions, each as one statement on its own (``one_statement``)."""
    now = datetime.now(UTC)
    rng = random.Random(11)

    async def one(conn: asyncpg.Connection) -> None:
        for transaction in placement(_ids(1)[0], shop.lines(rng), payload, now,
                                     postgres=True):
            sql, values = one_statement(transaction)
            await conn.fetch(sql, *values)

    return await _per_s(url, orders, concurrency, one)


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

    failures: list[BaseException] = []

    def worker() -> None:
        try:
            work()
        except BaseException as exc:  # a thread's error would only be printed: report it
            failures.append(exc)

    def work() -> None:
        conn = sqlite3.connect(path, timeout=60, isolation_level=None)
        conn.execute("PRAGMA synchronous = NORMAL")
        while (lines := take()) is not None:
            for transaction in placement(_ids(1)[0], lines, payload, now, postgres=False,
                                         sliced=shop.sliced):
                conn.execute("BEGIN IMMEDIATE")
                for st in transaction:
                    sql = st.sql.replace("{}", "?")
                    if st.reserves:
                        for args in st.rows:
                            assert reserved_all(args, conn.execute(sql, args).fetchall())
                    elif st.rows:
                        conn.executemany(sql, st.rows)
                conn.execute("COMMIT")
        conn.close()

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    if failures:
        raise failures[0]
    return orders / elapsed


def floor_per_s(database_url: str, orders: int, concurrency: int, payload: str,
                shop: Catalogue) -> float:
    if database_url.startswith("postgres"):
        return load.run(postgres_floor(database_url, orders, concurrency, payload, shop))
    path = database_url.split("sqlite:///", 1)[1]
    return sqlite_floor(path, orders, concurrency, payload, shop)


def lean_floor_per_s(database_url: str, orders: int, concurrency: int, payload: str,
                     shop: Catalogue) -> float | None:
    """The floor in one statement per transaction; None where it is not measured (SQLite,
    whose statements cost no round trip; a gift in slices)."""
    if not database_url.startswith("postgres") or shop.sliced is not None:
        return None
    return load.run(postgres_lean_floor(database_url, orders, concurrency, payload, shop))
