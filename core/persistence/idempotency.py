"""Idempotency records: request claims with a lease, and the engine's own results.

One table, ``idempotency_records``, two kinds of row:

- ``request:<key>``: an adapter's claim on a request (REST, GraphQL). While the
  request runs the row is ``pending``, held by ``owner`` until ``lease_until``; the
  holder renews the lease, so a claim whose process died is recognised within one
  lease. Every lease decision is taken in SQL on the database's clock, never on a
  process's own clock (servers' clocks drift apart; the database is the one clock
  they share). ``effect_by`` names the claim whose writes committed first: a request
  that changed nothing leaves it empty and gives its key back, one that changed
  something keeps it, and with it (in ``result``, while pending) what those writes
  made: a placement's order id, so that a repeat that takes the key over finds the
  order whatever happened to the answer. ``done`` rows hold the answer to replay.
- ``place:<key>``: a placement's result (the order id) for a caller of the engine that
  holds no claim (a placement under a claim keeps it in the claim's own row), written
  in the placement's own transaction.
"""

from __future__ import annotations

import hashlib
from typing import Any

from ordnung.core.domain.common import utcnow
from ordnung.core.errors import IdempotencyMismatch
from ordnung.core.persistence.database import Database
from ordnung.core.persistence.generations import OBSERVED_COLUMNS, observe

#: the database's clock in SQL, per dialect: ``now``, ``later`` (``{}`` seconds on) and
#: ``left`` (seconds a lease has left); filled into the statements once per store
_CLOCK = {
    "postgres": {"now": "now()", "later": "now() + make_interval(secs => {})",
                 "left": "EXTRACT(EPOCH FROM (lease_until - now()))"},
    # text in piccolo's own Timestamptz format, so that it reads back as a datetime
    "sqlite": {"now": "strftime('%Y-%m-%d %H:%M:%f+00:00', 'now')",
               "later": "strftime('%Y-%m-%d %H:%M:%f+00:00', 'now', '+' || {} || ' seconds')",
               "left": "(julianday(lease_until) - julianday('now')) * 86400.0"},
}

_LOOKUP = "SELECT fingerprint, result FROM idempotency_records WHERE key = {}"
_STORE = ("INSERT INTO idempotency_records (key, fingerprint, state, effect_by, result, "
          "created_at) VALUES ({}, {}, 'done', 'engine', {}, {})")
_INSERT_CLAIM = (
    "INSERT INTO idempotency_records (key, fingerprint, state, owner, lease_until, created_at) "
    "VALUES ({}, {}, 'pending', {}, <later>, {}) ON CONFLICT (key) DO NOTHING "
    f"RETURNING key, {OBSERVED_COLUMNS}")
_TAKE_OVER = (
    "UPDATE idempotency_records SET owner = {}, lease_until = <later> "
    "WHERE key = {} AND fingerprint = {} AND state = 'pending' "
    "AND (lease_until IS NULL OR lease_until < <now>) RETURNING effect_by, result")
_READ_CLAIM = ("SELECT fingerprint, state, status, headers, result, <left> AS lease_left, "
               f"{OBSERVED_COLUMNS} FROM idempotency_records WHERE key = {{}}")
_RENEW = ("UPDATE idempotency_records SET lease_until = <later> "
          "WHERE key = {} AND owner = {} AND state = 'pending' RETURNING key")
_FENCE = (
    "UPDATE idempotency_records SET result = CASE WHEN effect_by = '' THEN {} ELSE result "
    "END, effect_by = CASE WHEN effect_by = '' THEN {} ELSE effect_by END, "
    "lease_until = <later> "
    "WHERE key = {} AND owner = {} AND state = 'pending' RETURNING effect_by")
_OUTCOME = ("UPDATE idempotency_records SET result = {} "
            "WHERE key = {} AND owner = {} AND state = 'pending' RETURNING key")
_COMPLETE = (
    "UPDATE idempotency_records SET state = 'done', owner = '', lease_until = NULL, "
    "status = {}, headers = {}, result = {} "
    "WHERE key = {} AND owner = {} AND state = 'pending' AND effect_by <> '' RETURNING key")
_RELEASE_UNUSED = ("DELETE FROM idempotency_records WHERE key = {} AND owner = {} "
                   "AND state = 'pending' AND effect_by = '' RETURNING key")
