"""Step 1, lines: the customer's lines priced from the catalogue.

Lines of one SKU are merged; a variant marked ``given_only`` (a free gift) is refused
here (``NotForSale``): only a promotion or loyalty plugin adds it, in the gifts step.
"""

from __future__ import annotations

from ordnung.core.domain.catalog import Variant
from ordnung.core.domain.orders import OrderLine
from ordnung.core.errors import InvalidInput, NotForSale, NotFound
from ordnung.core.pricing.state import PricingServices, PricingState


def merged_quantities(state: PricingState) -> dict[str, int]:
    merged: dict[str, int] = {}
    for cart_line in state.basket.lines:
        if cart_line.quantity <= 0:
            raise InvalidInput(f"quantity of {cart_line.sku} must be positive",
                               field="quantity")
        merged[cart_line.sku] = merged.get(cart_line.sku, 0) + cart_line.quantity
    return merged


def sellable_price(state: PricingState, sku: str, variant: Variant | None) -> int:
    """The unit price of ``sku`` in the cart's currency, if it may be bought."""
    if variant is None or not variant.active:
        raise NotFound("variant", sku)
    if variant.given_only:
        raise NotForSale(sku)
    if state.currency not in variant.prices:
        raise InvalidInput(f"{sku} has no price in {state.currency}", field="lines", sku=sku)
    return variant.prices[state.currency]


async def price_lines(state: PricingState, services: PricingServices) -> None:
    merged = merged_quantities(state)
    variants = await services.variants(list(merged))
    lines: list[OrderLine] = []
    for index, (sku, quantity) in enumerate(merged.items(), start=1):
        variant = variants.get(sku)
        unit = sellable_price(state, sku, variant)
        assert variant is not None
        line_id = f"L{index}"
        lines.append(OrderLine(
            id=line_id, sku=sku, name=variant.name, barcode=variant.barcode,
            quantity=quantity, unit_price=unit, line_total=unit * quantity,
            tax_class=variant.tax_class, weight_grams=variant.weight_grams * quantity))
        state.explain("lines", "core", f"{quantity} × {sku} at {state.fmt(unit)}",
                      amount=unit * quantity, line_id=line_id)
    state.subtotal = sum(line.line_total for line in lines)
    state.set_lines(lines)
