"""Figures the metrics endpoint reads from the database at scrape time: the same from
every worker process, unlike the counters each process keeps."""

from __future__ import annotations

from datetime import datetime

from ordnung.core.persistence.database import Database

_BACKLOG = ("SELECT COUNT(*) AS n, MIN(created_at) AS oldest FROM outbox "
            "WHERE dispatched_at IS NULL")
_OPEN_FAILURES = "SELECT COUNT(*) AS n FROM reaction_failures WHERE resolved_at IS NULL"


class MetricsStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def backlog(self) -> tuple[int, datetime | None]:
        """How many events wait for their reactions, and when the oldest was written."""
        row = await self.db.fetch_one(_BACKLOG)
        if row is None:  # an aggregate answers one row; this is for the type checker
            return 0, None
        oldest = row["oldest"]
        if isinstance(oldest, str):  # SQLite hands back the stored text
            oldest = datetime.fromisoformat(oldest)
        return int(row["n"]), oldest

    async def open_failures(self) -> int:
        """Failed plugin reactions not yet resolved."""
        row = await self.db.fetch_one(_OPEN_FAILURES)
        return int(row["n"]) if row else 0
