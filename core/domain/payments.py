"""Payments of an order. Only gateway references are kept, never card data."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec


class Payment(msgspec.Struct, kw_only=True):
    id: str
    gateway: str
    method: str = ""
    status: str = "pending"
    amount: int
    authorized: int = 0
    captured: int = 0
    refunded: int = 0
    #: the gateway's own id for this payment; the only handle we keep
    reference: str = ""
    #: a payment plugin may grant terms (cash on delivery, invoice) that let an
    #: unpaid order be fulfilled
    grants_terms: bool = False
    failure_reason: str = ""
    #: an operation sent to the gateway and not yet answered: "authorize",
    #: "capture", "refund" or "void"; a second one waits for it to finish
    in_flight: str = ""
    in_flight_amount: int = 0
    in_flight_since: datetime | None = None
    #: gateway operations started so far; numbers each operation's idempotency key
    operations: int = 0
    created_at: datetime

    @property
    def live(self) -> bool:
        """Counts towards the order's money (not failed, not voided before capture)."""
        return self.status not in ("failed", "voided")


class PaymentMethod(msgspec.Struct, kw_only=True, frozen=True):
    """A way to pay that a gateway plugin offers for an order."""

    method: str
    name: str
    grants_terms: bool = False
    gateway: str = ""


class PaymentRequest(msgspec.Struct, kw_only=True, frozen=True):
    """What a gateway plugin receives to authorize, capture, refund or void.

    ``token`` is the client-side token from the gateway's JavaScript/SDK; it is
    passed through once and never stored by the core.
    """

    payment_id: str
    order_id: str
    order_number: str
    amount: int
    currency: str
    method: str = ""
    token: str = ""
    reference: str = ""
    idempotency_key: str
    customer_email: str = ""
    metadata: dict[str, str] = {}


class GatewayResult(msgspec.Struct, kw_only=True, frozen=True):
    """A gateway plugin's answer.

    ``approved``: done; ``pending``: the gateway confirms later (webhook);
    ``declined``: refused, with ``reason``.
    """

    outcome: Literal["approved", "pending", "declined"]
    reference: str = ""
    reason: str = ""
    grants_terms: bool = False
    amount: int | None = None


class PaymentUpdate(msgspec.Struct, kw_only=True, frozen=True):
    """An asynchronous outcome a gateway webhook reports for a payment."""

    reference: str
    outcome: Literal["authorized", "captured", "declined", "refunded", "voided"]
    amount: int | None = None
    reason: str = ""
