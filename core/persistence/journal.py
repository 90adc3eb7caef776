"""The timeline and the transactional outbox.

Events are written with the change they describe, in the same transaction;
the outbox row for each event is what after-commit reactions are driven
from. Rows are written already claimed by the writing process for a short
lease, so the process that committed delivers them at once and a sweeper
elsewhere only takes what a crashed or slow process left behind. Leases are
set and judged on the database's clock, in SQL.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

import structlog

from ordnung.core.domain.common import new_id, utcnow
from ordnung.core.domain.events import Event
from ordnung.core.persistence.codec import decode, encode
from ordnung.core.persistence.database import Database
from ordnung.core.persistence.tables import EventRow, OutboxRow, ReactionFailureRow

LEASE = timedelta(seconds=30)
#: how long delivered events wait to be marked, so that one UPDATE marks many
MARK_DELAY_S = 0.05
#: most ids marked by one UPDATE
MARK_CHUNK = 500

log = structlog.get_logger("ordnung.journal")


class Journal:
    def __init__(self, db: Database, *,
                 reacts_to: Callable[[Event], bool] = lambda _: True,
                 tells_webhooks: Callable[[Event], bool] = lambda _: False,
                 tells_brokers: bool = False) -> None:
        self.db = db
        self._delivered: list[str] = []
        self._marker: asyncio.Task[None] | None = None
        #: which events have after-commit reactions (the dispatcher's rule); only those
        #: get an outbox row, the others have nothing to deliver
        self.reacts_to = reacts_to
        #: which events webhooks are told of: those get an outbox row too, left for the
        #: webhook worker (``webhooks_at`` NULL) and, when no plugin reacts, written
        #: already dispatched so that the sweeper never takes them
        self.tells_webhooks = tells_webhooks
        #: whether event brokers are installed: then every event gets an outbox row
        #: left for the broker worker (``broker_at`` NULL)
        self.tells_brokers = tells_brokers

    async def append(self, events: Sequence[Event]) -> None:
        """Write events and the outbox rows of those with reactions; call inside the
        change's transaction."""
        if not events:
            return
        now = utcnow()
        payloads = [encode(e) for e in events]
        await self.db.insert_rows(
            "events", ("id", "order_id", "seq", "kind", "actor", "data", "at"),
            [(e.id, e.order_id, e.seq, e.kind, e.actor, data, e.at)
             for e, data in zip(events, payloads, strict=True)])
        rows = []
        for e, data in zip(events, payloads, strict=True):
            reacts, tells = self.reacts_to(e), self.tells_webhooks(e)
            if reacts or tells or self.tells_brokers:
                rows.append((e.id, e.kind, e.order_id, data, now, None if reacts else now, 1,
                             None if tells else now, None if self.tells_brokers else now))
        await self.db.insert_rows(
            "outbox", ("id", "kind", "order_id", "payload", "created_at", "dispatched_at",
                       "attempts", "webhooks_at", "broker_at"), rows,
            computed={"claimed_until": self.db.sql_now(LEASE.total_seconds())})

    async def timeline(self, order_id: str) -> list[Event]:
        rows = await EventRow.select(EventRow.data).where(EventRow.order_id == order_id).order_by(
            EventRow.seq).order_by(EventRow.id).run()
        return [decode(r["data"], Event) for r in rows]

    async def events(self, kind: str | None = None, after: str | None = None,
                     limit: int = 100) -> list[Event]:
        query = EventRow.select(EventRow.data).order_by(EventRow.id).limit(limit)
        if kind:
            query = query.where(EventRow.kind == kind)
        if after:
            query = query.where(EventRow.id > after)
        return [decode(r["data"], Event) for r in await query.run()]

    # -- outbox -------------------------------------------------------------------
    async def mark_dispatched(self, event_ids: Sequence[str]) -> None:
        ids = list(event_ids)
        for start in range(0, len(ids), MARK_CHUNK):
            chunk = ids[start:start + MARK_CHUNK]
            await self.db.run(
                f"UPDATE outbox SET dispatched_at = {self.db.sql_now()} WHERE id IN ("
                + ", ".join("{}" for _ in chunk) + ")", *chunk)

    def mark_dispatched_soon(self, event_ids: Sequence[str]) -> None:
        """Mark delivered events within ``MARK_DELAY_S``, together with whatever else this
        process delivers meanwhile: under load one UPDATE marks the events of many
        orders. Until marked, an event stays claimed by its lease, so no sweeper takes
        it; if the process dies first, the sweeper delivers it again after the lease
        (reactions are at-least-once either way)."""
        self._delivered.extend(event_ids)
        if self._marker is None or self._marker.done():
            self._marker = asyncio.get_running_loop().create_task(self._mark_later())

    async def _mark_later(self) -> None:
        await asyncio.sleep(MARK_DELAY_S)
        try:
            await self.flush_marks()
        except Exception as exc:  # the rows stay leased; the sweeper redelivers later
            log.warning("marking delivered events failed", error=repr(exc))

    async def flush_marks(self) -> None:
        """Write the pending delivered marks now (before counting, sweeping, stopping)."""
        ids, self._delivered = self._delivered, []
        await self.mark_dispatched(ids)

    async def close(self) -> None:
        """Flush the pending marks and stop the timer (the engine is stopping)."""
        marker, self._marker = self._marker, None
        if marker is not None and not marker.done():
            marker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await marker
        await self.flush_marks()

    async def claim_stale(self, limit: int = 100) -> list[Event]:
        """Take undelivered events whose lease expired (their writer died or stalled).
        The lease is judged and renewed on the database's clock, in the statement: a
        sweeper whose own clock runs ahead must not take what a live writer holds."""
        await self.flush_marks()
        lock = " FOR UPDATE SKIP LOCKED" if self.db.is_postgres else ""
        async with self.db.transaction():
            rows = await self.db.run(
                f"UPDATE outbox SET claimed_until = {self.db.sql_now(LEASE.total_seconds())}, "
                "attempts = attempts + 1 WHERE id IN (SELECT id FROM outbox "
                "WHERE dispatched_at IS NULL AND (claimed_until IS NULL OR claimed_until < "
                f"{self.db.sql_now()}) ORDER BY id LIMIT {{}}{lock}) RETURNING id, payload",
                int(limit))
        return [decode(r["payload"], Event) for r in sorted(rows, key=lambda r: r["id"])]

    async def pending_count(self) -> int:
        await self.flush_marks()
        return int(await OutboxRow.count().where(OutboxRow.dispatched_at.is_null()).run())

    async def outbox_event(self, event_id: str) -> Event | None:
        rows = await OutboxRow.select(OutboxRow.payload).where(OutboxRow.id == event_id).run()
        return decode(rows[0]["payload"], Event) if rows else None

    # -- failed reactions ---------------------------------------------------------
    async def record_failure(self, event_id: str, hook: str, plugin: str, error: str) -> None:
        now = utcnow()
        existing = await ReactionFailureRow.select(
            ReactionFailureRow.id, ReactionFailureRow.attempts).where(
            (ReactionFailureRow.outbox_id == event_id) & (ReactionFailureRow.hook == hook)
            & (ReactionFailureRow.plugin == plugin)).run()
        if existing:
            attempts = existing[0]["attempts"] + 1
            await ReactionFailureRow.update({
                ReactionFailureRow.attempts: attempts,
                ReactionFailureRow.last_error: error[:2000],
                ReactionFailureRow.next_attempt_at: now + backoff(attempts),
            }).where(ReactionFailureRow.id == existing[0]["id"]).run()
            return
        await ReactionFailureRow.insert(ReactionFailureRow(
            id=new_id("rf"), outbox_id=event_id, hook=hook, plugin=plugin, attempts=1,
            last_error=error[:2000], next_attempt_at=now + backoff(1), resolved_at=None,
            created_at=now)).run()

    async def due_failures(self, now: datetime | None = None,
                           limit: int = 100) -> list[dict[str, Any]]:
        now = now or utcnow()
        return list(await ReactionFailureRow.select().where(
            ReactionFailureRow.resolved_at.is_null()
            & (ReactionFailureRow.next_attempt_at <= now)
        ).order_by(ReactionFailureRow.next_attempt_at).limit(limit).run())

    async def open_failures(self) -> list[dict[str, Any]]:
        return list(await ReactionFailureRow.select().where(
            ReactionFailureRow.resolved_at.is_null()).order_by(ReactionFailureRow.id).run())

    async def failures(self, *, resolved: bool, after: str | None = None,
                       limit: int = 50) -> list[dict[str, Any]]:
        """One page of failed reactions (open or resolved), by id, each with its event's
        kind and order (``kind``, ``order_id``), for staff to see what did not happen."""
        query = ReactionFailureRow.select().where(
            ReactionFailureRow.resolved_at.is_not_null() if resolved
            else ReactionFailureRow.resolved_at.is_null())
        if after is not None:
            query = query.where(ReactionFailureRow.id > after)
        rows = list(await query.order_by(ReactionFailureRow.id).limit(limit).run())
        ids = sorted({r["outbox_id"] for r in rows})
        events = {e["id"]: e for e in await OutboxRow.select(
            OutboxRow.id, OutboxRow.kind, OutboxRow.order_id).where(
            OutboxRow.id.is_in(ids)).run()} if ids else {}
        for row in rows:
            event = events.get(row["outbox_id"], {})
            row["kind"], row["order_id"] = event.get("kind"), event.get("order_id")
        return rows

    async def failure(self, failure_id: str) -> dict[str, Any] | None:
        rows = await ReactionFailureRow.select().where(ReactionFailureRow.id == failure_id).run()
        return rows[0] if rows else None

    async def resolve_failure(self, failure_id: str) -> None:
        await ReactionFailureRow.update({ReactionFailureRow.resolved_at: utcnow()}).where(
            ReactionFailureRow.id == failure_id).run()


def backoff(attempts: int) -> timedelta:
    """Exponential backoff for failed reactions: 2s, 4s, 8s ... capped at one hour."""
    return timedelta(seconds=min(2 ** attempts, 3600))


def event(kind: str, *, order_id: str | None = None, seq: int = 0, machine: str | None = None,
          entity_id: str = "", from_state: str | None = None, to_state: str | None = None,
          transition: str | None = None, actor: str = "system",
          data: dict[str, Any] | None = None, at: datetime | None = None) -> Event:
    return Event(id=new_id("ev"), kind=kind, order_id=order_id, seq=seq, machine=machine,
                 entity_id=entity_id, from_state=from_state, to_state=to_state,
                 transition=transition, actor=actor, data=data or {}, at=at or utcnow())
