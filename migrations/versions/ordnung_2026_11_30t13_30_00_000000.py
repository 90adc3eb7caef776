"""Indexes for the housekeeping pass, so that a sweep reads the rows it deletes, not the table.

Rate-limit counters, Idempotency-Key records, customer sessions, one-time account tokens,
customer tokens issued by staff and carts are kept only for a while; the housekeeping pass
(``ordnung.core.services.housekeeping``) deletes them in bounded batches by the time they
ran out or were last changed. Each delete finds its rows through one of these indexes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ordnung.migrations.raw import run_statements

if TYPE_CHECKING:
    from ordnung.core.persistence.database import Database

ID = "2026-11-30T13:30:00:000000"
DESCRIPTION = "housekeeping indexes: expiries and last changes of short-lived rows"

STATEMENTS = [
    "CREATE INDEX rate_limits_expires ON rate_limits (expires_at)",
    "CREATE INDEX idempotency_records_created ON idempotency_records (created_at)",
    "CREATE INDEX customer_sessions_refresh_expires ON customer_sessions (refresh_expires_at)",
    "CREATE INDEX customer_sessions_revoked ON customer_sessions (revoked_at) "
    "WHERE revoked_at IS NOT NULL",
    "CREATE INDEX account_tokens_expires ON account_tokens (expires_at)",
    "CREATE INDEX api_keys_expires ON api_keys (kind, expires_at) "
    "WHERE expires_at IS NOT NULL",
    "CREATE INDEX carts_guest_updated ON carts (updated_at) WHERE customer_id IS NULL",
    "CREATE INDEX carts_status_updated ON carts (status, updated_at)",
]


async def apply(db: Database) -> None:
    """Run this migration's statements on ``db`` (inside the caller's transaction)."""
    await run_statements(db, STATEMENTS)
