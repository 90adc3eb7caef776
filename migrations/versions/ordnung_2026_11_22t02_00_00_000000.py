"""Plugin records: small per-plugin storage with atomic counters (coupon usage, velocity)."""

from __future__ import annotations

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine.base import Engine

from ordnung.migrations.raw import piccolo_forwards, run_statements

ID = "2026-11-22T02:00:00:000000"
VERSION = "1.38.0"
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


async def apply(engine: Engine) -> None:
    """Run this migration's statements on ``engine`` (inside the caller's transaction)."""
    await run_statements(engine, STATEMENTS)


async def forwards() -> MigrationManager:
    """Entry point for piccolo's own ``piccolo migrations forwards ordnung``."""
    return piccolo_forwards(ID, DESCRIPTION, apply)
