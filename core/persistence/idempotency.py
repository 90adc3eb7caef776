"""Idempotency records: request claims with a lease, and the engine's own results.

One table, ``idempotency_records``, two kinds of row:

- ``request:<key>``: an adapter's claim on a request (REST, GraphQL). While the
  request runs the row is ``pending``, held by ``owner`` until ``lease_until``; the
  holder renews the lease, so a claim whose process died is recognised within one
  lease. Every lease decision is taken in SQL on the database's clock, never on a
  process's own clock (servers' clocks drift apart; the database is the one clock
  they share). ``effect_by`` names the claim whose writes committed first: a request
  that changed nothing leaves it empty and gives its key back, one that changed
  something keeps it. ``done`` rows hold the answer to replay.
- ``place:<key>``: a placement's result (the order id), written in the placement's
  own transaction, so that a repeat finds the order whatever happened to the answer.
"""

from __future__ import annotations

import hashlib
from typing import Any

from ordnung.core.domain.common import utcnow
from ordnung.core.errors import IdempotencyMismatch
from ordnung.core.persistence.database import Database

TABLE = "idempotency_records"


def fingerprint(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


class IdempotencyStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        if db.is_postgres:
            self._now = "now()"
            self._later = "now() + make_interval(secs => {})"
            self._left = "EXTRACT(EPOCH FROM (lease_until - now()))"
        else:
            # text in piccolo's own Timestamptz format, so that it reads back as a datetime
            self._now = "strftime('%Y-%m-%d %H:%M:%f+00:00', 'now')"
            self._later = "strftime('%Y-%m-%d %H:%M:%f+00:00', 'now', '+' || {} || ' seconds')"
            self._left = "(julianday(lease_until) - julianday('now')) * 86400.0"

    # -- the engine's own results (placements) --------------------------------------------
    async def lookup(self, key: str, print_: str) -> str | None:
        """The stored result for ``key``; raises if the key came with another request."""
        rows = await self.db.run(f"SELECT fingerprint, result FROM {TABLE} WHERE key = {{}}",
                                 key)
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
        await self.db.run(
            f"INSERT INTO {TABLE} (key, fingerprint, state, effect_by, result, created_at) "
            "VALUES ({}, {}, 'done', 'engine', {}, {})", key, print_, result, utcnow())

    # -- request claims -----------------------------------------------------------------
    async def insert_claim(self, key: str, print_: str, owner: str, lease_s: float) -> bool:
        """Claim a key nobody has used: True if this call created the record."""
        rows = await self.db.run(
            f"INSERT INTO {TABLE} (key, fingerprint, state, owner, lease_until, created_at) "
            f"VALUES ({{}}, {{}}, 'pending', {{}}, {self._later}, {{}}) "
            "ON CONFLICT (key) DO NOTHING RETURNING key",
            key, print_, owner, float(lease_s), utcnow())
        return bool(rows)

    async def take_over(self, key: str, print_: str, owner: str,
                        lease_s: float) -> str | None:
        """Claim a pending key whose lease has run out (or was given up): its holder
        died or failed. Returns ``effect_by`` (empty if nothing was committed), or None
        if the key is not free to take."""
        rows = await self.db.run(
            f"UPDATE {TABLE} SET owner = {{}}, lease_until = {self._later} "
            "WHERE key = {} AND fingerprint = {} AND state = 'pending' "
            f"AND (lease_until IS NULL OR lease_until < {self._now}) RETURNING effect_by",
            owner, float(lease_s), key, print_)
        return str(rows[0]["effect_by"]) if rows else None

    async def read_claim(self, key: str) -> dict[str, Any] | None:
        """The record as a duplicate sees it, with the seconds its lease has left."""
        rows = await self.db.run(
            f"SELECT fingerprint, state, status, headers, result, {self._left} AS lease_left "
            f"FROM {TABLE} WHERE key = {{}}", key)
        return dict(rows[0]) if rows else None

    async def renew(self, key: str, owner: str, lease_s: float) -> bool:
        rows = await self.db.run(
            f"UPDATE {TABLE} SET lease_until = {self._later} "
            "WHERE key = {} AND owner = {} AND state = 'pending' RETURNING key",
            float(lease_s), key, owner)
        return bool(rows)

    async def fence(self, key: str, owner: str, lease_s: float) -> str | None:
        """Prove the claim is still held and mark it as having an effect; run it in the
        transaction of the write it guards (it commits or rolls back with it). Returns
        ``effect_by``: ``owner`` unless an earlier holder's writes committed first; None
        if the claim is no longer held."""
        rows = await self.db.run(
            f"UPDATE {TABLE} SET effect_by = CASE WHEN effect_by = '' THEN {{}} "
            f"ELSE effect_by END, lease_until = {self._later} "
            "WHERE key = {} AND owner = {} AND state = 'pending' RETURNING effect_by",
            owner, float(lease_s), key, owner)
        return str(rows[0]["effect_by"]) if rows else None

    async def complete(self, key: str, owner: str, status: int, headers: str,
                       body: str) -> bool:
        """Keep the answer of a claim that had an effect; False if it had none (or is no
        longer held)."""
        rows = await self.db.run(
            f"UPDATE {TABLE} SET state = 'done', owner = '', lease_until = NULL, "
            "status = {}, headers = {}, result = {} "
            "WHERE key = {} AND owner = {} AND state = 'pending' AND effect_by <> '' "
            "RETURNING key", status, headers, body, key, owner)
        return bool(rows)

    async def release(self, key: str, owner: str) -> bool:
        """Give a key back: deleted if nothing was committed under it, otherwise left
        pending with no lease, for the next repeat to take over at once. False if the
        claim is no longer held."""
        rows = await self.db.run(
            f"DELETE FROM {TABLE} WHERE key = {{}} AND owner = {{}} AND state = 'pending' "
            "AND effect_by = '' RETURNING key", key, owner)
        if rows:
            return True
        rows = await self.db.run(
            f"UPDATE {TABLE} SET owner = '', lease_until = NULL "
            "WHERE key = {} AND owner = {} AND state = 'pending' RETURNING key", key, owner)
        return bool(rows)
