"""Drop ``orders_status (status, priority)``: ``orders_queue (status, priority DESC,
id)`` begins with the same columns and serves every read that used it (the fulfilment
queue, a count or a scan by status), so it only cost every order's insert and every
status change one more index entry to write."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ordnung.migrations.raw import run_statements

if TYPE_CHECKING:
    from ordnung.core.persistence.database import Database

ID = "2026-11-30T13:00:00:000000"
DESCRIPTION = "drop orders_status, which orders_queue covers"

STATEMENTS = [
    "DROP INDEX orders_status",
]


async def apply(db: Database) -> None:
    """Run this migration's statements on ``db`` (inside the caller's transaction)."""
    await run_statements(db, STATEMENTS)
