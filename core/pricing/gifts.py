"""Step 3, gifts: the gift lines promotions granted, zero-priced and reserved like any
line, or skipped (and explained) when out of stock.

A gift's stock is read unless this worker saw plenty of it a moment ago (a stock hint,
``ordnung.core.persistence.stock_hints``); a gift added on a hint is listed in
``state.assumed``, for the placement's reservation to confirm."""

from __future__ import annotations

from collections.abc import Callable

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
    wanted: dict[str, int] = {}
    for _, gift in state.gifts:
        wanted[gift.sku] = wanted.get(gift.sku, 0) + gift.quantity
    variants = await services.variants(list(wanted))
    in_stock = await _stock_check(state, services, wanted, variants)
    lines = list(state.lines)
    for plugin, gift in state.gifts:
        variant = variants.get(gift.sku)
        if variant is None or gift.quantity <= 0:
            raise PluginError(plugin, f"gift {gift.sku!r} is not a valid variant")
        if not in_stock(variant, gift.quantity):
            state.explain("promotions", plugin,
                          f"gift {gift.sku} skipped: out of stock ({gift.reason})")
            continue
        add_gift(state, plugin, gift, variant, lines)
    if len(lines) != len(state.lines):
        state.set_lines(lines)


async def _stock_check(state: PricingState, services: PricingServices,
                       wanted: dict[str, int], variants: dict[str, Variant]
                       ) -> Callable[[Variant, int], bool]:
    """Whether a quantity of a gift is in stock: always for a backorderable one; on the
    hint for one this worker saw plenty of a moment ago (noted in ``state.assumed``);
    else as its stock, read now for every such gift at once, says."""
    plenty = services.plenty if state.hints else None
    assumed = {sku for sku, quantity in wanted.items()
               if plenty is not None and plenty(sku, quantity)}
    unsure = [sku for sku in wanted if sku not in assumed and sku in variants
              and not variants[sku].allow_backorder]
    availability = await services.stock(unsure) if unsure else {}

    def in_stock(variant: Variant, quantity: int) -> bool:
        if variant.allow_backorder:
            return True
        if variant.sku in assumed:
            state.assumed.add(variant.sku)
            return True
        return availability.get(variant.sku, 0) >= quantity

    return in_stock
