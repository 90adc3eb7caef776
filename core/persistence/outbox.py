"""The outbox as the background workers read it: events not yet turned into webhook
deliveries (``webhooks_at`` NULL) and events not yet published to brokers (``broker_at``
NULL), each marked once its worker is done with it. The reactions' side of the outbox
is the journal's (``journal.py``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ordnung.core.persistence.database import Database

_UNTOLD = "SELECT id, payload FROM outbox WHERE webhooks_at IS NULL ORDER BY id LIMIT {}<lock>"
_UNPUBLISHED = "SELECT id, payload FROM outbox WHERE broker_at IS NULL ORDER BY id LIMIT {}"
_MARK = "UPDATE outbox SET <column> = <now> WHERE id IN (<ids>)"


class OutboxStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        # a second webhook worker (whose lease ran out mid-round) skips rows being fanned
        # out rather than making deliveries of them under other ids
        self._untold = _UNTOLD.replace(
            "<lock>", " FOR UPDATE SKIP LOCKED" if db.is_postgres else "")
        mark = _MARK.replace("<now>", db.sql_now())
        self._mark_told = mark.replace("<column>", "webhooks_at")
        self._mark_published = mark.replace("<column>", "broker_at")

    async def untold(self, limit: int) -> list[dict[str, Any]]:
        """The oldest events webhooks are still to be told of (locked on PostgreSQL: call
        inside the transaction that marks them)."""
        return await self.db.fetch(self._untold, int(limit))

    async def mark_told(self, event_ids: Sequence[str]) -> None:
        await self._mark(self._mark_told, event_ids)

    async def unpublished(self, limit: int) -> list[dict[str, Any]]:
        """The oldest events not yet published to the event brokers."""
        return await self.db.fetch(_UNPUBLISHED, int(limit))

    async def mark_published(self, event_ids: Sequence[str]) -> None:
        await self._mark(self._mark_published, event_ids)

    async def _mark(self, statement: str, event_ids: Sequence[str]) -> None:
        ids = list(event_ids)
        await self.db.run(statement.replace("<ids>", ", ".join("{}" for _ in ids)), *ids)
