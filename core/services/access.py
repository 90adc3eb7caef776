"""API keys and customer tokens: issued once, stored hashed, verified per request."""

from __future__ import annotations

import builtins
import hashlib
import hmac
import secrets
import time
from collections.abc import Iterable

from ordnung.core.domain.access import ADMIN_SCOPES, ApiKey, IssuedKey, Kind, Principal
from ordnung.core.domain.common import new_id, utcnow
from ordnung.core.errors import InvalidInput, NotFound
from ordnung.core.persistence.tables import ApiKeyRow
from ordnung.core.runtime import Runtime

PREFIX = {"admin": "sk", "storefront": "pk", "customer": "ct"}
CACHE_SECONDS = 5.0


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class AccessService:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._cache: dict[str, tuple[float, Principal | None]] = {}

    async def issue(self, kind: Kind, *, name: str = "", scopes: Iterable[str] = (),
                    channel: str | None = None, customer_id: str | None = None,
                    secret: str | None = None) -> IssuedKey:
        """Create a key. ``secret`` lets operators bootstrap a known admin key."""
        scope_list = sorted(set(scopes))
        if kind == "admin":
            unknown = set(scope_list) - set(ADMIN_SCOPES)
            if unknown:
                raise InvalidInput(f"unknown scopes {sorted(unknown)} (known: "
                                   f"{', '.join(ADMIN_SCOPES)})", field="scopes")
        elif scope_list:
            raise InvalidInput("only admin keys carry scopes", field="scopes")
        if kind == "storefront":
            if not channel:
                raise InvalidInput("a storefront key belongs to a channel", field="channel")
            await self.rt.catalog.channels()  # channel existence is checked by callers
        if kind == "customer":
            if not customer_id:
                raise InvalidInput("a customer token belongs to a customer",
                                   field="customer_id")
            await self.rt.customers.get(customer_id)
        key_id = new_id("key")
        token = secret or f"{PREFIX[kind]}_{key_id}_{secrets.token_urlsafe(24)}"
        if secret is not None and len(secret) < 16:
            raise InvalidInput("a key must be at least 16 characters", field="secret")
        now = utcnow()
        await ApiKeyRow.insert(ApiKeyRow(
            id=key_id, secret_hash=_hash(token), kind=kind, name=name,
            scopes=",".join(scope_list), channel=channel, customer_id=customer_id,
            created_at=now, revoked_at=None)).run()
        key = ApiKey(id=key_id, kind=kind, name=name, scopes=scope_list, channel=channel,
                     customer_id=customer_id, created_at=now)
        return IssuedKey(key=key, secret=token)

    async def verify(self, token: str) -> Principal | None:
        """The principal for a bearer token, or None. Cached briefly per process."""
        digest = _hash(token)
        cached = self._cache.get(digest)
        now = time.monotonic()
        if cached and now - cached[0] < CACHE_SECONDS:
            return cached[1]
        rows = await ApiKeyRow.select().where(
            (ApiKeyRow.secret_hash == digest) & ApiKeyRow.revoked_at.is_null()).run()
        principal = None
        if rows and hmac.compare_digest(rows[0]["secret_hash"], digest):
            row = rows[0]
            principal = Principal(
                key_id=row["id"], kind=row["kind"],
                scopes=frozenset(s for s in row["scopes"].split(",") if s),
                channel=row["channel"], customer_id=row["customer_id"])
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[digest] = (now, principal)
        return principal

    async def revoke(self, key_id: str) -> None:
        rows = await ApiKeyRow.update({ApiKeyRow.revoked_at: utcnow()}).where(
            ApiKeyRow.id == key_id).returning(ApiKeyRow.id).run()
        if not rows:
            raise NotFound("api key", key_id)
        self._cache.clear()

    async def list(self) -> builtins.list[ApiKey]:
        rows = await ApiKeyRow.select().order_by(ApiKeyRow.id).run()
        return [ApiKey(id=r["id"], kind=r["kind"], name=r["name"],
                       scopes=[s for s in r["scopes"].split(",") if s], channel=r["channel"],
                       customer_id=r["customer_id"], created_at=r["created_at"],
                       revoked_at=r["revoked_at"]) for r in rows]

    async def ensure_admin(self, secret: str, name: str = "bootstrap") -> None:
        """Make sure an admin key with this exact secret and every scope exists."""
        if await self.verify(secret) is None:
            self._cache.clear()
            await self.issue("admin", name=name, scopes=ADMIN_SCOPES, secret=secret)
