"""API keys and customer tokens: issued once, stored hashed, verified per request.

A worker keeps the credentials it has looked up (by the hash of the secret), each with
the ``access`` generation it was read at (``ordnung.core.persistence.generations``).
Revoking a key, ending or rotating a session, changing a key's scopes and erasing a
customer raise that generation in their own transaction, and a request uses a kept
credential only once it has seen the generation unchanged (``confirm``, before the
request's handler runs). So revoking a key, erasing a customer or signing out takes
effect on every worker process before the call that did it returns, as when every
request looked its key up, and most requests no longer run the look-up: the generation
comes back with a statement the request runs anyway.
"""

from __future__ import annotations

import builtins
import hashlib
import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import msgspec

from ordnung.core.domain.access import ADMIN_SCOPES, ApiKey, IssuedKey, Kind, Principal
from ordnung.core.domain.common import new_id, utcnow
from ordnung.core.errors import Forbidden, InvalidInput, NotFound
from ordnung.core.persistence import generations
from ordnung.core.persistence.api_keys import ApiKeyStore
from ordnung.core.persistence.generations import ACCESS, Observed, current
from ordnung.core.runtime import Runtime

PREFIX = {"admin": "sk", "storefront": "pk", "customer": "ct"}
#: the prefix of a signed-in customer's access token (looked up among sessions, not keys)
SESSION_PREFIX = "ca_"
#: credentials a worker keeps at most (the oldest kept goes first)
KEPT_MAX = 10_000


class Kept(msgspec.Struct, frozen=True):
    """A credential as a worker keeps it: whom it stands for, until when it is good
    by itself (None: until revoked), and the ``access`` generation it was read at."""

    principal: Principal
    expires_at: datetime | None
    generation: int
    session: bool


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
        #: looked-up credentials by the hash of their secret (see the module docstring)
        self._kept: dict[str, Kept] = {}

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
        token of an erased customer. In a request (``generations.current()``) a
        credential this worker has kept is returned without a statement, pending
        ``confirm``; otherwise it is looked up."""
        digest = _hash(token)
        now = utcnow()
        seen = current()
        if seen is not None:
            kept = self._kept.get(digest)
            if kept is not None and (kept.expires_at is None or kept.expires_at > now):
                seen.pending = (digest, kept.generation)
                return kept.principal
        return await self._look_up(digest, token.startswith(SESSION_PREFIX), now)

    async def confirm(self, principal: Principal,
                      seen: Observed | None = None) -> Principal | None:
        """The principal a request may act as, once the credential ``verify`` returned
        from what this worker kept is known to be current: the same principal if the
        ``access`` generation is still the one it was read at, else the credential as
        looked up again now (None: no longer good). A no-op for a credential that was
        looked up in this request. Call before the request changes anything or answers;
        ``seen``: what the request has seen (default: the request this task serves)."""
        seen = seen if seen is not None else current()
        if seen is None or seen.pending is None:
            return principal
        digest, read_at = seen.pending
        seen.pending = None
        if seen.access is None:
            await generations.read(self.rt.db)
        if seen.access == read_at:
            return principal
        kept = self._kept.pop(digest, None)
        session = kept.session if kept is not None else principal.session
        return await self._look_up(digest, session, utcnow())

    async def _look_up(self, digest: str, session: bool, now: datetime) -> Principal | None:
        """Look the credential up, keep it (or forget it), and note the generations."""
        row: dict[str, Any] | None
        if session:
            row = await self.rt.accounts.session_by_access(digest, now)
        else:
            row = await self.keys.live(digest, now, now - self.customer_token_ttl)
        if row is None:
            self._kept.pop(digest, None)
            return None
        generations.observe(row)
        if session:
            principal = Principal(key_id=row["id"], kind="customer", channel=row["channel"],
                                  customer_id=row["customer_id"], session=True)
            expires_at = row["access_expires_at"]
        else:
            principal = Principal(key_id=row["id"], kind=row["kind"],
                                  scopes=frozenset(s for s in row["scopes"].split(",") if s),
                                  channel=row["channel"], customer_id=row["customer_id"])
            expires_at = row["expires_at"]
            if expires_at is None and row["kind"] == "customer":
                # issued before tokens had an expiry: good for the lifetime from issue
                expires_at = row["created_at"] + self.customer_token_ttl
        if len(self._kept) >= KEPT_MAX:
            del self._kept[next(iter(self._kept))]
        self._kept[digest] = Kept(principal, expires_at,
                                  generations.generation(row, ACCESS), session)
        return principal

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
