"""Outbox rows get ``broker_at``: NULL while the broker worker has not yet published the
event to the installed brokers (NATS ...). Rows written before this migration are marked
done, so installing a broker never replays history.

Webhook endpoints get ``shape``: ``staff`` (what existing endpoints received) or
``customer`` (the customer-safe view of orders and their parts).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ordnung.migrations.raw import run_statements

if TYPE_CHECKING:
    from ordnung.core.persistence.database import Database

ID = "2026-11-30T05:00:00:000000"
DESCRIPTION = "outbox publish mark for the broker worker; webhook payload shape"

STATEMENTS = [
    "ALTER TABLE outbox ADD COLUMN broker_at TIMESTAMPTZ",
    "UPDATE outbox SET broker_at = created_at",
    "CREATE INDEX outbox_broker_pending ON outbox (id) WHERE broker_at IS NULL",
    "ALTER TABLE webhook_endpoints ADD COLUMN shape VARCHAR(16) NOT NULL DEFAULT 'staff'",
]


async def apply(db: Database) -> None:
    """Run this migration's statements on ``db`` (inside the caller's transaction)."""
    await run_statements(db, STATEMENTS)

