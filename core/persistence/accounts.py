"""Customer credentials, sessions and one-time account tokens (all secrets hashed)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ordnung.core.domain.common import utcnow
from ordnung.core.persistence.database import Database
from ordnung.core.persistence.generations import ACCESS, OBSERVED_COLUMNS, raise_generation

_PASSWORD = "SELECT password_hash FROM customer_credentials WHERE customer_id = {}"
_UPDATE_PASSWORD = ("UPDATE customer_credentials SET password_hash = {}, updated_at = {} "
                    "WHERE customer_id = {} RETURNING customer_id")
_INSERT_PASSWORD = ("INSERT INTO customer_credentials (customer_id, password_hash, "
                    "created_at, updated_at) VALUES ({}, {}, {}, {})")
_DELETE_PASSWORD = "DELETE FROM customer_credentials WHERE customer_id = {}"

_LOCK_ADDRESS = "SELECT pg_advisory_xact_lock(hashtext({}))"

_OPEN_SESSION = (
    "INSERT INTO customer_sessions (id, customer_id, channel, access_hash, access_expires_at, "
    "refresh_hash, previous_refresh_hash, refresh_expires_at, created_at, refreshed_at, "
    "revoked_at, revoked_reason) VALUES ({}, {}, {}, {}, {}, {}, NULL, {}, {}, {}, NULL, '')")
_SESSION_BY_ACCESS = (
    "SELECT s.id, s.customer_id, s.channel, s.access_expires_at, "
    f"{OBSERVED_COLUMNS} FROM customer_sessions s "
    "JOIN customers c ON c.id = s.customer_id "
    "WHERE s.access_hash = {} AND s.revoked_at IS NULL AND s.access_expires_at > {} "
    "AND NOT c.erased")
_ROTATE = (
    "UPDATE customer_sessions SET access_hash = {}, access_expires_at = {}, "
    "previous_refresh_hash = {}, refresh_hash = {}, refresh_expires_at = {}, refreshed_at = {} "
    "WHERE refresh_hash = {} AND revoked_at IS NULL AND refresh_expires_at > {} "
    "RETURNING id, customer_id, channel")
_REVOKE_REUSED = (
    "UPDATE customer_sessions SET revoked_at = {}, revoked_reason = 'refresh-reused' "
    "WHERE previous_refresh_hash = {} AND revoked_at IS NULL RETURNING id")
_REVOKE_SESSION = ("UPDATE customer_sessions SET revoked_at = {}, revoked_reason = {} "
                   "WHERE id = {} AND revoked_at IS NULL RETURNING id")
_REVOKE_SESSIONS = ("UPDATE customer_sessions SET revoked_at = {}, revoked_reason = {} "
                    "WHERE customer_id = {} AND revoked_at IS NULL RETURNING id")
_REVOKE_KEYS = ("UPDATE api_keys SET revoked_at = {} "
                "WHERE customer_id = {} AND revoked_at IS NULL")
_SPEND_ALL_TOKENS = ("UPDATE account_tokens SET used_at = {} "
                     "WHERE customer_id = {} AND used_at IS NULL")

_SPEND_EARLIER_TOKENS = ("UPDATE account_tokens SET used_at = {} "
                         "WHERE customer_id = {} AND purpose = {} AND used_at IS NULL")
_ADD_TOKEN = ("INSERT INTO account_tokens (id, token_hash, purpose, customer_id, email, "
              "expires_at, used_at, created_at) VALUES ({}, {}, {}, {}, {}, {}, NULL, {})")
_SPEND_TOKEN = (
    "UPDATE account_tokens SET used_at = {} WHERE token_hash = {} AND purpose = {} "
    "AND used_at IS NULL AND expires_at > {} RETURNING customer_id, email")


class AccountStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def lock_address(self, email: str) -> None:
        """Hold the e-mail address until the transaction ends, so that of two
        registrations of one address one wins (SQLite runs one writer at a time)."""
        if self.db.is_postgres:
            await self.db.run(_LOCK_ADDRESS, email)

    # -- credentials ------------------------------------------------------------------
    async def password_hash(self, customer_id: str) -> str | None:
        row = await self.db.fetch_one(_PASSWORD, customer_id)
        return str(row["password_hash"]) if row else None

    async def set_password(self, customer_id: str, password_hash: str) -> None:
        now = utcnow()
        if not await self.db.run(_UPDATE_PASSWORD, password_hash, now, customer_id):
            await self.db.run(_INSERT_PASSWORD, customer_id, password_hash, now, now)

    # -- sessions -----------------------------------------------------------------------
    async def open_session(self, *, session_id: str, customer_id: str, channel: str | None,
                           access_hash: str, access_expires_at: datetime, refresh_hash: str,
                           refresh_expires_at: datetime) -> None:
        now = utcnow()
        await self.db.run(_OPEN_SESSION, session_id, customer_id, channel, access_hash,
                          access_expires_at, refresh_hash, refresh_expires_at, now, now)

    async def session_by_access(self, access_hash: str, now: datetime) -> dict[str, Any] | None:
        """The live session whose access token hashes to ``access_hash`` (its customer not
        erased), or None, with the generations it was read at. Runs on a request whose
        token the worker has not kept (``AccessService.verify``)."""
        return await self.db.fetch_one(_SESSION_BY_ACCESS, access_hash, now)

    async def rotate(self, *, refresh_hash: str, now: datetime, access_hash: str,
                     access_expires_at: datetime, new_refresh_hash: str,
                     refresh_expires_at: datetime) -> dict[str, Any] | None:
        """Spend a live refresh token for new tokens, in one guarded statement (of two
        concurrent refreshes with one token, one wins). The session, or None. The old
        access token stops working: kept copies of it are stale."""
        async with self.db.transaction():
            session = await self.db.fetch_one(
                _ROTATE, access_hash, access_expires_at, refresh_hash, new_refresh_hash,
                refresh_expires_at, now, refresh_hash, now)
            if session is not None:
                await raise_generation(self.db, ACCESS)
            return session

    async def revoke_reused(self, refresh_hash: str) -> str | None:
        """A refresh token that was already spent came back: someone holds a copy. End the
        session it belonged to; its id, or None if the token is unknown."""
        async with self.db.transaction():
            row = await self.db.fetch_one(_REVOKE_REUSED, utcnow(), refresh_hash)
            if row is not None:
                await raise_generation(self.db, ACCESS)
            return str(row["id"]) if row else None

    async def revoke_session(self, session_id: str, reason: str) -> bool:
        async with self.db.transaction():
            revoked = bool(await self.db.run(_REVOKE_SESSION, utcnow(), reason, session_id))
            if revoked:
                await raise_generation(self.db, ACCESS)
            return revoked

    async def revoke_sessions(self, customer_id: str, reason: str) -> int:
        """End every session of the customer; how many were live."""
        async with self.db.transaction():
            revoked = len(await self.db.run(_REVOKE_SESSIONS, utcnow(), reason, customer_id))
            if revoked:
                await raise_generation(self.db, ACCESS)
            return revoked

    async def revoke_everything(self, customer_id: str, reason: str) -> None:
        """Sessions, customer tokens issued by staff, pending one-time tokens and the
        password: nothing of the customer's opens a door any more (erasure)."""
        now = utcnow()
        async with self.db.transaction():
            await self.revoke_sessions(customer_id, reason)
            await self.db.run(_REVOKE_KEYS, now, customer_id)
            await self.db.run(_SPEND_ALL_TOKENS, now, customer_id)
            await self.db.run(_DELETE_PASSWORD, customer_id)
            await raise_generation(self.db, ACCESS)

    # -- one-time tokens ------------------------------------------------------------------
    async def add_token(self, *, token_id: str, token_hash: str, purpose: str,
                        customer_id: str, email: str, expires_at: datetime) -> None:
        """Store a one-time token; earlier unused ones of the same purpose stop working
        (only the latest e-mail's link is good)."""
        now = utcnow()
        await self.db.run(_SPEND_EARLIER_TOKENS, now, customer_id, purpose)
        await self.db.run(_ADD_TOKEN, token_id, token_hash, purpose, customer_id, email,
                          expires_at, now)

    async def spend_token(self, token_hash: str, purpose: str,
                          now: datetime) -> dict[str, Any] | None:
        """Use a live one-time token, once (a guarded update: a second use finds nothing).
        Its ``customer_id`` and ``email``, or None."""
        return await self.db.fetch_one(_SPEND_TOKEN, now, token_hash, purpose, now)
