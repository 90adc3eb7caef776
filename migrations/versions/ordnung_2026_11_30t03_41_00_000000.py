"""Look-up tables of shipments and returns, for the lists across orders.

Shipments and returns stay in their orders' documents; ``order_shipments`` and
``order_returns`` hold one row per part (id, order, status, carrier, created) so that
``GET /shipments`` and ``GET /returns`` can filter and page without reading every
order (see ``ordnung.core.persistence.order_parts``). The rows of the parts of
existing orders are filled in here from their documents.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ordnung.migrations.raw import run_statements

if TYPE_CHECKING:
    from ordnung.core.persistence.database import Database

ID = "2026-11-30T03:41:00:000000"
DESCRIPTION = "shipments and returns look-up tables for the lists across orders"

STATEMENTS = [
    """CREATE TABLE order_shipments (
        id VARCHAR(40) PRIMARY KEY,
        order_id VARCHAR(40) NOT NULL,
        status VARCHAR(32) NOT NULL,
        carrier VARCHAR(64) NOT NULL DEFAULT '',
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL
    )""",
    "CREATE INDEX order_shipments_order ON order_shipments (order_id)",
    """CREATE TABLE order_returns (
        id VARCHAR(40) PRIMARY KEY,
        order_id VARCHAR(40) NOT NULL,
        status VARCHAR(32) NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL
    )""",
    "CREATE INDEX order_returns_order ON order_returns (order_id)",
]

#: orders read per batch while filling in the rows of existing parts
BATCH = 500


_ORDERS_WITH_PARTS = (
    "SELECT id, data FROM orders WHERE id > {} AND "
    "(data LIKE '%\"shipments\":[{%' OR data LIKE '%\"returns\":[{%') ORDER BY id LIMIT {}")
_SHIPMENT_COLUMNS = ("id", "order_id", "status", "carrier", "created_at", "updated_at")
_RETURN_COLUMNS = ("id", "order_id", "status", "created_at", "updated_at")


def _moment(value: str) -> datetime:
    """A timestamp of an order document (ISO text) as the time it stands for, in UTC."""
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


async def _backfill(db: Database) -> None:
    last = ""
    while True:
        rows = await db.run(_ORDERS_WITH_PARTS, last, BATCH)
        if not rows:
            return
        for row in rows:
            order = json.loads(row["data"])
            updated = _moment(order["updated_at"])
            await db.insert_rows("order_shipments", _SHIPMENT_COLUMNS, [
                (s["id"], order["id"], s.get("status", "pending"), s.get("carrier", ""),
                 _moment(s["created_at"]), updated) for s in order.get("shipments", [])])
            await db.insert_rows("order_returns", _RETURN_COLUMNS, [
                (r["id"], order["id"], r.get("status", "requested"), _moment(r["created_at"]),
                 updated) for r in order.get("returns", [])])
        last = rows[-1]["id"]


async def apply(db: Database) -> None:
    """Run this migration's statements on ``db`` (inside the caller's transaction)."""
    await run_statements(db, STATEMENTS)
    await _backfill(db)

