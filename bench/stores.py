"""The growth scenario's direct line to the database: read the template orders' rows, write
bulk batches, bring stock levels in line with the seeded ledger, refresh the planner's
statistics, and show query plans. One class per driver, the same methods."""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any, Protocol

import asyncpg

from bench.bulk import ORDER_TABLES, insert_sql

Batch = dict[str, tuple[list[str], list[tuple[Any, ...]]]]

#: stock levels equal to the sum of their ledger movements (the seed adds movements only)
LEVELS_FROM_LEDGER = (
    "UPDATE stock_levels SET on_hand = m.oh, reserved = m.rs FROM ("
    "SELECT sku, location_id, SUM(on_hand_delta) AS oh, SUM(reserved_delta) AS rs "
    "FROM stock_movements GROUP BY sku, location_id) AS m "
    "WHERE m.sku = stock_levels.sku AND m.location_id = stock_levels.location_id")


class Store(Protocol):
    async def rows(self, table: str, column: str,
                   keys: Sequence[str]) -> list[dict[str, Any]]: ...

    async def write(self, batch: Batch) -> None: ...

    async def finish(self) -> None: ...

    async def values(self, sql: str) -> list[Any]: ...

    async def explain(self, sql: str, *args: Any) -> str: ...

    async def close(self) -> None: ...


async def template_rows(store: Store, order_id: str,
                        customer_id: str | None) -> dict[str, list[dict[str, Any]]]:
    """Every row a template order wrote, per table (its customer's row included)."""
    found = {table: await store.rows(table, column, [order_id])
             for table, column in ORDER_TABLES.items()}
    if customer_id is not None:
        found["customers"] = await store.rows("customers", "id", [customer_id])
    return found


class PostgresStore:
    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn

    @classmethod
    async def open(cls, url: str) -> PostgresStore:
        conn = await asyncpg.connect(url)
        await conn.execute("SET synchronous_commit = off")
        return cls(conn)

    async def rows(self, table: str, column: str, keys: Sequence[str]) -> list[dict[str, Any]]:
        found = await self.conn.fetch(f"SELECT * FROM {table} WHERE {column} = ANY($1)",
                                      list(keys))
        return [dict(r) for r in found]

    async def write(self, batch: Batch) -> None:
        async with self.conn.transaction():
            for table, (columns, records) in batch.items():
                await self.conn.copy_records_to_table(table, records=records, columns=columns)

    async def finish(self) -> None:
        await self.conn.execute(LEVELS_FROM_LEDGER)
        await self.conn.execute("VACUUM ANALYZE")

    async def values(self, sql: str) -> list[Any]:
        return [r[0] for r in await self.conn.fetch(sql)]

    async def explain(self, sql: str, *args: Any) -> str:
        numbered = sql
        for n in range(1, len(args) + 1):
            numbered = numbered.replace("?", f"${n}", 1)
        plan = await self.conn.fetch("EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) " + numbered, *args)
        return "\n".join(r[0] for r in plan)

    async def close(self) -> None:
        await self.conn.close()


class SqliteStore:
    """Synchronous underneath (nothing else runs while the server is stopped); syncing and
    foreign keys are off while seeding, as a bulk import does."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    @classmethod
    async def open(cls, url: str) -> SqliteStore:
        conn = sqlite3.connect(url.split("sqlite:///", 1)[1], isolation_level=None)
        conn.row_factory = sqlite3.Row
        for pragma in ("PRAGMA synchronous = OFF", "PRAGMA foreign_keys = OFF",
                       "PRAGMA cache_size = -262144", "PRAGMA temp_store = MEMORY"):
            conn.execute(pragma)
        return cls(conn)

    async def rows(self, table: str, column: str, keys: Sequence[str]) -> list[dict[str, Any]]:
        marks = ", ".join("?" for _ in keys)
        cursor = self.conn.execute(f"SELECT * FROM {table} WHERE {column} IN ({marks})",
                                   list(keys))
        return [dict(r) for r in cursor.fetchall()]

    async def write(self, batch: Batch) -> None:
        self.conn.execute("BEGIN")
        try:
            for table, (columns, records) in batch.items():
                self.conn.executemany(insert_sql(table, columns), records)
        except BaseException:
            self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    async def finish(self) -> None:
        self.conn.execute(LEVELS_FROM_LEDGER)
        self.conn.execute("ANALYZE")
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    async def values(self, sql: str) -> list[Any]:
        return [r[0] for r in self.conn.execute(sql).fetchall()]

    async def explain(self, sql: str, *args: Any) -> str:
        plan = self.conn.execute("EXPLAIN QUERY PLAN " + sql, args).fetchall()
        return "\n".join(f"{r[0]}|{r[1]}| {r[3]}" for r in plan)

    async def close(self) -> None:
        self.conn.close()


async def open_store(url: str) -> Store:
    if url.startswith("postgres"):
        return await PostgresStore.open(url)
    return await SqliteStore.open(url)
