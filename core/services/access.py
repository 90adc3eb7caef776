"""API keys and customer tokens: issued once, stored hashed, verified per request.

Every request looks its key up in the database: there is no cache, so revoking a key,
erasing a customer or signing out takes effect on every worker process before the call
that did it returns. The look-up is one indexed statement.
"""

from __future__ import annotations

import builtins
import hashlib
import secrets
from collections.abc import Iterable
from datetime import timedelta

from ordnung.core.domain.access import ADMIN_SCOPES, ApiKey, IssuedKey, Kind, Principal
from ordnung.core.domain.common import new_id, utcnow
from ordnung.core.errors import Forbidden, InvalidInput, NotFound
from ordnung.core.persistence.api_keys import ApiKeyStore
from ordnung.core.runtime import Runtime

PREFIX = {"admin": "sk", "storefront": "pk", "customer": "ct"}
#: the prefix of a signed-in customer's access token (looked up among sessions, not keys)
SESSION_PREFIX = "ca_"

def token_hash(secret: str) -> str:
    """How a random secret (key, token) is stored: SHA-256. The secrets carry 192 random
    bits, so a slow password hash would add nothing but CPU time per request."""
    return hashlib.sha256(secret.encode()).hexdigest()


_hash = token_hash


def check_subset(scopes: Iterable[str], issuer: frozenset[str] | None, verb: str) -> None:
    """``Forbidden`` unless the asking key holds every one of ``scopes``."""
    if issuer is None:
        return
    missing = sorted(set(scopes) - issuer)
    if missing:
        raise Forbidden(f"a key may only {verb} keys whose scopes it holds itself; this "
                        f"one lacks {', '.join(missing)}", missing_scopes=missing)


class AccessService:
    def __init__(self, rt: Runtime, *, customer_token_ttl: int = 86_400) -> None:
        self.rt = rt
        self.keys = ApiKeyStore(rt.db)
        self.customer_token_ttl = timedelta(seconds=customer_token_ttl)

    async def issue(self, kind: Kind, *, name: str = "", scopes: Iterable[str] = (),
                    channel: str | None = None, customer_id: str | None = None,
                    secret: str | None = None,
                    issuer: frozenset[str] | None = None) -> IssuedKey:
        """Create a key. ``secret`` lets operators bootstrap a known admin key.

        ``issuer`` is the scopes of the admin key asking (None: the operator, e.g. at
        start-up): a key never hands out a scope it does not hold itself, so a key with
        ``keys`` cannot escalate to more than it has."""
        scope_list = sorted(set(scopes))
        if kind == "admin":
            unknown = set(scope_list) - set(ADMIN_SCOPES)
            if unknown:
                raise InvalidInput(f"unknown scopes {sorted(unknown)} (known: "
                                   f"{', '.join(ADMIN_SCOPES)})", field="scopes")
            check_subset(scope_list, issuer, "issue")
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
            customer = await self.rt.customers.get(customer_id)
            if customer.erased:
                raise NotFound("customer", customer_id)
        key_id = new_id("key")
        token = secret or f"{PREFIX[kind]}_{key_id}_{secrets.token_urlsafe(24)}"
        if secret is not None and len(secret) < 16:
            raise InvalidInput("a key must be at least 16 characters", field="secret")
        now = utcnow()
        expires_at = now + self.customer_token_ttl if kind == "customer" else None
        await self.keys.insert(key_id=key_id, secret_hash=_hash(token), kind=kind, name=name,
                               scopes=",".join(scope_list), channel=channel,
                               customer_id=customer_id, created_at=now, expires_at=expires_at)
        key = ApiKey(id=key_id, kind=kind, name=name, scopes=scope_list, channel=channel,
                     customer_id=customer_id, created_at=now, expires_at=expires_at)
        return IssuedKey(key=key, secret=token)

    async def verify(self, token: str) -> Principal | None:
        """The principal for a bearer token, or None: unknown, revoked, expired, or the
        token of an erased customer. Looked up afresh on every call (no cache)."""
        digest = _hash(token)
        now = utcnow()
        if token.startswith(SESSION_PREFIX):
            session = await self.rt.accounts.session_by_access(digest, now)
            if session is None:
                return None
            return Principal(key_id=session["id"], kind="customer", channel=session["channel"],
                             customer_id=session["customer_id"], session=True)
        row = await self.keys.live(digest, now, now - self.customer_token_ttl)
        if row is None:
            return None
        return Principal(key_id=row["id"], kind=row["kind"],
                         scopes=frozenset(s for s in row["scopes"].split(",") if s),
                         channel=row["channel"], customer_id=row["customer_id"])

    async def revoke(self, key_id: str, *, issuer: frozenset[str] | None = None) -> None:
        """Revoke a key; ``issuer`` as in ``issue``: a key revokes only keys whose scopes
        it holds all of (so it cannot lock out a stronger one)."""
        if issuer is not None:
            found = await self.keys.scopes(key_id)
            if found is None:
                raise NotFound("api key", key_id)
            check_subset([s for s in found.split(",") if s], issuer, "revoke")
        if not await self.keys.revoke(key_id, utcnow()):
            raise NotFound("api key", key_id)

    async def list(self) -> builtins.list[ApiKey]:
        rows = await self.keys.all()
        return [ApiKey(id=r["id"], kind=r["kind"], name=r["name"],
                       scopes=[s for s in r["scopes"].split(",") if s], channel=r["channel"],
                       customer_id=r["customer_id"], created_at=r["created_at"],
                       revoked_at=r["revoked_at"], expires_at=r["expires_at"]) for r in rows]

    async def ensure_admin(self, secret: str, name: str = "bootstrap") -> None:
        """Make sure an admin key with this exact secret and every scope exists; one made
        before a scope was added (``keys``) gains it."""
        principal = await self.verify(secret)
        if principal is None:
            await self.issue("admin", name=name, scopes=ADMIN_SCOPES, secret=secret)
        elif principal.kind == "admin" and principal.scopes != set(ADMIN_SCOPES):
            await self.keys.set_scopes(principal.key_id, ",".join(sorted(ADMIN_SCOPES)))
