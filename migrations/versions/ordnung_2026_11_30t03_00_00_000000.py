"""Reconciliation: job leases, and the orders with an authorization in flight.

- ``job_leases``: one row per background job that must run in one process at a
  time (the reconciliation of interrupted placements). The holder renews its lease;
  every lease decision is taken in SQL on the database's clock.
- ``orders.authorizing_since``: since when (on the database's clock) the order has
  had an operation in flight on a payment the gateway has not answered yet
  (``pending``), NULL when it has none. The reconciliation job finds the placements
  a crashed process left behind through its partial index instead of reading every
  order document. Orders in that state when this migration runs are found too
  (their last update is when the authorization was sent).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ordnung.migrations.raw import run_statements

if TYPE_CHECKING:
    from ordnung.core.persistence.database import Database

ID = "2026-11-30T03:00:00:000000"
DESCRIPTION = "job leases; orders with an authorization in flight"

STATEMENTS = [
    """CREATE TABLE job_leases (
        name VARCHAR(64) PRIMARY KEY,
        owner VARCHAR(40) NOT NULL,
        lease_until TIMESTAMPTZ NOT NULL
    )""",
    "ALTER TABLE orders ADD COLUMN authorizing_since TIMESTAMPTZ",
    "CREATE INDEX orders_authorizing ON orders (authorizing_since) "
    "WHERE authorizing_since IS NOT NULL",
    """UPDATE orders SET authorizing_since = updated_at
       WHERE data LIKE '%"status":"pending"%' AND data LIKE '%"in_flight":"authorize"%'""",
]


async def apply(db: Database) -> None:
    """Run this migration's statements on ``db`` (inside the caller's transaction)."""
    await run_statements(db, STATEMENTS)

