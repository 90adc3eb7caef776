"""Weight-band shipping: a price per weight band, per zone of destination countries.

A zone is a list of ISO country codes (``"*"`` = every country no other zone
names). The cart's weight (``ctx.weight_grams``: every line, gift lines
included, plus ``packaging_grams``) picks the first band whose ``up_to_grams``
it does not exceed. No quote is offered when the destination is in no zone,
the cart is heavier than the zone's heaviest band, or the band has no price
in the cart's currency. Labels are PDFs (see ``labels.py``).
"""

from __future__ import annotations

import msgspec

from ordnung.plugin import EU_MEMBER_STATES, PricingContext, ShippingQuote, hookimpl, require_iso
from ordnung.plugins.carriers.labels import LabelCarrier
from ordnung.plugins.carriers.transit import add_business_days


class Band(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    #: the heaviest cart (grams, inclusive) this band prices
    up_to_grams: int
    #: price per currency in minor units
    prices: dict[str, int]

    def __post_init__(self) -> None:
        if self.up_to_grams <= 0:
            raise ValueError("up_to_grams must be positive")
        if any(price < 0 for price in self.prices.values()):
            raise ValueError("band prices cannot be negative")


class Zone(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    name: str
    #: ISO 3166-1 alpha-2 codes; "*" = all countries no other zone names
    countries: list[str]
    bands: list[Band]
    #: business days from order to delivery
    transit_days: int = 3

    def __post_init__(self) -> None:
        if not self.bands:
            raise ValueError(f"zone {self.name!r} needs at least one band")
        limits = [band.up_to_grams for band in self.bands]
        if limits != sorted(set(limits)):
            raise ValueError(f"zone {self.name!r}: bands must be in ascending up_to_grams order")
        if self.transit_days < 0:
            raise ValueError("transit_days cannot be negative")
        require_iso(f"zone {self.name!r}: countries", self.countries, wildcard=True)


def _default_zones() -> list[Zone]:
    eu = sorted(EU_MEMBER_STATES - {"DE"})
    return [
        Zone(name="domestic", countries=["DE"], transit_days=2, bands=[
            Band(up_to_grams=1_000, prices={"EUR": 495}),
            Band(up_to_grams=5_000, prices={"EUR": 695}),
            Band(up_to_grams=31_500, prices={"EUR": 1195})]),
        Zone(name="eu", countries=eu, transit_days=4, bands=[
            Band(up_to_grams=1_000, prices={"EUR": 995}),
            Band(up_to_grams=5_000, prices={"EUR": 1495}),
            Band(up_to_grams=31_500, prices={"EUR": 2995})]),
        Zone(name="world", countries=["*"], transit_days=8, bands=[
            Band(up_to_grams=1_000, prices={"EUR": 1995, "USD": 2195}),
            Band(up_to_grams=5_000, prices={"EUR": 3995, "USD": 4395}),
            Band(up_to_grams=31_500, prices={"EUR": 7995, "USD": 8795})]),
    ]


class WeightBands(LabelCarrier):
    """Parcel prices by weight band and destination zone; PDF labels with a barcode."""

    class Settings(msgspec.Struct, forbid_unknown_fields=True):
        service: str = "parcel"
        name: str = "Parcel"
        zones: list[Zone] = msgspec.field(default_factory=_default_zones)
        #: added to the goods' weight for the box and filling
        packaging_grams: int = 0
        tracking_prefix: str = "WB"
        #: the carrier's name printed on labels
        carrier_title: str = "Parcel service"

        def __post_init__(self) -> None:
            wildcards = [zone.name for zone in self.zones if "*" in zone.countries]
            if len(wildcards) > 1:
                raise ValueError(f"only one zone may use '*' (found {wildcards})")
            if self.packaging_grams < 0:
                raise ValueError("packaging_grams cannot be negative")

    def __init__(self, settings: WeightBands.Settings) -> None:
        self.settings = settings
        self.tracking_prefix = settings.tracking_prefix

    def carrier_title(self) -> str:
        return self.settings.carrier_title

    def zone_for(self, country: str) -> Zone | None:
        for zone in self.settings.zones:
            if country in zone.countries:
                return zone
        return next((zone for zone in self.settings.zones if "*" in zone.countries), None)

    @hookimpl
    def ordnung_shipping_quotes(self, ctx: PricingContext) -> list[ShippingQuote] | None:
        if ctx.shipping_address is None:
            return None
        zone = self.zone_for(ctx.shipping_address.country)
        if zone is None:
            return None
        weight = ctx.weight_grams + self.settings.packaging_grams
        band = next((b for b in zone.bands if weight <= b.up_to_grams), None)
        if band is None or ctx.currency not in band.prices:
            return None
        return [ShippingQuote(
            service=self.settings.service,
            name=f"{self.settings.name} ({zone.name}, up to {band.up_to_grams / 1000:g} kg)",
            price=band.prices[ctx.currency],
            expected_delivery=add_business_days(ctx.now.date(), zone.transit_days))]