_RELEASE_USED = ("UPDATE idempotency_records SET owner = '', lease_until = NULL "
                 "WHERE key = {} AND owner = {} AND state = 'pending' RETURNING key")


def fingerprint(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


class IdempotencyStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        clock = _CLOCK[db.kind]

        def dialect(sql: str) -> str:
            for name, expression in clock.items():
                sql = sql.replace(f"<{name}>", expression)
            return sql

        self._insert_claim, self._take_over, self._read_claim, self._renew, self._fence = (
            dialect(sql) for sql in (_INSERT_CLAIM, _TAKE_OVER, _READ_CLAIM, _RENEW, _FENCE))

    # -- the engine's own results (placements) --------------------------------------------
    async def lookup(self, key: str, print_: str) -> str | None:
        """The stored result for ``key``; raises if the key came with another request."""
        rows = await self.db.run(_LOOKUP, key)
        if not rows:
            return None
        if rows[0]["fingerprint"] != print_:
            raise IdempotencyMismatch(
                "this Idempotency-Key was already used with a different request",
                idempotency_key=key)
        return str(rows[0]["result"])

    async def store(self, key: str, print_: str, result: str) -> None:
        """Record ``result`` for ``key``; call inside the transaction of the effect (a
        concurrent duplicate collides on the primary key and rolls back whole)."""
        await self.db.run(_STORE, key, print_, result, utcnow())

    # -- request claims -----------------------------------------------------------------
    async def insert_claim(self, key: str, print_: str, owner: str, lease_s: float) -> bool:
        """Claim a key nobody has used: True if this call created the record. (The
        request learns the generations from it: ``ordnung.core.persistence.generations``.)"""
        rows = await self.db.run(self._insert_claim, key, print_, owner, float(lease_s),
                                 utcnow())
        if rows:
            observe(rows[0])
        return bool(rows)

    async def take_over(self, key: str, print_: str, owner: str,
                        lease_s: float) -> tuple[str, str] | None:
        """Claim a pending key whose lease has run out (or was given up): its holder
        died or failed. Returns ``effect_by`` (empty if nothing was committed) and what
        those writes made (see ``fence``), or None if the key is not free to take."""
        rows = await self.db.run(self._take_over, owner, float(lease_s), key, print_)
        return (str(rows[0]["effect_by"]), str(rows[0]["result"] or "")) if rows else None

    async def read_claim(self, key: str) -> dict[str, Any] | None:
        """The record as a duplicate sees it, with the seconds its lease has left (and
        the generations, for the request)."""
        row = await self.db.fetch_one(self._read_claim, key)
        observe(row)
        return row

    async def renew(self, key: str, owner: str, lease_s: float) -> bool:
        rows = await self.db.run(self._renew, float(lease_s), key, owner)
        return bool(rows)

    async def fence(self, key: str, owner: str, lease_s: float,
                    outcome: str = "") -> str | None:
        """Prove the claim is still held and mark it as having an effect; run it in the
        transaction of the write it guards (it commits or rolls back with it). The first
        effect also records ``outcome``, what the guarded writes make (a placement's
        order id), in the same statement. Returns ``effect_by``: ``owner`` unless an
        earlier holder's writes committed first; None if the claim is no longer held."""
        rows = await self.db.run(self._fence, outcome, owner, float(lease_s), key, owner)
        return str(rows[0]["effect_by"]) if rows else None

    async def note_outcome(self, key: str, owner: str, outcome: str) -> bool:
        """Record ``outcome`` on a claim whose first effect came before it was known; run
        it in the transaction of the writes that make it."""
        return bool(await self.db.run(_OUTCOME, outcome, key, owner))

    async def complete(self, key: str, owner: str, status: int, headers: str,
                       body: str) -> bool:
        """Keep the answer of a claim that had an effect; False if it had none (or is no
        longer held)."""
        rows = await self.db.run(_COMPLETE, status, headers, body, key, owner)
        return bool(rows)

    async def release(self, key: str, owner: str) -> bool:
        """Give a key back: deleted if nothing was committed under it, otherwise left
        pending with no lease, for the next repeat to take over at once. False if the
        claim is no longer held."""
        rows = await self.db.run(_RELEASE_UNUSED, key, owner)
        if rows:
            return True
        rows = await self.db.run(_RELEASE_USED, key, owner)
        return bool(rows)
