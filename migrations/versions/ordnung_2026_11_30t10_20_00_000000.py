"""The fulfilment queue's index, so a page costs the same however long the backlog.

The queue is ordered by priority (highest first), then by id (oldest first), over the
states that allow fulfilment. ``orders_status (status, priority)`` found the rows of
those states but not in that order: every order of the backlog was read and sorted for
each page. ``(status, priority DESC, id)`` hands each state's rows over in the queue's
order, so each state's part of a page reads about the page's own rows (the query merges
the states' parts: ``ordnung.core.persistence.orders``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ordnung.migrations.raw import run_statements

if TYPE_CHECKING:
    from ordnung.core.persistence.database import Database

ID = "2026-11-30T10:20:00:000000"
DESCRIPTION = "fulfilment queue index: status, priority (highest first), id"

STATEMENTS = [
    "CREATE INDEX orders_queue ON orders (status, priority DESC, id)",
]


async def apply(db: Database) -> None:
    """Run this migration's statements on ``db`` (inside the caller's transaction)."""
    await run_statements(db, STATEMENTS)
