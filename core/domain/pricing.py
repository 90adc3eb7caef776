"""What the pricing pipeline produces and what plugins hand back to it.

Plugins return the *request* types (``Discount``, ``GiftLine``,
``ShippingQuote``, ``TaxAnswer``); the core turns them into ``Adjustment``
and priced lines, stamping the name of the plugin that made each one, so a
plugin cannot claim another's work and every cent can be explained.
"""

from __future__ import annotations

from datetime import date

import msgspec


class Discount(msgspec.Struct, kw_only=True, frozen=True):
    """A reduction a promotion or loyalty plugin grants (``amount`` > 0 reduces)."""

    amount: int
    reason: str
    line_id: str | None = None
    code: str | None = None


class GiftLine(msgspec.Struct, kw_only=True, frozen=True):
    """A complimentary line at price zero; its stock is reserved like any line."""

    sku: str
    quantity: int = 1
    reason: str


class Note(msgspec.Struct, kw_only=True, frozen=True):
    """An explanation without money: e.g. 'spend 12.00 more for a free tote'."""

    message: str


class ShippingQuote(msgspec.Struct, kw_only=True, frozen=True):
    """A carrier's offer; ``price`` is in the cart's currency, minor units."""

    service: str
    name: str
    price: int
    expected_delivery: date | None = None
    tax_class: str = "shipping"


class LineTax(msgspec.Struct, kw_only=True, frozen=True):
    line_id: str
    #: an exact decimal rate as a string, e.g. "0.19" or "0.08875"
    rate: str
    label: str = ""
    reverse_charge: bool = False


class TaxAnswer(msgspec.Struct, kw_only=True, frozen=True):
    """A tax plugin's rates; the core computes and rounds the amounts."""

    lines: list[LineTax]
    shipping_rate: str = "0"
    shipping_label: str = ""
    prices_include_tax: bool = False
    note: str = ""


class Violation(msgspec.Struct, kw_only=True, frozen=True):
    """A rule an order breaks (regional restriction, limit...)."""

    code: str
    message: str
    line_id: str | None = None
    sku: str | None = None


class RiskAssessment(msgspec.Struct, kw_only=True, frozen=True):
    score: int
    reasons: list[str] = []
    hold: bool = False


class Adjustment(msgspec.Struct, kw_only=True, frozen=True):
    """A priced change to the order, naming the plugin that made it and why."""

    id: str
    source: str
    kind: str  # discount | gift | surcharge
    amount: int  # negative reduces the total
    reason: str
    line_id: str | None = None
    code: str | None = None


class ShippingSelection(msgspec.Struct, kw_only=True, frozen=True):
    method: str  # "<carrier plugin>:<service>"
    carrier: str
    service: str
    name: str
    price: int
    tax: int = 0
    tax_rate: str = "0"
    expected_delivery: date | None = None


class ExplanationStep(msgspec.Struct, kw_only=True, frozen=True):
    step: str  # lines | promotions | shipping | tax | totals
    source: str  # "core" or the plugin name
    message: str
    amount: int | None = None
    line_id: str | None = None


class Totals(msgspec.Struct, kw_only=True, frozen=True):
    subtotal: int = 0
    discounts: int = 0
    shipping: int = 0
    tax: int = 0
    total: int = 0
    authorized: int = 0
    paid: int = 0
    refunded: int = 0
    balance: int = 0
