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


class PluginStore:
    def __init__(self, db: Database, plugin: str) -> None:
        self.db = db
        self.plugin = plugin

    async def get(self, kind: str, key: str) -> dict[str, Any] | None:
        rows = await self.db.fetch(
            "SELECT data FROM plugin_records WHERE plugin = {} AND kind = {} AND key = {}",
            self.plugin, kind, key)
        return decode(rows[0]["data"], dict[str, Any]) if rows else None

    async def put(self, kind: str, key: str, data: dict[str, Any]) -> None:
        await self.db.fetch(
            "INSERT INTO plugin_records (plugin, kind, key, data, counter, updated_at) "
            "VALUES ({}, {}, {}, {}, 0, {}) ON CONFLICT (plugin, kind, key) "
            "DO UPDATE SET data = excluded.data, updated_at = excluded.updated_at",
            self.plugin, kind, key, encode(data), utcnow())

    async def add(self, kind: str, key: str, data: dict[str, Any]) -> bool:
        """Insert only if absent; True if this call created it (first writer wins)."""
        rows = await self.db.fetch(
            "INSERT INTO plugin_records (plugin, kind, key, data, counter, updated_at) "
            "VALUES ({}, {}, {}, {}, 0, {}) ON CONFLICT (plugin, kind, key) DO NOTHING "
            "RETURNING key", self.plugin, kind, key, encode(data), utcnow())
        return bool(rows)

    async def delete(self, kind: str, key: str) -> None:
        await self.db.fetch(
            "DELETE FROM plugin_records WHERE plugin = {} AND kind = {} AND key = {}",
            self.plugin, kind, key)

    async def records(self, kind: str, prefix: str = ""
                      ) -> list[tuple[str, dict[str, Any], int]]:
        rows = await self.db.fetch(
            "SELECT key, data, counter FROM plugin_records WHERE plugin = {} AND kind = {} "
            "AND substr(key, 1, {}) = {} ORDER BY key", self.plugin, kind, len(prefix), prefix)
        return [(r["key"], decode(r["data"], dict[str, Any]), int(r["counter"])) for r in rows]

    async def count(self, kind: str, key: str) -> int:
        rows = await self.db.fetch(
            "SELECT counter FROM plugin_records WHERE plugin = {} AND kind = {} AND key = {}",
            self.plugin, kind, key)
        return int(rows[0]["counter"]) if rows else 0

    async def claim(self, kind: str, key: str, limit: int | None = None,
                    amount: int = 1) -> bool:
        """Add ``amount`` to the counter unless that would pass ``limit``; True if claimed."""
        await self.db.fetch(
            "INSERT INTO plugin_records (plugin, kind, key, data, counter, updated_at) "
            "VALUES ({}, {}, {}, {}, 0, {}) ON CONFLICT (plugin, kind, key) DO NOTHING",
            self.plugin, kind, key, "{}", utcnow())
        guard = "" if limit is None else " AND counter + {} <= {}"
        args: list[Any] = [amount, utcnow(), self.plugin, kind, key]
        if limit is not None:
            args += [amount, limit]
        rows = await self.db.fetch(
            "UPDATE plugin_records SET counter = counter + {}, updated_at = {} "
            "WHERE plugin = {} AND kind = {} AND key = {}" + guard + " RETURNING counter",
            *args)
        return bool(rows)

    async def release(self, kind: str, key: str, amount: int = 1) -> None:
        """Give back a claim (never below zero)."""
        await self.db.fetch(
            "UPDATE plugin_records SET counter = counter - {}, updated_at = {} "
            "WHERE plugin = {} AND kind = {} AND key = {} AND counter >= {}",
            amount, utcnow(), self.plugin, kind, key, amount)
