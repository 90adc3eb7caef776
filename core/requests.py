"""Inputs to the Engine's write operations.

Prices, totals, taxes and statuses are deliberately absent: a client can
never set them. Unknown fields are refused.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

from ordnung.core.domain.addresses import Address
from ordnung.core.domain.carts import CartLine

#: a string that must not be empty: a required one, or an optional one that names
#: something when it is sent (a currency, a customer, a shipping method)
NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]


class PaymentInput(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """How the customer pays: the gateway plugin, its method, and a one-time token.

    ``token`` comes from the gateway's client SDK; the core passes it to the
    gateway once and never stores or logs it.
    """

    gateway: NonEmpty
    method: str = ""
    token: str = ""

    def __repr__(self) -> str:  # keep tokens out of tracebacks and logs
        return f"PaymentInput(gateway={self.gateway!r}, method={self.method!r}, token=***)"


class PlaceOrder(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """A one-shot order: lines, addresses, shipping choice and payment in one request."""

    channel: NonEmpty
    lines: list[CartLine]
    currency: NonEmpty | None = None
    customer_id: NonEmpty | None = None
    email: str = ""
    shipping_address: Address | None = None
    billing_address: Address | None = None
    shipping_method: NonEmpty | None = None
    codes: list[str] = []
    payment: PaymentInput | None = None
    #: facts about the client for risk rules (ip, user agent, card fingerprint)
    client: dict[str, str] = {}
    metadata: dict[str, str] = {}


class ReturnLineInput(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    line_id: NonEmpty
    quantity: int
    restock: bool = True
