"""A storage for the ``limits`` rate limiter that keeps its counters in our database.

``limits`` brings the strategies (here its fixed window) and the rate notation; its
storages are per process (memory) or external services (Redis, Memcached, MongoDB).
Sign-in throttling must count the attempts of every worker process and machine
together, and the one store every worker already shares is the database, so the
counters live in the ``rate_limits`` table: one row per limit and identifier, updated
by a single upsert whose result is the new count (no read-then-write race). A request
that several limits count (the write limits: per caller and per address) updates all
its counters in one multi-row upsert (``incr_many``): one statement per request, not
one per limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import cache

import msgspec
from limits.aio.storage import Storage

from ordnung.core.domain.common import utcnow
from ordnung.core.persistence.database import Database
from ordnung.core.persistence.generations import OBSERVED_COLUMNS, observe

#: the upsert's head; one ``_ROW`` per counter follows, then ``_ON_CONFLICT``
_INCREMENT = "INSERT INTO rate_limits (key, hits, expires_at) VALUES "
_ROW = "({}, {}, {})"
_ON_CONFLICT = (
    " ON CONFLICT (key) DO UPDATE SET "
    "hits = CASE WHEN rate_limits.expires_at <= {} THEN excluded.hits "
    "ELSE rate_limits.hits + excluded.hits END, "
    "expires_at = CASE WHEN rate_limits.expires_at <= {} THEN excluded.expires_at "
    "ELSE rate_limits.expires_at END "
    f"RETURNING key, hits, expires_at, {OBSERVED_COLUMNS}")
_HITS = "SELECT hits FROM rate_limits WHERE key = {} AND expires_at > {}"
_EXPIRY = "SELECT expires_at FROM rate_limits WHERE key = {}"
_CHECK = "SELECT 1 AS ok"
_RESET = "DELETE FROM rate_limits WHERE key <> '' RETURNING key"
_CLEAR = "DELETE FROM rate_limits WHERE key = {}"


@cache
def _increment(rows: int) -> str:
    """The upsert of ``rows`` counters (a handful of shapes: one per number of limits)."""
    return _INCREMENT + ", ".join([_ROW] * rows) + _ON_CONFLICT


class Hit(msgspec.Struct, frozen=True):
    """One counter to raise: its key (``RateLimitItem.key_for``), window and amount."""

    key: str
    expiry: int
    amount: int = 1


class Count(msgspec.Struct, frozen=True):
    """A counter after the raise: its hits in the current window and when that ends."""

    hits: int
    expires_at: datetime


class DatabaseStorage(Storage):
    """Fixed-window counters in the ``rate_limits`` table (see the module docstring)."""

    STORAGE_SCHEME = ["ordnung-db"]

    def __init__(self, db: Database) -> None:
        super().__init__(uri=None)
        self.db = db

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return ()

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        return (await self.incr_many([Hit(key, expiry, amount)]))[key].hits

    async def incr_many(self, hits: Sequence[Hit]) -> dict[str, Count]:
        """Raise every counter in ``hits`` in one statement; each key's new count. A
        counter whose window is over starts again from the amount, as in ``incr``."""
        merged: dict[str, Hit] = {}
        for hit in hits:  # PostgreSQL's upsert may touch a row once per statement
            seen = merged.get(hit.key)
            merged[hit.key] = hit if seen is None else Hit(
                hit.key, seen.expiry, seen.amount + hit.amount)
        if not merged:
            return {}
        now = utcnow()
        args: list[object] = []
        for hit in merged.values():
            args += [hit.key, hit.amount, now + timedelta(seconds=hit.expiry)]
        rows = await self.db.run(_increment(len(merged)), *args, now, now)
        if rows:  # the request learns the generations here (``...persistence.generations``)
            observe(rows[0])
        return {r["key"]: Count(int(r["hits"]), r["expires_at"]) for r in rows}

    async def get(self, key: str) -> int:
        row = await self.db.fetch_one(_HITS, key, utcnow())
        return int(row["hits"]) if row else 0

    async def get_expiry(self, key: str) -> float:
        row = await self.db.fetch_one(_EXPIRY, key)
        expires: datetime = row["expires_at"] if row else utcnow()
        return expires.timestamp()

    async def check(self) -> bool:
        await self.db.run(_CHECK)
        return True

    async def reset(self) -> int | None:
        return len(await self.db.run(_RESET))

    async def clear(self, key: str) -> None:
        await self.db.run(_CLEAR, key)

