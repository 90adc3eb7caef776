"""Carts: the hour of the last change instead of its moment, for housekeeping's indexes.

A cart is saved at every step of a checkout. With its exact last change in an indexed
column, each save wrote that column's two index entries again. Its row now holds the
start of the hour of its last change (``active_at``), which a save writes only when the
hour changes (``ordnung.core.persistence.carts``); the document keeps the moment. A
row's old ``updated_at`` is at or after the start of its hour, so it serves as is:
housekeeping keeps a cart one hour past its retention either way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ordnung.migrations.raw import run_statements

if TYPE_CHECKING:
    from ordnung.core.persistence.database import Database

ID = "2026-12-01T00:00:00:000000"
DESCRIPTION = "carts: active_at, the hour of the last change, replaces updated_at"

STATEMENTS = [
    "DROP INDEX carts_guest_updated",
    "DROP INDEX carts_status_updated",
    "ALTER TABLE carts RENAME COLUMN updated_at TO active_at",
    "CREATE INDEX carts_guest_active ON carts (active_at) WHERE customer_id IS NULL",
    "CREATE INDEX carts_status_active ON carts (status, active_at)",
]


async def apply(db: Database) -> None:
    """Run this migration's statements on ``db`` (inside the caller's transaction)."""
    await run_statements(db, STATEMENTS)
