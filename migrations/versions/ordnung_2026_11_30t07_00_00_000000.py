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

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine.base import Engine

from ordnung.migrations.raw import piccolo_forwards, run_statements

ID = "2026-11-30T07:00:00:000000"
VERSION = "1.38.0"
DESCRIPTION = "order list indexes: status and channel, newest first"

STATEMENTS = [
    "CREATE INDEX orders_status_id ON orders (status, id)",
    "CREATE INDEX orders_channel_id ON orders (channel, id)",
]


async def apply(engine: Engine) -> None:
    """Run this migration's statements on ``engine`` (inside the caller's transaction)."""
    await run_statements(engine, STATEMENTS)


async def forwards() -> MigrationManager:
    """Entry point for piccolo's own ``piccolo migrations forwards ordnung``."""
    return piccolo_forwards(ID, DESCRIPTION, apply)
