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
from typing import Any

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine.base import Engine

from ordnung.migrations.raw import piccolo_forwards, run_statements

ID = "2026-11-30T03:41:00:000000"
VERSION = "1.38.0"
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


def _text(value: Any) -> str:
    return "'" + str(value).replace("'", "''") + "'"


def _moment(value: str) -> str:
    """A stored ISO timestamp as the literal both databases read (UTC, as piccolo
    writes them on SQLite)."""
    return _text(datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC))


async def _backfill(engine: Engine) -> None:
    last = ""
    while True:
        rows = await engine.run_ddl(
            "SELECT id, data FROM orders WHERE id > " + _text(last) + " AND "
            "(data LIKE '%\"shipments\":[{%' OR data LIKE '%\"returns\":[{%') "
            f"ORDER BY id LIMIT {BATCH}")
        if not rows:
            return
        for row in rows:
            order = json.loads(row["data"])
            updated = _moment(order["updated_at"])
            shipments = [f"({_text(s['id'])}, {_text(order['id'])}, "
                         f"{_text(s.get('status', 'pending'))}, {_text(s.get('carrier', ''))},"
                         f" {_moment(s['created_at'])}, {updated})"
                         for s in order.get("shipments", [])]
            returns = [f"({_text(r['id'])}, {_text(order['id'])}, "
                       f"{_text(r.get('status', 'requested'))}, {_moment(r['created_at'])}, "
                       f"{updated})" for r in order.get("returns", [])]
            if shipments:
                await engine.run_ddl("INSERT INTO order_shipments (id, order_id, status, "
                                     "carrier, created_at, updated_at) VALUES "
                                     + ", ".join(shipments))
            if returns:
                await engine.run_ddl("INSERT INTO order_returns (id, order_id, status, "
                                     "created_at, updated_at) VALUES " + ", ".join(returns))
        last = rows[-1]["id"]


async def apply(engine: Engine) -> None:
    """Run this migration's statements on ``engine`` (inside the caller's transaction)."""
    await run_statements(engine, STATEMENTS)
    await _backfill(engine)


async def forwards() -> MigrationManager:
    """Entry point for piccolo's own ``piccolo migrations forwards ordnung``."""
    return piccolo_forwards(ID, DESCRIPTION, apply)
