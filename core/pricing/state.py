"""The one state a pricing works on, from the request to the totals.

Every step reads and writes this state and nothing else, so a step can be read (and
tested) alone, and the price explanation is simply what the steps appended, in order.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Protocol

import msgspec

from ordnung.core.contexts import PricingContext
from ordnung.core.domain.addresses import Address
from ordnung.core.domain.carts import CartLine, PricedCart
from ordnung.core.domain.catalog import Variant
from ordnung.core.domain.customers import Customer
from ordnung.core.domain.money import Money, format_amount
from ordnung.core.domain.orders import OrderLine
from ordnung.core.domain.pricing import (
    Adjustment,
    ExplanationStep,
    GiftLine,
    ShippingQuote,
    ShippingSelection,
    Totals,
)
from ordnung.core.plugin_host import PluginHost


class Basket(Protocol):
    """What is priced, read in the shape it arrives in (a placement request, a cart)
    instead of being copied into another."""

    @property
    def lines(self) -> Sequence[CartLine]: ...

    @property
    def shipping_address(self) -> Address | None: ...

    @property
    def billing_address(self) -> Address | None: ...

    @property
    def shipping_method(self) -> str | None: ...

    @property
    def codes(self) -> Sequence[str]: ...


class Buyer(msgspec.Struct, kw_only=True, frozen=True):
    """Who buys, where and when: what the caller resolved (channel, currency, customer)
    beside the basket."""

    currency: str
    channel: str
    customer: Customer | None
    email: str = ""
    now: datetime
    #: set when re-pricing an existing order
    order_id: str | None = None


VariantLookup = Callable[[Sequence[str]], Awaitable[dict[str, Variant]]]
StockLookup = Callable[[Sequence[str]], Awaitable[dict[str, int]]]
#: whether a quantity of a SKU may be taken to be in stock without reading it (a hint:
#: see ``ordnung.core.persistence.stock_hints``)
StockHint = Callable[[str, int], bool]


class PricingServices(msgspec.Struct, frozen=True):
    """What the steps may ask outside the state: plugins, the catalogue, stock."""

    plugins: PluginHost
    variants: VariantLookup
    stock: StockLookup
    require_tax: bool = True
    plenty: StockHint | None = None


class PricingState:
    """A cart on its way through the steps.

    ``strict`` (placement) turns soft problems into errors: an unknown shipping
    method, a missing tax answer. The context plugins see is assembled here only: its
    request fields once, and a new snapshot only when a step changed the lines (plugins
    get frozen snapshots, so a later step cannot change what an earlier hook saw).
    """

    def __init__(self, basket: Basket, buyer: Buyer, *, strict: bool,
                 hints: bool = True) -> None:
        Money.zero(buyer.currency)  # validates the currency code
        self.basket = basket
        self.buyer = buyer
        self.strict = strict
        #: whether stock hints may stand in for reading a gift's stock
        self.hints = hints
        #: gift SKUs added on a hint, without their stock being read
        self.assumed: set[str] = set()
        self.currency = buyer.currency
        self.lines: list[OrderLine] = []
        self.subtotal = 0
        self.adjustments: list[Adjustment] = []
        self.gifts: list[tuple[str, GiftLine]] = []
        self.quotes: list[tuple[str, ShippingQuote]] = []
        self.shipping: ShippingSelection | None = None
        self.inclusive = False
        self.totals = Totals()
        self.explanation: list[ExplanationStep] = []
        self._request: PricingContext | None = None
        self._context: PricingContext | None = None

    def fmt(self, amount: int) -> str:
        return format_amount(amount, self.currency)

    def explain(self, step: str, source: str, message: str, *, amount: int | None = None,
                line_id: str | None = None) -> None:
        self.explanation.append(ExplanationStep(step=step, source=source, message=message,
                                                amount=amount, line_id=line_id))

    def set_lines(self, lines: list[OrderLine]) -> None:
        """Replace the lines; the next ``context()`` shows the new ones."""
        self.lines = lines
        self._context = None

    def context(self) -> PricingContext:
        """What plugins see of this pricing now (the same object until the lines change)."""
        if self._context is None:
            lines = self.lines
            weight = sum(line.weight_grams for line in lines)
            if self._request is None:
                basket, buyer = self.basket, self.buyer
                self._request = PricingContext(
                    currency=self.currency, channel=buyer.channel, customer=buyer.customer,
                    email=buyer.email, lines=lines, subtotal=self.subtotal,
                    weight_grams=weight, shipping_address=basket.shipping_address,
                    billing_address=basket.billing_address, codes=list(basket.codes),
                    shipping_method=basket.shipping_method, now=buyer.now,
                    order_id=buyer.order_id)
                self._context = self._request
            else:
                self._context = msgspec.structs.replace(self._request, lines=lines,
                                                        weight_grams=weight)
        return self._context

    def result(self) -> PricedCart:
        return PricedCart(currency=self.currency, lines=self.lines,
                          adjustments=self.adjustments, quotes=self.quotes,
                          shipping=self.shipping, totals=self.totals,
                          prices_include_tax=self.inclusive, explanation=self.explanation)
