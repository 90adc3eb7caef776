"""Webhook endpoints, their deliveries and every delivery attempt.

Outbox rows get ``webhooks_at``: NULL while the webhook worker has not yet turned the
event into deliveries (one per matching endpoint). Rows written before this migration
are marked done, so registering an endpoint never replays history.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ordnung.migrations.raw import run_statements

if TYPE_CHECKING:
    from ordnung.core.persistence.database import Database

ID = "2026-11-30T04:30:00:000000"
DESCRIPTION = "webhook endpoints, deliveries and attempts; outbox fan-out mark"

STATEMENTS = [
    "ALTER TABLE outbox ADD COLUMN webhooks_at TIMESTAMPTZ",
    "UPDATE outbox SET webhooks_at = created_at",
    "CREATE INDEX outbox_webhooks_pending ON outbox (id) WHERE webhooks_at IS NULL",
    """CREATE TABLE webhook_endpoints (
        id VARCHAR(40) PRIMARY KEY,
        url TEXT NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        event_types TEXT NOT NULL,
        channels TEXT NOT NULL,
        enabled BOOLEAN NOT NULL,
        disabled_reason TEXT,
        secrets TEXT NOT NULL,
        failing_since TIMESTAMPTZ,
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL
    )""",
    """CREATE TABLE webhook_deliveries (
        id VARCHAR(40) PRIMARY KEY,
        endpoint_id VARCHAR(40) NOT NULL,
        event_id VARCHAR(40) NOT NULL,
        type VARCHAR(64) NOT NULL,
        payload TEXT NOT NULL,
        status VARCHAR(16) NOT NULL,
        attempts INTEGER NOT NULL,
        next_attempt_at TIMESTAMPTZ NOT NULL,
        retry_from TIMESTAMPTZ NOT NULL,
        last_status INTEGER,
        last_error TEXT,
        created_at TIMESTAMPTZ NOT NULL,
        delivered_at TIMESTAMPTZ
    )""",
    "CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at)",
    "CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, status, id)",
    """CREATE TABLE webhook_attempts (
        id VARCHAR(40) PRIMARY KEY,
        delivery_id VARCHAR(40) NOT NULL,
        endpoint_id VARCHAR(40) NOT NULL,
        at TIMESTAMPTZ NOT NULL,
        status_code INTEGER,
        latency_ms INTEGER NOT NULL,
        answer TEXT NOT NULL,
        error TEXT
    )""",
    "CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id, id)",
]


async def apply(db: Database) -> None:
    """Run this migration's statements on ``db`` (inside the caller's transaction)."""
    await run_statements(db, STATEMENTS)

