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

    @property
    def unconfirmed(self) -> bool:
        """The gateway has neither confirmed nor refused it yet: nothing may treat it as
        paid, not even terms it says it grants."""
        return self.status in UNCONFIRMED

    @property
    def awaiting(self) -> bool:
        """Asked for and not refused, but no money is held yet: the gateway has not
        answered or not confirmed it, or staff have not received it."""
        return self.status in AWAITING


#: payment states the gateway has not confirmed (see ``core/lifecycle/tables.py``)
UNCONFIRMED = frozenset({"pending", "awaiting_confirmation"})
#: payment states that hold no money yet
AWAITING = UNCONFIRMED | {"awaiting_payment"}


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

    ``approved``: done; ``pending``: not settled yet; ``declined``: refused, with
    ``reason``.

    An authorization answered ``pending`` waits for the gateway's confirmation (a
    webhook, e.g. after 3-D Secure): until it arrives the payment cannot be captured
    and counts as unpaid. ``confirmed_by_capture=True`` says that no gateway will ever
    confirm it: the money is collected outside any gateway (bank transfer, invoice,
    cash on delivery) and staff capturing the payment is its confirmation.
    """

    outcome: Literal["approved", "pending", "declined"]
    reference: str = ""
    reason: str = ""
    grants_terms: bool = False
    amount: int | None = None
    confirmed_by_capture: bool = False


class OperationLookup(msgspec.Struct, kw_only=True, frozen=True):
    """What a gateway knows of an operation sent to it with an idempotency key.

    ``found=True``: the gateway received it; ``result`` is the answer it gave (or
    would give to a repeat of the key). ``found=False``: the gateway never received
    an operation with that key, so nothing was done.
    """

    found: bool
    result: GatewayResult | None = None

    def __post_init__(self) -> None:
        if self.found and self.result is None:
            raise ValueError("an operation the gateway found needs its result")


class PaymentUpdate(msgspec.Struct, kw_only=True, frozen=True):
    """An asynchronous outcome a gateway webhook reports for a payment."""

    reference: str
    outcome: Literal["authorized", "captured", "declined", "refunded", "voided"]
    amount: int | None = None
    reason: str = ""
