"""Indexes for the staff's order list filters, so a page costs the same at a million orders
as at ten thousand.

The list is newest first and continues after the last id of the previous page. Filtered by
status, it was served by ``orders_status (status, priority)``: every order in the status
was fetched and sorted to find the newest fifty (on PostgreSQL a bitmap scan of all
cancelled orders, growing with the history). ``(status, id)`` and ``(channel, id)`` hand
the rows over in the list's order, so a page reads about its own fifty rows; a filter on
both walks one of them and checks the other column.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ordnung.migrations.raw import run_statements

if TYPE_CHECKING:
    from ordnung.core.persistence.database import Database

ID = "2026-11-30T07:00:00:000000"
DESCRIPTION = "order list indexes: status and channel, newest first"

STATEMENTS = [
    "CREATE INDEX orders_status_id ON orders (status, id)",
    "CREATE INDEX orders_channel_id ON orders (channel, id)",
]


async def apply(db: Database) -> None:
    """Run this migration's statements on ``db`` (inside the caller's transaction)."""
    await run_statements(db, STATEMENTS)
