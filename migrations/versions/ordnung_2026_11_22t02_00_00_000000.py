"""Plugin records: small per-plugin storage with atomic counters (coupon usage, velocity)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ordnung.migrations.raw import run_statements

if TYPE_CHECKING:
    from ordnung.core.persistence.database import Database

ID = "2026-11-22T02:00:00:000000"
DESCRIPTION = "plugin records"

STATEMENTS = [
    """CREATE TABLE plugin_records (
        plugin VARCHAR(64) NOT NULL,
        kind VARCHAR(64) NOT NULL,
        key VARCHAR(200) NOT NULL,
        data TEXT NOT NULL DEFAULT '{}',
        counter BIGINT NOT NULL DEFAULT 0,
        updated_at TIMESTAMPTZ NOT NULL,
        PRIMARY KEY (plugin, kind, key),
        CONSTRAINT plugin_records_counter CHECK (counter >= 0)
    )""",
]


async def apply(db: Database) -> None:
    """Run this migration's statements on ``db`` (inside the caller's transaction)."""
    await run_statements(db, STATEMENTS)

