"""A storage for the ``limits`` rate limiter that keeps its counters in our database.

``limits`` brings the strategies (here its fixed window) and the rate notation; its
storages are per process (memory) or external services (Redis, Memcached, MongoDB).
Sign-in throttling must count the attempts of every worker process and machine
together, and the one store every worker already shares is the database, so the
counters live in the ``rate_limits`` table: one row per limit and identifier, updated
by a single upsert whose result is the new count (no read-then-write race).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from limits.aio.storage import Storage

from ordnung.core.domain.common import utcnow
from ordnung.core.persistence.database import Database

_INCREMENT = (
    "INSERT INTO rate_limits (key, hits, expires_at) VALUES ({}, {}, {}) "
    "ON CONFLICT (key) DO UPDATE SET "
    "hits = CASE WHEN rate_limits.expires_at <= {} THEN excluded.hits "
    "ELSE rate_limits.hits + excluded.hits END, "
    "expires_at = CASE WHEN rate_limits.expires_at <= {} THEN excluded.expires_at "
    "ELSE rate_limits.expires_at END "
    "RETURNING hits")
_HITS = "SELECT hits FROM rate_limits WHERE key = {} AND expires_at > {}"
_EXPIRY = "SELECT expires_at FROM rate_limits WHERE key = {}"
_CHECK = "SELECT 1 AS ok"
_RESET = "DELETE FROM rate_limits WHERE key <> '' RETURNING key"
_CLEAR = "DELETE FROM rate_limits WHERE key = {}"


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
        now = utcnow()
        rows = await self.db.run(_INCREMENT, key, amount, now + timedelta(seconds=expiry),
                                 now, now)
        return int(rows[0]["hits"])

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
