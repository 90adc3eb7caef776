"""Stream tokens: one order's live status for a browser, without an API key in the page.

A browser's ``EventSource`` cannot send an ``Authorization`` header, so a page puts a
stream token in the URL instead. The token is signed (HMAC-SHA256), not stored: it
names one order and an expiry, and the signature also covers the order's e-mail address
and customer, so erasing the customer (which blanks the e-mail) revokes every token of
their orders at once. The signing secret is created once and kept in the database, so
every API worker accepts every worker's tokens. A URL ends up in logs and histories:
that is why these tokens only read, only one order, and live minutes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from datetime import UTC, datetime, timedelta

from ordnung.core.domain.access import StreamToken
from ordnung.core.domain.common import utcnow
from ordnung.core.domain.orders import Order
from ordnung.core.errors import InvalidCredentials, NotFound
from ordnung.core.persistence.plugin_store import PluginStore
from ordnung.core.runtime import Runtime

PREFIX = "st1"
#: where the secret lives: the engine's own records in the key-value store
_STORE_OWNER = "ordnung.core"


class StreamTokenService:
    def __init__(self, rt: Runtime, *, ttl: int = 600) -> None:
        self.rt = rt
        self.ttl = timedelta(seconds=ttl)
        self._store = PluginStore(rt.db, _STORE_OWNER)
        self._secret: bytes | None = None

    async def _key(self) -> bytes:
        """The signing secret: made by the first worker that needs it (first writer
        wins), read by all the others; it never changes, so it is cached."""
        if self._secret is None:
            await self._store.add("secret", "stream_tokens",
                                  {"value": secrets.token_hex(32)})
            record = await self._store.get("secret", "stream_tokens")
            assert record is not None
            self._secret = bytes.fromhex(record["value"])
        return self._secret

    async def _sign(self, order: Order, expires: int) -> str:
        owner = hashlib.sha256(f"{order.customer_id or ''}|{order.email}".encode()).hexdigest()
        message = f"{PREFIX}.{order.id}.{expires}.{owner}".encode()
        digest = hmac.new(await self._key(), message, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()

    async def mint(self, order: Order) -> StreamToken:
        """A token for ``order``; the caller has already been allowed to read it."""
        expires_at = (utcnow() + self.ttl).replace(microsecond=0)
        expires = int(expires_at.timestamp())
        token = f"{PREFIX}.{order.id}.{expires}.{await self._sign(order, expires)}"
        return StreamToken(token=token, order_id=order.id, expires_at=expires_at,
                           url=f"/orders/{order.id}/events?stream_token={token}")

    async def verify(self, token: str) -> str:
        """The order id the token is good for; ``InvalidCredentials`` if it is malformed,
        forged, expired, or its order's customer was erased."""
        parts = token.split(".")
        if len(parts) != 4 or parts[0] != PREFIX or not parts[2].isdigit():
            raise InvalidCredentials("not a stream token")
        _, order_id, expires_raw, signature = parts
        expires = int(expires_raw)
        if expires <= utcnow().timestamp():
            raise InvalidCredentials(
                f"the stream token expired at "
                f"{datetime.fromtimestamp(expires, UTC).isoformat()}; mint a new one")
        try:
            order = await self.rt.orders.get(order_id)
        except NotFound:
            raise InvalidCredentials("unknown or revoked stream token") from None
        if not hmac.compare_digest(signature, await self._sign(order, expires)):
            raise InvalidCredentials("unknown or revoked stream token")
        if order.customer_id is not None:
            try:
                erased = (await self.rt.customers.get(order.customer_id)).erased
            except NotFound:
                erased = True
            if erased:
                raise InvalidCredentials("unknown or revoked stream token")
        return order_id
