"""Customer credentials, sessions and one-time account tokens (all secrets hashed)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ordnung.core.domain.common import utcnow
from ordnung.core.persistence.database import Database
from ordnung.core.persistence.tables import (
    AccountTokenRow,
    ApiKeyRow,
    CustomerCredentialRow,
    CustomerSessionRow,
)


class AccountStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- credentials ------------------------------------------------------------------
    async def password_hash(self, customer_id: str) -> str | None:
        rows = await CustomerCredentialRow.select(CustomerCredentialRow.password_hash).where(
            CustomerCredentialRow.customer_id == customer_id).run()
        return str(rows[0]["password_hash"]) if rows else None

    async def set_password(self, customer_id: str, password_hash: str) -> None:
        now = utcnow()
        updated = await CustomerCredentialRow.update({
            CustomerCredentialRow.password_hash: password_hash,
            CustomerCredentialRow.updated_at: now,
        }).where(CustomerCredentialRow.customer_id == customer_id).returning(
            CustomerCredentialRow.customer_id).run()
        if not updated:
            await CustomerCredentialRow.insert(CustomerCredentialRow(
                customer_id=customer_id, password_hash=password_hash, created_at=now,
                updated_at=now)).run()

    # -- sessions -----------------------------------------------------------------------
    async def open_session(self, *, session_id: str, customer_id: str, channel: str | None,
                           access_hash: str, access_expires_at: datetime, refresh_hash: str,
                           refresh_expires_at: datetime) -> None:
        now = utcnow()
        await CustomerSessionRow.insert(CustomerSessionRow(
            id=session_id, customer_id=customer_id, channel=channel, access_hash=access_hash,
            access_expires_at=access_expires_at, refresh_hash=refresh_hash,
            previous_refresh_hash=None, refresh_expires_at=refresh_expires_at, created_at=now,
            refreshed_at=now, revoked_at=None, revoked_reason="")).run()

    async def session_by_access(self, access_hash: str, now: datetime) -> dict[str, Any] | None:
        """The live session whose access token hashes to ``access_hash`` (its customer not
        erased), or None. Runs on every request a signed-in customer makes."""
        rows = await self.db.fetch(
            "SELECT s.id, s.customer_id, s.channel FROM customer_sessions s "
            "JOIN customers c ON c.id = s.customer_id "
            "WHERE s.access_hash = {} AND s.revoked_at IS NULL AND s.access_expires_at > {} "
            "AND NOT c.erased", access_hash, now)
        return rows[0] if rows else None

    async def rotate(self, *, refresh_hash: str, now: datetime, access_hash: str,
                     access_expires_at: datetime, new_refresh_hash: str,
                     refresh_expires_at: datetime) -> dict[str, Any] | None:
        """Spend a live refresh token for new tokens, in one guarded statement (of two
        concurrent refreshes with one token, one wins). The session, or None."""
        rows = await CustomerSessionRow.update({
            CustomerSessionRow.access_hash: access_hash,
            CustomerSessionRow.access_expires_at: access_expires_at,
            CustomerSessionRow.previous_refresh_hash: refresh_hash,
            CustomerSessionRow.refresh_hash: new_refresh_hash,
            CustomerSessionRow.refresh_expires_at: refresh_expires_at,
            CustomerSessionRow.refreshed_at: now,
        }).where(
            (CustomerSessionRow.refresh_hash == refresh_hash)
            & CustomerSessionRow.revoked_at.is_null()
            & (CustomerSessionRow.refresh_expires_at > now)
        ).returning(CustomerSessionRow.id, CustomerSessionRow.customer_id,
                    CustomerSessionRow.channel).run()
        return rows[0] if rows else None

    async def revoke_reused(self, refresh_hash: str) -> str | None:
        """A refresh token that was already spent came back: someone holds a copy. End the
        session it belonged to; its id, or None if the token is unknown."""
        rows = await CustomerSessionRow.update({
            CustomerSessionRow.revoked_at: utcnow(),
            CustomerSessionRow.revoked_reason: "refresh-reused",
        }).where(
            (CustomerSessionRow.previous_refresh_hash == refresh_hash)
            & CustomerSessionRow.revoked_at.is_null()
        ).returning(CustomerSessionRow.id).run()
        return str(rows[0]["id"]) if rows else None

    async def revoke_session(self, session_id: str, reason: str) -> bool:
        rows = await CustomerSessionRow.update({
            CustomerSessionRow.revoked_at: utcnow(),
            CustomerSessionRow.revoked_reason: reason,
        }).where((CustomerSessionRow.id == session_id)
                 & CustomerSessionRow.revoked_at.is_null()).returning(
            CustomerSessionRow.id).run()
        return bool(rows)

    async def revoke_sessions(self, customer_id: str, reason: str) -> int:
        """End every session of the customer; how many were live."""
        rows = await CustomerSessionRow.update({
            CustomerSessionRow.revoked_at: utcnow(),
            CustomerSessionRow.revoked_reason: reason,
        }).where((CustomerSessionRow.customer_id == customer_id)
                 & CustomerSessionRow.revoked_at.is_null()).returning(
            CustomerSessionRow.id).run()
        return len(rows)

    async def revoke_everything(self, customer_id: str, reason: str) -> None:
        """Sessions, customer tokens issued by staff, pending one-time tokens and the
        password: nothing of the customer's opens a door any more (erasure)."""
        now = utcnow()
        await self.revoke_sessions(customer_id, reason)
        await ApiKeyRow.update({ApiKeyRow.revoked_at: now}).where(
            (ApiKeyRow.customer_id == customer_id) & ApiKeyRow.revoked_at.is_null()).run()
        await AccountTokenRow.update({AccountTokenRow.used_at: now}).where(
            (AccountTokenRow.customer_id == customer_id)
            & AccountTokenRow.used_at.is_null()).run()
        await CustomerCredentialRow.delete().where(
            CustomerCredentialRow.customer_id == customer_id).run()

    # -- one-time tokens ------------------------------------------------------------------
    async def add_token(self, *, token_id: str, token_hash: str, purpose: str,
                        customer_id: str, email: str, expires_at: datetime) -> None:
        """Store a one-time token; earlier unused ones of the same purpose stop working
        (only the latest e-mail's link is good)."""
        now = utcnow()
        await AccountTokenRow.update({AccountTokenRow.used_at: now}).where(
            (AccountTokenRow.customer_id == customer_id) & (AccountTokenRow.purpose == purpose)
            & AccountTokenRow.used_at.is_null()).run()
        await AccountTokenRow.insert(AccountTokenRow(
            id=token_id, token_hash=token_hash, purpose=purpose, customer_id=customer_id,
            email=email, expires_at=expires_at, used_at=None, created_at=now)).run()

    async def spend_token(self, token_hash: str, purpose: str,
                          now: datetime) -> dict[str, Any] | None:
        """Use a live one-time token, once (a guarded update: a second use finds nothing).
        Its ``customer_id`` and ``email``, or None."""
        rows = await AccountTokenRow.update({AccountTokenRow.used_at: now}).where(
            (AccountTokenRow.token_hash == token_hash) & (AccountTokenRow.purpose == purpose)
            & AccountTokenRow.used_at.is_null() & (AccountTokenRow.expires_at > now)
        ).returning(AccountTokenRow.customer_id, AccountTokenRow.email).run()
        return rows[0] if rows else None
