"""Failed plugin reactions: listed for staff, retried on request.

A reaction (``ordnung_after_transition``, ``ordnung_on_event``...) runs after its change
committed; when it raises, the change stands and the failure is recorded and retried
with backoff by the background maintenance. Staff need to see what did not happen (a
confirmation e-mail, a channel update) and why, and to retry one at once after fixing
the cause, without waiting for the backoff.
"""

from __future__ import annotations

from typing import Any

from ordnung.core.dispatch import Dispatcher
from ordnung.core.domain.reactions import FailedReaction
from ordnung.core.errors import NotFound
from ordnung.core.persistence.journal import Journal


def _reaction(row: dict[str, Any]) -> FailedReaction:
    return FailedReaction(
        id=row["id"], event_id=row["outbox_id"], event_kind=row.get("kind"),
        order_id=row.get("order_id"), plugin=row["plugin"], hook=row["hook"],
        attempts=row["attempts"], last_error=row["last_error"],
        next_attempt_at=row["next_attempt_at"], resolved_at=row["resolved_at"],
        created_at=row["created_at"])


class ReactionService:
    def __init__(self, journal: Journal, dispatcher: Dispatcher) -> None:
        self.journal = journal
        self.dispatcher = dispatcher

    async def failed(self, *, resolved: bool = False, after: str | None = None,
                     limit: int = 50) -> list[FailedReaction]:
        """Open failures (or, with ``resolved``, those that later succeeded)."""
        rows = await self.journal.failures(resolved=resolved, after=after, limit=limit)
        return [_reaction(r) for r in rows]

    async def get(self, failure_id: str) -> FailedReaction:
        row = await self.journal.failure(failure_id)
        if row is None:
            raise NotFound("failed reaction", failure_id)
        event = await self.journal.outbox_event(row["outbox_id"])
        row["kind"] = event.kind if event is not None else None
        row["order_id"] = event.order_id if event is not None else None
        return _reaction(row)

    async def retry(self, failure_id: str) -> FailedReaction:
        """Run the reaction again now (unless it is resolved already); the answer says
        whether it is resolved, or the new error and the next automatic attempt."""
        row = await self.journal.failure(failure_id)
        if row is None:
            raise NotFound("failed reaction", failure_id)
        if row["resolved_at"] is None:
            await self.dispatcher.retry(row)
        return await self.get(failure_id)
