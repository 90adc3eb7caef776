"""Idempotency keys, stored with their result in the transaction of the effect.

A concurrent duplicate either finds the stored result, or collides on the
primary key when it tries to store its own; its transaction then rolls back
whole (no second reservation, no second order) and the caller replays.
"""

from __future__ import annotations

import hashlib

from ordnung.core.domain.common import utcnow
from ordnung.core.errors import IdempotencyMismatch
from ordnung.core.persistence.database import Database
from ordnung.core.persistence.tables import IdempotencyRow


def fingerprint(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


class IdempotencyStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def lookup(self, key: str, print_: str) -> str | None:
        """The stored result for ``key``; raises if the key came with another request."""
        rows = await IdempotencyRow.select(IdempotencyRow.fingerprint,
                                           IdempotencyRow.result).where(
            IdempotencyRow.key == key).run()
        if not rows:
            return None
        if rows[0]["fingerprint"] != print_:
            raise IdempotencyMismatch(
                "this Idempotency-Key was already used with a different request",
                idempotency_key=key)
        return str(rows[0]["result"])

    async def store(self, key: str, print_: str, result: str) -> None:
        await IdempotencyRow.insert(IdempotencyRow(key=key, fingerprint=print_, result=result,
                                                   created_at=utcnow())).run()
