"""Per-plugin storage: JSON records and atomic counters, in the engine's database.

Plugins never get the database itself. A ``PluginStore`` is scoped to one
plugin; inside a hook called in-transaction its writes join the core's
transaction (so a coupon use is claimed exactly when the order commits, and
rolled back with it). ``claim`` is a guarded increment: under any concurrency
a counter never passes its limit.
"""

from __future__ import annotations

from typing import Any

from ordnung.core.domain.common import utcnow
from ordnung.core.persistence.codec import decode, encode
from ordnung.core.persistence.database import Database

_GET = "SELECT data FROM plugin_records WHERE plugin = {} AND kind = {} AND key = {}"
_PUT = ("INSERT INTO plugin_records (plugin, kind, key, data, counter, updated_at) "
        "VALUES ({}, {}, {}, {}, 0, {}) ON CONFLICT (plugin, kind, key) "
        "DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at")
_ADD = ("INSERT INTO plugin_records (plugin, kind, key, data, counter, updated_at) "
        "VALUES ({}, {}, {}, {}, 0, {}) ON CONFLICT (plugin, kind, key) DO NOTHING "
        "RETURNING key")
_DELETE = "DELETE FROM plugin_records WHERE plugin = {} AND kind = {} AND key = {}"
_RECORDS = ("SELECT key, data, counter FROM plugin_records WHERE plugin = {} AND kind = {} "
            "AND substr(key, 1, {}) = {} ORDER BY key")
_COUNT = "SELECT counter FROM plugin_records WHERE plugin = {} AND kind = {} AND key = {}"
_ENSURE = ("INSERT INTO plugin_records (plugin, kind, key, data, counter, updated_at) "
           "VALUES ({}, {}, {}, {}, 0, {}) ON CONFLICT (plugin, kind, key) DO NOTHING")
_CLAIM = ("UPDATE plugin_records SET counter = counter + {}, updated_at = {} "
          "WHERE plugin = {} AND kind = {} AND key = {} RETURNING counter")
_CLAIM_WITHIN = ("UPDATE plugin_records SET counter = counter + {}, updated_at = {} "
                 "WHERE plugin = {} AND kind = {} AND key = {} AND counter + {} <= {} "
                 "RETURNING counter")
_RELEASE = ("UPDATE plugin_records SET counter = counter - {}, updated_at = {} "
            "WHERE plugin = {} AND kind = {} AND key = {} AND counter >= {}")


class PluginStore:
    def __init__(self, db: Database, plugin: str) -> None:
        self.db = db
        self.plugin = plugin

    async def get(self, kind: str, key: str) -> dict[str, Any] | None:
        row = await self.db.fetch_one(_GET, self.plugin, kind, key)
        return decode(row["data"], dict[str, Any]) if row else None

    async def put(self, kind: str, key: str, data: dict[str, Any]) -> None:
        await self.db.run(_PUT, self.plugin, kind, key, encode(data), utcnow())

    async def add(self, kind: str, key: str, data: dict[str, Any]) -> bool:
        """Insert only if absent; True if this call created it (first writer wins)."""
        return bool(await self.db.run(_ADD, self.plugin, kind, key, encode(data), utcnow()))

    async def delete(self, kind: str, key: str) -> None:
        await self.db.run(_DELETE, self.plugin, kind, key)

    async def records(self, kind: str, prefix: str = ""
                      ) -> list[tuple[str, dict[str, Any], int]]:
        rows = await self.db.run(_RECORDS, self.plugin, kind, len(prefix), prefix)
        return [(r["key"], decode(r["data"], dict[str, Any]), int(r["counter"])) for r in rows]

    async def count(self, kind: str, key: str) -> int:
        row = await self.db.fetch_one(_COUNT, self.plugin, kind, key)
        return int(row["counter"]) if row else 0

    async def claim(self, kind: str, key: str, limit: int | None = None,
                    amount: int = 1) -> bool:
        """Add ``amount`` to the counter unless that would pass ``limit``; True if claimed."""
        # the data of a record made by its first claim: an empty JSON object (a parameter,
        # as braces in a statement's text are placeholders)
        await self.db.run(_ENSURE, self.plugin, kind, key, "{}", utcnow())
        if limit is None:
            rows = await self.db.run(_CLAIM, amount, utcnow(), self.plugin, kind, key)
        else:
            rows = await self.db.run(_CLAIM_WITHIN, amount, utcnow(), self.plugin, kind, key,
                                     amount, limit)
        return bool(rows)

    async def release(self, kind: str, key: str, amount: int = 1) -> None:
        """Give back a claim (never below zero)."""
        await self.db.run(_RELEASE, amount, utcnow(), self.plugin, kind, key, amount)
