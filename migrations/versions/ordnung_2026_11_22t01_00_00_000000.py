"""API keys and HTTP idempotency records."""

from __future__ import annotations

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine.base import Engine

from ordnung.migrations.raw import piccolo_forwards, run_statements

ID = "2026-11-22T01:00:00:000000"
VERSION = "1.38.0"
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


async def apply(engine: Engine) -> None:
    """Run this migration's statements on ``engine`` (inside the caller's transaction)."""
    await run_statements(engine, STATEMENTS)


async def forwards() -> MigrationManager:
    """Entry point for piccolo's own ``piccolo migrations forwards ordnung``."""
    return piccolo_forwards(ID, DESCRIPTION, apply)
