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
from ordnung.core.persistence.database import Database, Statement, rows_statement, where
from ordnung.core.persistence.retrying import in_transaction

LEASE = timedelta(seconds=30)
#: how long delivered events wait to be marked, so that one UPDATE marks many
MARK_DELAY_S = 0.05
#: most ids marked by one UPDATE
MARK_CHUNK = 500

log = structlog.get_logger("ordnung.journal")

_EVENT_COLUMNS = ("id", "order_id", "seq", "kind", "actor", "data", "at")
_OUTBOX_COLUMNS = ("id", "kind", "order_id", "payload", "created_at", "dispatched_at",
                   "attempts", "webhooks_at", "broker_at")
_TIMELINE = "SELECT data FROM events WHERE order_id = {} ORDER BY seq, id"
#: the events page: filters are added in this order, then ``_EVENTS_PAGE``
_EVENTS = "SELECT data FROM events"
_EVENTS_PAGE = " ORDER BY id LIMIT {}"
_MARK_DISPATCHED = "UPDATE outbox SET dispatched_at = {now} WHERE id IN ({ids})"
_CLAIM_STALE = (
    "UPDATE outbox SET claimed_until = {later}, attempts = attempts + 1 "
    "WHERE id IN (SELECT id FROM outbox WHERE dispatched_at IS NULL "
    "AND (claimed_until IS NULL OR claimed_until < {now}) ORDER BY id LIMIT {{}}{lock}) "
    "RETURNING id, payload")
_PENDING = "SELECT COUNT(*) AS n FROM outbox WHERE dispatched_at IS NULL"
_OUTBOX_EVENT = "SELECT payload FROM outbox WHERE id = {}"
_FAILURE_COLUMNS = ("id, outbox_id, hook, plugin, attempts, last_error, next_attempt_at, "
                    "resolved_at, created_at")
_FAILURE_OF = ("SELECT id, attempts FROM reaction_failures "
               "WHERE outbox_id = {} AND hook = {} AND plugin = {}")
_FAILED_AGAIN = ("UPDATE reaction_failures SET attempts = {}, last_error = {}, "
                 "next_attempt_at = {} WHERE id = {}")
_FIRST_FAILURE = (
    "INSERT INTO reaction_failures (id, outbox_id, hook, plugin, attempts, last_error, "
    "next_attempt_at, resolved_at, created_at) VALUES ({}, {}, {}, {}, 1, {}, {}, NULL, {})")
_DUE_FAILURES = (f"SELECT {_FAILURE_COLUMNS} FROM reaction_failures "
                 "WHERE resolved_at IS NULL AND next_attempt_at <= {} "
                 "ORDER BY next_attempt_at LIMIT {}")
_OPEN_FAILURES = (f"SELECT {_FAILURE_COLUMNS} FROM reaction_failures "
                  "WHERE resolved_at IS NULL ORDER BY id")
_FAILURES = {
    (resolved, paged): f"SELECT {_FAILURE_COLUMNS} FROM reaction_failures WHERE resolved_at "
                       + ("IS NOT NULL" if resolved else "IS NULL")
                       + (" AND id > {}" if paged else "") + " ORDER BY id LIMIT {}"
    for resolved in (False, True) for paged in (False, True)}
