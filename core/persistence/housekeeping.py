"""Deleting what the engine keeps only for a while: the statements of the housekeeping pass.

Each kind of row is deleted by one statement that takes at most ``limit`` rows (the
oldest first is not promised: any rows past their time will do), so that a sweep never
holds many locks nor one lock for long; the service repeats it while it comes back full.
Every age is judged in SQL on the database's clock, never on a process's own: servers'
clocks drift apart, and a row must not be deleted early because one server runs ahead.
On PostgreSQL the rows are taken ``FOR UPDATE SKIP LOCKED``: a row a request holds (a
counter being raised, a claim being renewed) is left for the next pass, and the outer
condition is checked again on the row as it is when deleted.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import NamedTuple

from ordnung.core.persistence.database import Database

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
#: the prefix of the ids of the kinds judged by their ids' time
_ID_PREFIX = {"outbox": "ev"}

#: the database's clock ``{}`` seconds ago (the argument of ``_ago``), per dialect
_AGO = {
    "postgres": "(now() - make_interval(secs => {}))",
    # text in piccolo's own Timestamptz format, so that it compares with stored times
    "sqlite": "strftime('%Y-%m-%d %H:%M:%f+00:00', 'now', {})",
}

#: one bounded delete: ``<where>`` twice (the pick and the check on the row deleted)
_DELETE = ("DELETE FROM <table> WHERE <key> IN (SELECT <key> FROM <table> WHERE <where> "
           "LIMIT {}<lock>) AND <where> RETURNING <key>")


class Kind(NamedTuple):
    """Rows of one table that may go: ``where`` names ``<now>`` (the database's clock)
    and ``<cutoff>`` (that clock minus the kind's retention, a parameter) or
    ``<id_before>`` (the first id made at that time, for a table whose ids are its
    order of creation)."""

    table: str
    key: str
    where: str

    @property
    def aged(self) -> bool:
        """Whether the condition takes a retention."""
        return "<cutoff>" in self.where or "<id_before>" in self.where


#: what the pass deletes, by the name it reports it under
KINDS: dict[str, Kind] = {
    # a rate limiter's counter whose window is over counts nothing any more
    "rate_limits": Kind("rate_limits", "key", "expires_at < <now>"),
    # an Idempotency-Key's record past its retention, unless its attempt holds its lease
    "idempotency_records": Kind(
        "idempotency_records", "key",
        "created_at < <cutoff> AND (lease_until IS NULL OR lease_until < <now>)"),
    # a customer's session whose refresh token expired, or that was revoked
    "sessions_expired": Kind("customer_sessions", "id", "refresh_expires_at < <cutoff>"),
    "sessions_revoked": Kind("customer_sessions", "id", "revoked_at < <cutoff>"),
    # a one-time token sent by e-mail (used or not: every one expires within days)
    "account_tokens": Kind("account_tokens", "id", "expires_at < <cutoff>"),
    # a customer token issued by staff (``POST /customers/{id}/tokens``) that expired
    "customer_tokens": Kind("api_keys", "id", "kind = 'customer' AND expires_at < <cutoff>"),
    # a guest's cart nobody changed for the retention (open, or placed long ago) ...
    # (``active_at`` is the hour of the last change: see ``carts.ACTIVITY_GRAIN``)
    "guest_carts": Kind("carts", "id", "customer_id IS NULL AND active_at < <cutoff>"),
    # ... and a customer's cart that became an order as long ago (an open one is theirs
    # to come back to)
    "placed_carts": Kind("carts", "id", "status = 'placed' AND active_at < <cutoff>"),
    # an event's outbox row once every worker is done with it (its reactions ran, the
    # webhook and broker workers took it) and no failed reaction needs it to retry or to
    # be shown; the event itself stays in the timeline. Ids sort by creation, so the
    # primary key finds the old rows and no index on the hot path is needed.
    "outbox": Kind("outbox", "id",
                   "id < <id_before> AND dispatched_at IS NOT NULL AND webhooks_at IS NOT NULL "
                   "AND broker_at IS NOT NULL AND NOT EXISTS (SELECT 1 FROM reaction_failures "
                   "f WHERE f.outbox_id = outbox.id)"),
}


class HousekeepingStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        lock = " FOR UPDATE SKIP LOCKED" if db.is_postgres else ""
        self._deletes = {
            name: (_DELETE.replace("<where>", kind.where)
                   .replace("<table>", kind.table).replace("<key>", kind.key)
                   .replace("<lock>", lock).replace("<now>", db.sql_now())
                   .replace("<cutoff>", _AGO[db.kind]).replace("<id_before>", "{}"))
            for name, kind in KINDS.items()}

    def _ago(self, seconds: float) -> object:
        """The argument of an ``_AGO`` clock: seconds, or SQLite's date modifier."""
        return float(seconds) if self.db.is_postgres else f"{-float(seconds):+} seconds"

    async def prune(self, name: str, limit: int, retention_s: float,
                    now: datetime) -> int:
        """Delete up to ``limit`` rows of kind ``name`` (past ``retention_s`` where the
        kind has one; ``now``: the database's clock as read for the pass, for the kinds
        judged by their ids' time); how many went."""
        kind = KINDS[name]
        args: tuple[object, ...] = ()
        if "<id_before>" in kind.where:
            at = now - timedelta(seconds=retention_s)
            args = (id_floor(_ID_PREFIX[name], at),)
        elif kind.aged:
            args = (self._ago(retention_s),)
        rows = await self.db.run(self._deletes[name], *args, int(limit), *args)
        return len(rows)


def id_floor(prefix: str, at: datetime) -> str:
    """The smallest id ``new_id(prefix)`` makes at ``at``: every id made before sorts
    below it, every one made from then on above (the same layout: the milliseconds in
    the first 48 of 130 bits, Crockford base32, lower case)."""
    value = int(at.timestamp() * 1000) << 80
    chars = []
    for _ in range(26):
        value, rem = divmod(value, 32)
        chars.append(_CROCKFORD[rem])
    return f"{prefix}_{''.join(reversed(chars)).lower()}"
