"""API keys and HTTP idempotency records."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ordnung.migrations.raw import run_statements

if TYPE_CHECKING:
    from ordnung.core.persistence.database import Database

ID = "2026-11-22T01:00:00:000000"
DESCRIPTION = "api keys and http idempotency"

STATEMENTS = [
    # only a hash of the secret is stored; the key is shown once at creation
    """CREATE TABLE api_keys (
        id VARCHAR(40) PRIMARY KEY,
        secret_hash VARCHAR(64) NOT NULL,
        kind VARCHAR(16) NOT NULL,
        name TEXT NOT NULL DEFAULT '',
        scopes TEXT NOT NULL DEFAULT '',
        channel VARCHAR(64),
        customer_id VARCHAR(40),
        created_at TIMESTAMPTZ NOT NULL,
        revoked_at TIMESTAMPTZ,
        CONSTRAINT api_keys_kind CHECK (kind IN ('admin', 'storefront', 'customer'))
    )""",
    """CREATE TABLE http_idempotency (
        key VARCHAR(300) PRIMARY KEY,
        fingerprint VARCHAR(64) NOT NULL,
        state VARCHAR(16) NOT NULL,
        status INTEGER NOT NULL DEFAULT 0,
        content_type VARCHAR(100) NOT NULL DEFAULT '',
        body TEXT NOT NULL DEFAULT '',
        created_at TIMESTAMPTZ NOT NULL
    )""",
]


async def apply(db: Database) -> None:
    """Run this migration's statements on ``db`` (inside the caller's transaction)."""
    await run_statements(db, STATEMENTS)

