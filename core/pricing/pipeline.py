"""The steps in their order, run over one pricing state."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from ordnung.core.domain.carts import PricedCart
from ordnung.core.plugin_host import PluginHost
from ordnung.core.pricing.gifts import add_gifts
from ordnung.core.pricing.lines import price_lines
from ordnung.core.pricing.promotions import apply_promotions
from ordnung.core.pricing.shipping import quote_shipping
from ordnung.core.pricing.state import (
    Basket,
    Buyer,
    PricingServices,
    PricingState,
    StockHint,
    StockLookup,
    VariantLookup,
)
from ordnung.core.pricing.tax import apply_tax
from ordnung.core.pricing.totals import sum_totals

Step = Callable[[PricingState, PricingServices], Awaitable[None]]

#: lines → promotions → gifts → shipping → tax → totals; each step sees what the
#: earlier ones wrote (tax is computed on discounted lines and the chosen shipping)
STEPS: tuple[Step, ...] = (price_lines, apply_promotions, add_gifts, quote_shipping,
                           apply_tax, sum_totals)


class PricingPipeline:
    def __init__(self, plugins: PluginHost, variants: VariantLookup, stock: StockLookup,
                 require_tax: bool = True, plenty: StockHint | None = None) -> None:
        self.services = PricingServices(plugins, variants, stock, require_tax, plenty)

    async def run(self, basket: Basket, buyer: Buyer, *, strict: bool,
                  hints: bool = True) -> PricingState:
        """Price a basket and keep the state, for a caller that asks plugins more about
        the priced cart (placement validates it with the context pricing ended with).
        ``hints=False``: read every gift's stock (a placement whose hint was wrong)."""
        state = PricingState(basket, buyer, strict=strict, hints=hints)
        for step in STEPS:
            await step(state, self.services)
        return state

    async def price(self, basket: Basket, buyer: Buyer, *, strict: bool) -> PricedCart:
        """Price a basket. ``strict`` (placement) turns soft problems into errors:
        an unknown shipping method, a missing tax answer."""
        return (await self.run(basket, buyer, strict=strict)).result()
