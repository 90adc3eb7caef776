"""Free shipping from a spending threshold per currency.

The threshold is compared with the value of the goods **after discounts**
(each customer line's ``line_total + discount``; gift lines are worth
nothing), so a coupon cannot push a cart under the threshold and still ship
free. At or above the threshold the quote is free. Below it:

* with a ``fallback_prices`` entry for the currency, the same service is
  offered at that price, and its name says how much more to spend;
* without one, no quote is offered (another carrier, e.g. ``flat_rate``,
  is then the way to ship).

Currencies without a threshold are not served. Labels are PDFs (``labels.py``).
"""

from __future__ import annotations

import msgspec

from ordnung.plugin import Money, PricingContext, ShippingQuote, hookimpl, require_iso
from ordnung.plugins.carriers.labels import LabelCarrier
from ordnung.plugins.carriers.transit import add_business_days


class FreeShipping(LabelCarrier):
    """Free shipping over a threshold per currency; else a fallback price or no offer."""

    class Settings(msgspec.Struct, forbid_unknown_fields=True):
        #: goods value (after discounts) from which shipping is free, per currency
        thresholds: dict[str, int] = msgspec.field(
            default_factory=lambda: {"EUR": 5_000, "USD": 7_500, "GBP": 4_500})
        #: price below the threshold, per currency; a currency missing here is not offered
        fallback_prices: dict[str, int] = msgspec.field(default_factory=dict)
        service: str = "free"
        name: str = "Free shipping"
        transit_days: int = 3
        #: ISO country codes served; empty = everywhere
        countries: list[str] = msgspec.field(default_factory=list)
        tracking_prefix: str = "FS"
        carrier_title: str = "Parcel service"

        def __post_init__(self) -> None:
            if any(v < 0 for v in (*self.thresholds.values(), *self.fallback_prices.values())):
                raise ValueError("thresholds and fallback prices cannot be negative")
            if self.transit_days < 0:
                raise ValueError("transit_days cannot be negative")
            require_iso("countries", self.countries)

    def __init__(self, settings: FreeShipping.Settings) -> None:
        self.settings = settings
        self.tracking_prefix = settings.tracking_prefix

    def carrier_title(self) -> str:
        return self.settings.carrier_title

    @staticmethod
    def goods_value(ctx: PricingContext) -> int:
        return sum(line.line_total + line.discount for line in ctx.lines if not line.gift)

    @hookimpl
    def ordnung_shipping_quotes(self, ctx: PricingContext) -> list[ShippingQuote] | None:
        s = self.settings
        threshold = s.thresholds.get(ctx.currency)
        if threshold is None:
            return None
        if s.countries and (ctx.shipping_address is None
                            or ctx.shipping_address.country not in s.countries):
            return None
        expected = add_business_days(ctx.now.date(), s.transit_days)
        value = self.goods_value(ctx)
        if value >= threshold:
            return [ShippingQuote(service=s.service, name=s.name, price=0,
                                  expected_delivery=expected)]
        fallback = s.fallback_prices.get(ctx.currency)
        if fallback is None:
            return None
        missing = Money(threshold - value, ctx.currency).format()
        return [ShippingQuote(service=s.service,
                              name=f"{s.name} from {Money(threshold, ctx.currency).format()} "
                                   f"(spend {missing} more)",
                              price=fallback, expected_delivery=expected)]
