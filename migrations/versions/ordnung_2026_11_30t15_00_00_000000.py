"""Generations: shared counters that tell a worker whether what it kept is still current.

``ordnung.core.persistence.generations``: a credential or a variant a worker keeps is used
only while its counter is where it was when the copy was read; every write that could make
such a copy wrong raises the counter in its own transaction. No rows are needed up front:
a missing counter reads as 0 and the first raise inserts it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ordnung.migrations.raw import run_statements

if TYPE_CHECKING:
    from ordnung.core.persistence.database import Database

ID = "2026-11-30T15:00:00:000000"
DESCRIPTION = "generations: counters raised by writes that make kept credentials or variants stale"

STATEMENTS = [
    """CREATE TABLE generations (
        name VARCHAR(32) PRIMARY KEY,
        value BIGINT NOT NULL
    )""",
]


async def apply(db: Database) -> None:
    """Run this migration's statements on ``db`` (inside the caller's transaction)."""
    await run_statements(db, STATEMENTS)
