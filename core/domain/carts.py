"""Carts (draft orders): re-priced on every change, placed once."""

from __future__ import annotations

from datetime import datetime

import msgspec

from ordnung.core.domain.addresses import Address
from ordnung.core.domain.orders import OrderLine
from ordnung.core.domain.pricing import (
    Adjustment,
    ExplanationStep,
    ShippingQuote,
    ShippingSelection,
    Totals,
)


class CartLine(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    sku: str
    quantity: int


class PricedCart(msgspec.Struct, kw_only=True):
    """The pipeline's output: everything an order snapshot needs."""

    currency: str
    lines: list[OrderLine]
    adjustments: list[Adjustment]
    quotes: list[tuple[str, ShippingQuote]]
    shipping: ShippingSelection | None
    totals: Totals
    prices_include_tax: bool
    explanation: list[ExplanationStep]


class Cart(msgspec.Struct, kw_only=True):
    id: str
    channel: str
    customer_id: str | None = None
    email: str = ""
    currency: str
    status: str = "open"  # open | placed
    lines: list[CartLine] = []
    shipping_address: Address | None = None
    billing_address: Address | None = None
    shipping_method: str | None = None
    codes: list[str] = []
    order_id: str | None = None
    priced: PricedCart | None = None
    created_at: datetime
    updated_at: datetime
    version: int = 0

    # A cart has two states and no machine: ``open`` (it may change and be placed) and
    # ``placed`` (it became ``order_id``); these name them once.
    @property
    def is_open(self) -> bool:
        return self.status == "open"

    def placed_as(self, order_id: str, at: datetime) -> None:
        self.status, self.order_id, self.updated_at = "placed", order_id, at

    def reopen(self, at: datetime) -> None:
        """Its order was not placed after all (a declined payment): it may change again."""
        self.status, self.order_id, self.updated_at = "open", None, at
