"""The pricing pipeline: lines → promotions and loyalty → shipping → tax → totals.

The lines a cart or order buys are priced from the catalogue; a variant marked
``given_only`` (a free gift) is refused there (``NotForSale``): only a promotion or
loyalty plugin adds it, as a zero-priced gift line whose stock is reserved like any.

Deterministic: the same cart, catalogue and plugin settings give the same
totals, because every step is a pure function of its inputs and plugins are
called in a fixed order. Every amount that is not a catalogue price is an
``Adjustment`` or a step in ``explanation`` naming the plugin that caused it.

Rounding (documented once, applied here only): tax is computed **per line**
and on shipping, each rounded **half-up** to the currency's minor unit. For
tax-exclusive prices ``tax = round(base × rate)``; for tax-inclusive prices
``tax = base − round(base / (1 + rate))``. Order-level discounts are spread
over lines in proportion to their amounts (largest remainder, no cent lost)
before tax, so each line's taxable base is ``line_total + discount``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from fractions import Fraction

import msgspec

from ordnung.core.contexts import PricingContext
from ordnung.core.domain.addresses import Address
from ordnung.core.domain.carts import CartLine, PricedCart
from ordnung.core.domain.catalog import Variant
from ordnung.core.domain.customers import Customer
from ordnung.core.domain.money import Money, allocate, round_ratio
from ordnung.core.domain.orders import OrderLine
from ordnung.core.domain.pricing import (
    Adjustment,
    Discount,
    ExplanationStep,
    GiftLine,
    ShippingQuote,
    ShippingSelection,
    Totals,
)
from ordnung.core.errors import (
    InvalidInput,
    NotForSale,
    NotFound,
    PluginError,
    TaxUnavailable,
)
from ordnung.core.plugin_host import PluginHost


class PricingInput(msgspec.Struct, kw_only=True):
    currency: str
    channel: str
    customer: Customer | None
    email: str = ""
    lines: Sequence[CartLine]
    shipping_address: Address | None = None
    billing_address: Address | None = None
    shipping_method: str | None = None
    codes: Sequence[str] = ()
    now: datetime
    order_id: str | None = None


VariantLookup = Callable[[Sequence[str]], Awaitable[dict[str, Variant]]]
StockLookup = Callable[[Sequence[str]], Awaitable[dict[str, int]]]


def parse_rate(rate: str, plugin: str) -> Fraction:
    try:
        value = Fraction(rate)
    except (ValueError, ZeroDivisionError) as exc:
        raise PluginError(plugin, f"tax rate {rate!r} is not a decimal number") from exc
    if value < 0 or value > 1:
        raise PluginError(plugin, f"tax rate {rate!r} is outside 0..1")
    return value


def tax_amount(base: int, rate: Fraction, inclusive: bool) -> int:
    if base <= 0 or rate == 0:
        return 0
    if inclusive:
        return base - round_ratio(Fraction(base) / (1 + rate))
    return round_ratio(base * rate)


class PricingPipeline:
    def __init__(self, plugins: PluginHost, variants: VariantLookup, stock: StockLookup,
                 require_tax: bool = True) -> None:
        self.plugins = plugins
        self.variants = variants
        self.stock = stock
        self.require_tax = require_tax

    async def price(self, data: PricingInput, *, strict: bool) -> PricedCart:
        """Price a cart. ``strict`` (placement) turns soft problems into errors:
        an unknown shipping method, a missing tax answer."""
        currency = data.currency
        Money.zero(currency)  # validates the currency code

        def fmt(amount: int) -> str:
            return Money(amount, currency).format()

        explanation: list[ExplanationStep] = []
        merged: dict[str, int] = {}
        for cart_line in data.lines:
            if cart_line.quantity <= 0:
                raise InvalidInput(f"quantity of {cart_line.sku} must be positive",
                                   field="quantity")
            merged[cart_line.sku] = merged.get(cart_line.sku, 0) + cart_line.quantity
        variants = await self.variants(list(merged))
        lines: list[OrderLine] = []
        for index, (sku, quantity) in enumerate(merged.items(), start=1):
            variant = variants.get(sku)
            if variant is None or not variant.active:
                raise NotFound("variant", sku)
            if variant.given_only:  # only a gift rule adds it, below
                raise NotForSale(sku)
            if currency not in variant.prices:
                raise InvalidInput(f"{sku} has no price in {currency}", field="lines", sku=sku)
            unit = variant.prices[currency]
            lines.append(OrderLine(
                id=f"L{index}", sku=sku, name=variant.name, barcode=variant.barcode,
                quantity=quantity, unit_price=unit, line_total=unit * quantity,
                tax_class=variant.tax_class, weight_grams=variant.weight_grams * quantity))
            explanation.append(ExplanationStep(step="lines", source="core", line_id=f"L{index}",
                                               amount=unit * quantity,
                                               message=f"{quantity} × {sku} at {fmt(unit)}"))
        subtotal = sum(line.line_total for line in lines)

        def context(current: list[OrderLine]) -> PricingContext:
            return PricingContext(
                currency=currency, channel=data.channel, customer=data.customer,
                email=data.email, lines=current, subtotal=subtotal,
                weight_grams=sum(line.weight_grams for line in current),
                shipping_address=data.shipping_address, billing_address=data.billing_address,
                codes=list(data.codes), shipping_method=data.shipping_method, now=data.now,
                order_id=data.order_id)

        # -- promotions and loyalty -------------------------------------------------
        adjustments: list[Adjustment] = []
        gifts: list[tuple[str, GiftLine]] = []
        for plugin, answers in await self.plugins.call("ordnung_adjustments",
                                                       ctx=context(lines)):
            for answer in answers:
                if isinstance(answer, Discount):
                    if answer.amount < 0:
                        raise PluginError(plugin, "a Discount amount must be positive")
                    if answer.line_id is not None and answer.line_id not in {
                            line.id for line in lines}:
                        raise PluginError(plugin, f"discount targets unknown line "
                                                  f"{answer.line_id!r}")
                    adjustments.append(Adjustment(
                        id=f"A{len(adjustments) + 1}", source=plugin, kind="discount",
                        amount=-answer.amount, reason=answer.reason, line_id=answer.line_id,
                        code=answer.code))
                elif isinstance(answer, GiftLine):
                    gifts.append((plugin, answer))
                else:
                    explanation.append(ExplanationStep(step="promotions", source=plugin,
                                                       message=answer.message))
        adjustments = self._cap_discounts(lines, adjustments, explanation, currency)
        for adj in adjustments:
            explanation.append(ExplanationStep(step="promotions", source=adj.source,
                                               amount=adj.amount, line_id=adj.line_id,
                                               message=adj.reason))
        lines = self._allocate_discounts(lines, adjustments)

        # gift lines: zero-priced, reserved like any line, skipped when out of stock
        if gifts:
            gift_variants = await self.variants([g.sku for _, g in gifts])
            availability = await self.stock([g.sku for _, g in gifts])
            for plugin, gift in gifts:
                variant = gift_variants.get(gift.sku)
                if variant is None or gift.quantity <= 0:
                    raise PluginError(plugin, f"gift {gift.sku!r} is not a valid variant")
                if not variant.allow_backorder and availability.get(gift.sku, 0) < gift.quantity:
                    explanation.append(ExplanationStep(
                        step="promotions", source=plugin,
                        message=f"gift {gift.sku} skipped: out of stock ({gift.reason})"))
                    continue
                line_id = f"G{sum(1 for ln in lines if ln.gift) + 1}"
                lines.append(OrderLine(
                    id=line_id, sku=gift.sku, name=variant.name, barcode=variant.barcode,
                    quantity=gift.quantity, unit_price=0, line_total=0,
                    tax_class=variant.tax_class, weight_grams=variant.weight_grams * gift.quantity,
                    gift=True, source=plugin))
                adjustments.append(Adjustment(id=f"A{len(adjustments) + 1}", source=plugin,
                                              kind="gift", amount=0, reason=gift.reason,
                                              line_id=line_id))
                explanation.append(ExplanationStep(step="promotions", source=plugin, amount=0,
                                                   line_id=line_id,
                                                   message=f"gift {gift.sku}: {gift.reason}"))

        # -- shipping -----------------------------------------------------------------
        quotes: list[tuple[str, ShippingQuote]] = []
        ship_ctx = context(lines)
        for plugin, answers in await self.plugins.call("ordnung_shipping_quotes",
                                                       ctx=ship_ctx):
            for quote in answers:
                if quote.price < 0:
                    raise PluginError(plugin, "shipping quotes must have a non-negative price")
                quotes.append((f"{plugin}:{quote.service}", quote))
        selection: ShippingSelection | None = None
        if data.shipping_method:
            chosen = [(m, q) for m, q in quotes if m == data.shipping_method]
            if chosen:
                method, quote = chosen[0]
                carrier, service = method.split(":", 1)
                selection = ShippingSelection(method=method, carrier=carrier, service=service,
                                              name=quote.name, price=quote.price,
                                              expected_delivery=quote.expected_delivery)
                explanation.append(ExplanationStep(step="shipping", source=carrier,
                                                   amount=quote.price,
                                                   message=f"{quote.name} ({service})"))
            elif strict:
                raise InvalidInput(
                    f"shipping method {data.shipping_method!r} is not available for this cart "
                    f"(available: {', '.join(m for m, _ in quotes) or 'none'})",
                    field="shipping_method")
            else:
                explanation.append(ExplanationStep(
                    step="shipping", source="core",
                    message=f"shipping method {data.shipping_method!r} is not available"))
        elif strict and quotes:
            raise InvalidInput("choose a shipping method "
                               f"(available: {', '.join(m for m, _ in quotes)})",
                               field="shipping_method")

        # -- tax ----------------------------------------------------------------------
        tax_ctx = context(lines)
        answer = await self.plugins.call("ordnung_tax", ctx=tax_ctx)
        inclusive = False
        if answer is None:
            if self.require_tax and strict:
                raise TaxUnavailable("no tax plugin could compute tax for this order; "
                                     "it cannot be placed without tax")
            if self.require_tax:
                explanation.append(ExplanationStep(step="tax", source="core",
                                                   message="tax not available yet"))
        else:
            tax_plugin, tax = answer
            inclusive = tax.prices_include_tax
            rates = {lt.line_id: lt for lt in tax.lines}
            taxed: list[OrderLine] = []
            for line in lines:
                line_tax = rates.get(line.id)
                if line_tax is None:
                    if strict and self.require_tax and line.line_total > 0:
                        raise TaxUnavailable(f"{tax_plugin} gave no tax for line {line.id}",
                                             line_id=line.id)
                    taxed.append(line)
                    continue
                rate = parse_rate(line_tax.rate, tax_plugin)
                amount = tax_amount(line.line_total + line.discount, rate, inclusive)
                taxed.append(msgspec.structs.replace(line, tax=amount, tax_rate=line_tax.rate))
                if amount or line_tax.reverse_charge:
                    explanation.append(ExplanationStep(
                        step="tax", source=tax_plugin, line_id=line.id, amount=amount,
                        message=f"{line_tax.label or 'tax'} {line_tax.rate} on "
                                f"{fmt(line.line_total + line.discount)}"
                                + (" (reverse charge)" if line_tax.reverse_charge else "")))
            lines = taxed
            if selection is not None:
                rate = parse_rate(tax.shipping_rate, tax_plugin)
                ship_tax = tax_amount(selection.price, rate, inclusive)
                selection = msgspec.structs.replace(selection, tax=ship_tax,
                                                    tax_rate=tax.shipping_rate)
                if ship_tax:
                    explanation.append(ExplanationStep(
                        step="tax", source=tax_plugin, amount=ship_tax,
                        message=f"{tax.shipping_label or 'tax'} {tax.shipping_rate} on shipping"))
            if tax.note:
                explanation.append(ExplanationStep(step="tax", source=tax_plugin,
                                                   message=tax.note))

        # -- totals -------------------------------------------------------------------
        discounts = sum(a.amount for a in adjustments)
        shipping = selection.price if selection else 0
        tax_total = sum(line.tax for line in lines) + (selection.tax if selection else 0)
        total = subtotal + discounts + shipping + (0 if inclusive else tax_total)
        totals = Totals(subtotal=subtotal, discounts=discounts, shipping=shipping, tax=tax_total,
                        total=total, balance=total)
        explanation.append(ExplanationStep(
            step="totals", source="core", amount=total,
            message=f"subtotal {fmt(subtotal)} + discounts {fmt(discounts)} + shipping "
                    f"{fmt(shipping)}" + (f" (tax {fmt(tax_total)} included)" if inclusive
                                          else f" + tax {fmt(tax_total)}")))
        return PricedCart(currency=currency, lines=lines, adjustments=adjustments, quotes=quotes,
                          shipping=selection, totals=totals, prices_include_tax=inclusive,
                          explanation=explanation)

    @staticmethod
    def _cap_discounts(lines: list[OrderLine], adjustments: list[Adjustment],
                       explanation: list[ExplanationStep], currency: str) -> list[Adjustment]:
        """Keep every line and the order at or above zero; say what was cut."""

        def fmt(amount: int) -> str:
            return Money(amount, currency).format()

        remaining = {line.id: line.line_total for line in lines}
        order_left = sum(remaining.values())
        capped: list[Adjustment] = []
        for adj in sorted(adjustments, key=lambda a: (a.line_id is None, a.id)):
            wanted = -adj.amount
            limit = remaining[adj.line_id] if adj.line_id else order_left
            limit = min(limit, order_left)
            granted = min(wanted, max(limit, 0))
            if granted != wanted:
                explanation.append(ExplanationStep(
                    step="promotions", source="core", line_id=adj.line_id,
                    message=f"{adj.source}: discount capped at {fmt(granted)} (asked "
                            f"{fmt(wanted)}) so the total never goes below zero"))
            if adj.line_id:
                remaining[adj.line_id] -= granted
            order_left -= granted
            capped.append(msgspec.structs.replace(adj, amount=-granted))
        capped.sort(key=lambda a: a.id)
        return capped

    @staticmethod
    def _allocate_discounts(lines: list[OrderLine],
                            adjustments: list[Adjustment]) -> list[OrderLine]:
        per_line = {line.id: 0 for line in lines}
        order_level = 0
        for adj in adjustments:
            if adj.line_id:
                per_line[adj.line_id] += adj.amount
            else:
                order_level += adj.amount
        if order_level:
            bases = [line.line_total + per_line[line.id] for line in lines]
            for line, share in zip(lines, allocate(order_level, bases), strict=True):
                per_line[line.id] += share
        return [msgspec.structs.replace(line, discount=per_line[line.id]) for line in lines]
