"""Step 3, gifts: the gift lines promotions granted, zero-priced and reserved like any
line, or skipped (and explained) when out of stock."""

from __future__ import annotations

from ordnung.core.domain.catalog import Variant
from ordnung.core.domain.orders import OrderLine
from ordnung.core.domain.pricing import Adjustment, GiftLine
from ordnung.core.errors import PluginError
from ordnung.core.pricing.state import PricingServices, PricingState


def add_gift(state: PricingState, plugin: str, gift: GiftLine, variant: Variant,
             lines: list[OrderLine]) -> None:
    line_id = f"G{sum(1 for ln in lines if ln.gift) + 1}"
    lines.append(OrderLine(
        id=line_id, sku=gift.sku, name=variant.name, barcode=variant.barcode,
        quantity=gift.quantity, unit_price=0, line_total=0, tax_class=variant.tax_class,
        weight_grams=variant.weight_grams * gift.quantity, gift=True, source=plugin))
    state.adjustments.append(Adjustment(id=f"A{len(state.adjustments) + 1}", source=plugin,
                                        kind="gift", amount=0, reason=gift.reason,
                                        line_id=line_id))
    state.explain("promotions", plugin, f"gift {gift.sku}: {gift.reason}", amount=0,
                  line_id=line_id)


async def add_gifts(state: PricingState, services: PricingServices) -> None:
    if not state.gifts:
        return
    skus = [gift.sku for _, gift in state.gifts]
    variants = await services.variants(skus)
    availability = await services.stock(skus)
    lines = list(state.lines)
    for plugin, gift in state.gifts:
        variant = variants.get(gift.sku)
        if variant is None or gift.quantity <= 0:
            raise PluginError(plugin, f"gift {gift.sku!r} is not a valid variant")
        if not variant.allow_backorder and availability.get(gift.sku, 0) < gift.quantity:
            state.explain("promotions", plugin,
                          f"gift {gift.sku} skipped: out of stock ({gift.reason})")
            continue
        add_gift(state, plugin, gift, variant, lines)
    if len(lines) != len(state.lines):
        state.set_lines(lines)
