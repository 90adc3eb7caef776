"""Customer accounts: what signing in hands out, and what the account e-mails carry."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec

from ordnung.core.domain.customers import Customer

#: why a one-time token is sent to a customer's e-mail address
NoticeKind = Literal["password_reset", "email_verification"]


class SessionTokens(msgspec.Struct, frozen=True, kw_only=True):
    """A signed-in customer's tokens, shown this once and stored only hashed.

    ``access_token`` is sent as ``Authorization: Bearer`` until ``expires_at``;
    ``refresh_token`` buys a new pair (and is then spent) until
    ``refresh_expires_at``."""

    customer_id: str
    session_id: str
    token_type: str = "Bearer"
    access_token: str
    expires_in: int
    expires_at: datetime
    refresh_token: str
    refresh_expires_in: int
    refresh_expires_at: datetime


class AccountNotice(msgspec.Struct, frozen=True, kw_only=True):
    """A one-time token for a customer, to be delivered to ``email`` (and nowhere else).

    ``token`` is the secret itself: deliver it, never log or store it. It is valid until
    ``expires_at`` and can be used once."""

    kind: NoticeKind
    customer: Customer
    email: str
    token: str
    expires_at: datetime
    #: the sales channel the request came through (a storefront may link to its own site)
    channel: str | None = None


class ClaimedOrders(msgspec.Struct, frozen=True, kw_only=True):
    """Guest orders attached to a customer account by ``accounts.claim_orders``."""

    customer_id: str
    order_ids: list[str]
