"""Who is calling: admin keys with scopes, storefront keys per channel, customer tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

Kind = Literal["admin", "storefront", "customer"]
#: who may call: a key's kind, or a stream token (one order's live status, read-only)
CallerKind = Literal["admin", "storefront", "customer", "stream"]

#: every scope an admin key may hold. ``keys`` manages keys (list, issue, revoke), and a
#: key only ever issues or revokes keys whose scopes are a subset of its own
ADMIN_SCOPES = ("catalogue", "inventory", "orders", "fulfilment", "payments", "refunds",
                "customers", "plugins", "metrics", "keys", "webhooks")


class Principal(msgspec.Struct, frozen=True, kw_only=True):
    """The verified caller of one request."""

    key_id: str
    kind: CallerKind
    scopes: frozenset[str] = frozenset()
    channel: str | None = None
    customer_id: str | None = None
    #: a signed-in customer's session (``key_id`` is the session's id), not a key
    session: bool = False
    #: a stream token's one order: it reads that order's live status and nothing else
    order_id: str | None = None

    @property
    def staff(self) -> bool:
        """Staff read everything; every other caller reads the customer's view
        (``core/domain/views.py``)."""
        return self.kind == "admin"

    def has(self, scope: str) -> bool:
        return self.kind == "admin" and scope in self.scopes

    @property
    def actor(self) -> str:
        if self.kind == "customer":
            return f"customer:{self.customer_id}"
        return f"{self.kind}:{self.key_id}"


class ApiKey(msgspec.Struct, frozen=True, kw_only=True):
    """A key as listed to admins: never the secret."""

    id: str
    kind: Kind
    name: str = ""
    scopes: list[str] = []
    channel: str | None = None
    customer_id: str | None = None
    created_at: datetime
    revoked_at: datetime | None = None
    #: customer tokens expire; admin and storefront keys live until revoked
    expires_at: datetime | None = None


class IssuedKey(msgspec.Struct, frozen=True, kw_only=True):
    """A freshly created key: ``secret`` is shown this once and stored only hashed."""

    key: ApiKey
    secret: str


class StreamToken(msgspec.Struct, frozen=True, kw_only=True):
    """A short-lived, read-only token for one order's live status, made to be put in a
    URL (``?stream_token=``) by a page whose ``EventSource`` cannot send headers."""

    token: str
    order_id: str
    expires_at: datetime
    #: the stream's path with the token, relative to the API's root
    url: str
