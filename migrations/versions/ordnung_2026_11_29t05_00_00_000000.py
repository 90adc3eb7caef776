"""One table for idempotency: request claims with a lease, and the engine's own results.

Until now the HTTP layer kept its records in ``http_idempotency`` and the
engine its placement results in ``idempotency_keys``. Both now live in
``idempotency_records``, owned by the engine's idempotency service:

- ``request:<caller>:<key>`` rows are claims of an adapter's request (REST, GraphQL):
  ``pending`` while it runs, held by ``owner`` until ``lease_until`` (on the
  database's clock, renewed while the request runs); ``effect_by`` names the claim
  whose writes first committed; ``done`` rows keep the answer to replay.
- ``place:<key>`` rows are the engine's placement results (the order id), written
  in the placement's own transaction.

Finished records are copied over. Pending HTTP records are not: they belonged to
requests cut off by the upgrade, which a repeat re-runs through the engine.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ordnung.migrations.raw import run_statements

if TYPE_CHECKING:
    from ordnung.core.persistence.database import Database

ID = "2026-11-29T05:00:00:000000"
DESCRIPTION = "idempotency records: one table, leases on the database clock"

STATEMENTS = [
    """CREATE TABLE idempotency_records (
        key VARCHAR(400) PRIMARY KEY,
        fingerprint VARCHAR(64) NOT NULL,
        state VARCHAR(16) NOT NULL,
        owner VARCHAR(40) NOT NULL DEFAULT '',
        lease_until TIMESTAMPTZ,
        effect_by VARCHAR(40) NOT NULL DEFAULT '',
        status INTEGER NOT NULL DEFAULT 0,
        headers TEXT NOT NULL DEFAULT '',
        result TEXT NOT NULL DEFAULT '',
        created_at TIMESTAMPTZ NOT NULL,
        CONSTRAINT idempotency_records_state CHECK (state IN ('pending', 'done'))
    )""",
    """INSERT INTO idempotency_records (key, fingerprint, state, effect_by, result, created_at)
       SELECT key, fingerprint, 'done', 'engine', result, created_at FROM idempotency_keys""",
    """INSERT INTO idempotency_records
           (key, fingerprint, state, effect_by, status, headers, result, created_at)
       SELECT 'request:' || key, fingerprint, 'done', 'migrated', status,
              '[["content-type", "' || content_type || '"]]', body, created_at
       FROM http_idempotency WHERE state = 'done'""",
    "DROP TABLE idempotency_keys",
    "DROP TABLE http_idempotency",
]


async def apply(db: Database) -> None:
    """Run this migration's statements on ``db`` (inside the caller's transaction)."""
    await run_statements(db, STATEMENTS)

