"""Store pickup: free, collected at one of the shop's pick-up points.

Each point is its own service (``store_pickup:<point id>``), free of charge,
ready on the **next business day** after the order (Saturdays, Sundays and
the point's ``closed_dates`` skipped). Shipping a pickup shipment prints a
pick-up slip (a PDF like a carrier label: the point's address, the customer's
name, the order number and the pick-up code as a Code 128 barcode that the
counter scans). When the customer collects, staff post a tracking event with
status ``picked_up`` (or ``delivered``), which delivers the shipment.
"""

from __future__ import annotations

from datetime import date, timedelta

import msgspec

from ordnung.plugin import (
    InvalidInput,
    Order,
    PricingContext,
    Shipment,
    ShippingQuote,
    hookimpl,
    require_iso,
)
from ordnung.plugins.carriers.labels import LabelCarrier


class PickupPoint(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    id: str
    name: str
    line1: str
    city: str
    #: ISO 3166-1 alpha-2
    country: str
    postal_code: str = ""
    opening_hours: str = ""
    #: days the point is closed besides weekends (holidays), ISO dates
    closed_dates: list[date] = msgspec.field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.id or ":" in self.id:
            raise ValueError("a pick-up point id must be non-empty and contain no ':'")
        require_iso(f"points[{self.id!r}].country", [self.country])

    def lines(self) -> list[str]:
        out = [self.name, self.line1, " ".join(p for p in (self.postal_code, self.city) if p),
               self.country]
        if self.opening_hours:
            out.append(f"Open: {self.opening_hours}")
        return out


def next_business_day(start: date, closed: list[date]) -> date:
    """The first day after ``start`` that is a weekday and not closed."""
    day = start + timedelta(days=1)
    while day.weekday() >= 5 or day in closed:
        day += timedelta(days=1)
    return day


class StorePickup(LabelCarrier):
    """Free pick-up at the shop's points, ready the next business day."""

    label_heading = "PICK-UP AT"

    class Settings(msgspec.Struct, forbid_unknown_fields=True):
        points: list[PickupPoint] = msgspec.field(default_factory=lambda: [PickupPoint(
            id="main", name="Shop", line1="Hauptstraße 1", postal_code="10115", city="Berlin",
            country="DE", opening_hours="Mon–Fri 9:00–18:00")])
        #: offer pickup only to shipping addresses in these countries; empty = any
        countries: list[str] = msgspec.field(default_factory=list)
        #: currencies pickup is offered in (the price is always 0)
        currencies: list[str] = msgspec.field(default_factory=lambda: ["EUR"])
        tracking_prefix: str = "PU"

        def __post_init__(self) -> None:
            require_iso("countries", self.countries)
            ids = [point.id for point in self.points]
            if len(ids) != len(set(ids)):
                raise ValueError("pick-up point ids must be unique")

    def __init__(self, settings: StorePickup.Settings) -> None:
        self.settings = settings
        self.tracking_prefix = settings.tracking_prefix

    def carrier_title(self) -> str:
        return "Store pickup"

    def point(self, service: str) -> PickupPoint:
        for point in self.settings.points:
            if f"pickup-{point.id}" == service:
                return point
        raise InvalidInput(f"unknown pick-up point for service {service!r}", field="service")

    @hookimpl
    def ordnung_shipping_quotes(self, ctx: PricingContext) -> list[ShippingQuote] | None:
        s = self.settings
        if ctx.currency not in s.currencies:
            return None
        if s.countries and (ctx.shipping_address is None
                            or ctx.shipping_address.country not in s.countries):
            return None
        today = ctx.now.date()
        return [ShippingQuote(service=f"pickup-{point.id}", name=f"Pick up at {point.name}",
                              price=0,
                              expected_delivery=next_business_day(today, point.closed_dates))
                for point in s.points]

    def label_recipient(self, order: Order, shipment: Shipment) -> list[str]:
        who = (order.shipping_address or order.billing_address)
        name = who.name if who else order.email
        return [*self.point(shipment.service).lines(), f"For: {name}"]