_FAILED_EVENTS = "SELECT id, kind, order_id FROM outbox WHERE id IN ({})"
_FAILURE = f"SELECT {_FAILURE_COLUMNS} FROM reaction_failures WHERE id = {{}}"
_RESOLVE = "UPDATE reaction_failures SET resolved_at = {} WHERE id = {}"


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
        self._outbox_claimed = {"claimed_until": db.sql_now(LEASE.total_seconds())}
        self._mark_dispatched = _MARK_DISPATCHED.replace("{now}", db.sql_now())
        self._claim_stale = _CLAIM_STALE.format(
            later=db.sql_now(LEASE.total_seconds()), now=db.sql_now(),
            lock=" FOR UPDATE SKIP LOCKED" if db.is_postgres else "")

    async def append(self, events: Sequence[Event]) -> None:
        """Write events and the outbox rows of those with reactions; call inside the
        change's transaction."""
        if not events:
            return
        await self.db.run_together(self.appending(events))

    def appending(self, events: Sequence[Event]) -> list[Statement]:
        """The statements ``append`` runs (to run with the change's other writes)."""
        if not events:
            return []
        payloads = [encode(e) for e in events]
        statements = [rows_statement(
            "events", _EVENT_COLUMNS, [(e.id, e.order_id, e.seq, e.kind, e.actor, data, e.at)
                                       for e, data in zip(events, payloads, strict=True)])]
        outbox = self._outbox_rows(events, payloads)
        if outbox:
            statements.append(rows_statement("outbox", _OUTBOX_COLUMNS, outbox,
                                             self._outbox_claimed))
        return statements

    def _outbox_rows(self, events: Sequence[Event], payloads: list[str]
                     ) -> list[tuple[Any, ...]]:
        """The outbox rows of the events something reacts to; what needs no one is
        written already done (dispatched, told to webhooks, told to brokers)."""
        now = utcnow()
        rows = []
        for e, data in zip(events, payloads, strict=True):
            reacts, tells = self.reacts_to(e), self.tells_webhooks(e)
            if reacts or tells or self.tells_brokers:
                rows.append((e.id, e.kind, e.order_id, data, now, None if reacts else now,
                             1, None if tells else now, None if self.tells_brokers else now))
        return rows

    async def timeline(self, order_id: str) -> list[Event]:
        rows = await self.db.run(_TIMELINE, order_id)
        return [decode(r["data"], Event) for r in rows]

    async def events(self, kind: str | None = None, after: str | None = None,
                     limit: int = 100) -> list[Event]:
        clause, args = where(("kind = {}", kind or None), ("id > {}", after or None))
        rows = await self.db.run(_EVENTS + clause + _EVENTS_PAGE, *args, limit)
        return [decode(r["data"], Event) for r in rows]

    # -- outbox -------------------------------------------------------------------
    async def mark_dispatched(self, event_ids: Sequence[str]) -> None:
        ids = list(event_ids)
        for start in range(0, len(ids), MARK_CHUNK):
            chunk = ids[start:start + MARK_CHUNK]
            await self.db.run(
                self._mark_dispatched.replace("{ids}", ", ".join("{}" for _ in chunk)),
                *chunk)

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
        rows = await in_transaction(self.db, lambda: self.db.run(self._claim_stale,
                                                                  int(limit)))
        return [decode(r["payload"], Event) for r in sorted(rows, key=lambda r: r["id"])]

    async def pending_count(self) -> int:
        await self.flush_marks()
        rows = await self.db.run(_PENDING)
        return int(rows[0]["n"])

    async def outbox_event(self, event_id: str) -> Event | None:
        row = await self.db.fetch_one(_OUTBOX_EVENT, event_id)
        return decode(row["payload"], Event) if row else None

    # -- failed reactions ---------------------------------------------------------
    async def record_failure(self, event_id: str, hook: str, plugin: str, error: str) -> None:
        now = utcnow()
        existing = await self.db.fetch_one(_FAILURE_OF, event_id, hook, plugin)
        if existing:
            attempts = existing["attempts"] + 1
            await self.db.run(_FAILED_AGAIN, attempts, error[:2000], now + backoff(attempts),
                              existing["id"])
            return
        await self.db.run(_FIRST_FAILURE, new_id("rf"), event_id, hook, plugin, error[:2000],
                          now + backoff(1), now)

    async def due_failures(self, now: datetime | None = None,
                           limit: int = 100) -> list[dict[str, Any]]:
        now = now or utcnow()
        return await self.db.fetch(_DUE_FAILURES, now, limit)

    async def open_failures(self) -> list[dict[str, Any]]:
        return await self.db.fetch(_OPEN_FAILURES)

    async def failures(self, *, resolved: bool, after: str | None = None,
                       limit: int = 50) -> list[dict[str, Any]]:
        """One page of failed reactions (open or resolved), by id, each with its event's
        kind and order (``kind``, ``order_id``), for staff to see what did not happen."""
        sql = _FAILURES[resolved, after is not None]
        rows = await (self.db.fetch(sql, after, limit) if after is not None
                      else self.db.fetch(sql, limit))
        ids = sorted({r["outbox_id"] for r in rows})
        events = {e["id"]: e for e in await self.db.fetch(
            _FAILED_EVENTS.format(", ".join("{}" for _ in ids)), *ids)} if ids else {}
        for row in rows:
            event = events.get(row["outbox_id"], {})
            row["kind"], row["order_id"] = event.get("kind"), event.get("order_id")
        return rows

    async def failure(self, failure_id: str) -> dict[str, Any] | None:
        return await self.db.fetch_one(_FAILURE, failure_id)

    async def resolve_failure(self, failure_id: str) -> None:
        await self.db.run(_RESOLVE, utcnow(), failure_id)


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
