"""API keys and customer tokens issued by staff: only a hash of each secret is stored."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ordnung.core.persistence.database import Database
from ordnung.core.persistence.generations import ACCESS, OBSERVED_COLUMNS, raise_generation

_INSERT = ("INSERT INTO api_keys (id, secret_hash, kind, name, scopes, channel, customer_id, "
           "created_at, revoked_at, expires_at) VALUES ({}, {}, {}, {}, {}, {}, {}, {}, NULL, {})")
_VERIFY = (
    "SELECT k.id, k.kind, k.scopes, k.channel, k.customer_id, k.created_at, k.expires_at, "
    f"{OBSERVED_COLUMNS} FROM api_keys k "
    "LEFT JOIN customers c ON c.id = k.customer_id "
    "WHERE k.secret_hash = {} AND k.revoked_at IS NULL "
    "AND (k.expires_at IS NULL OR k.expires_at > {}) "
    # customer tokens issued before they had an expiry expire by their age
    "AND (k.kind <> 'customer' OR k.expires_at IS NOT NULL OR k.created_at > {}) "
    "AND (c.id IS NULL OR NOT c.erased)")
_SCOPES = "SELECT scopes FROM api_keys WHERE id = {}"
_REVOKE = "UPDATE api_keys SET revoked_at = {} WHERE id = {} RETURNING id"
_ALL = ("SELECT id, kind, name, scopes, channel, customer_id, created_at, revoked_at, "
        "expires_at FROM api_keys ORDER BY id")
_SET_SCOPES = "UPDATE api_keys SET scopes = {} WHERE id = {}"


class ApiKeyStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert(self, *, key_id: str, secret_hash: str, kind: str, name: str,
                     scopes: str, channel: str | None, customer_id: str | None,
                     created_at: datetime, expires_at: datetime | None) -> None:
        await self.db.run(_INSERT, key_id, secret_hash, kind, name, scopes, channel,
                          customer_id, created_at, expires_at)

    async def live(self, secret_hash: str, now: datetime,
                   legacy_issued_after: datetime) -> dict[str, Any] | None:
        """The live key whose secret hashes to ``secret_hash``: not revoked, not expired
        (customer tokens from before expiries: issued after ``legacy_issued_after``), its
        customer not erased, with the generations (``OBSERVED_COLUMNS``) it was read at.
        Runs on a request whose key the worker has not kept (``AccessService.verify``)."""
        return await self.db.fetch_one(_VERIFY, secret_hash, now, legacy_issued_after)

    async def scopes(self, key_id: str) -> str | None:
        row = await self.db.fetch_one(_SCOPES, key_id)
        return str(row["scopes"]) if row else None

    async def revoke(self, key_id: str, now: datetime) -> bool:
        async with self.db.transaction():
            revoked = bool(await self.db.run(_REVOKE, now, key_id))
            if revoked:  # every worker's kept copy of the key is stale
                await raise_generation(self.db, ACCESS)
            return revoked

    async def all(self) -> list[dict[str, Any]]:
        return await self.db.fetch(_ALL)

    async def set_scopes(self, key_id: str, scopes: str) -> None:
        async with self.db.transaction():
            await self.db.run(_SET_SCOPES, scopes, key_id)
            await raise_generation(self.db, ACCESS)
