"""Flat-rate shipping: one price per currency, an expected delivery date, labels, tracking."""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Any

import msgspec

from ordnung.plugin import (
    Label,
    Order,
    PricingContext,
    Shipment,
    ShippingQuote,
    TrackingUpdate,
    hookimpl,
    require_iso,
)
from ordnung.plugins.carriers.transit import add_business_days


class FlatRate:
    """One flat shipping price per currency, optionally free above a threshold."""

    class Settings(msgspec.Struct, forbid_unknown_fields=True):
        #: price per currency in minor units
        prices: dict[str, int] = msgspec.field(
            default_factory=lambda: {"EUR": 495, "USD": 595, "GBP": 450})
        service: str = "standard"
        name: str = "Standard shipping"
        #: business days from order to delivery
        transit_days: int = 3
        #: ISO country codes served; empty = everywhere
        countries: list[str] = []
        tracking_prefix: str = "FR"

        def __post_init__(self) -> None:
            require_iso("countries", self.countries)

    def __init__(self, settings: FlatRate.Settings) -> None:
        self.settings = settings

    @hookimpl
    def ordnung_shipping_quotes(self, ctx: PricingContext) -> list[ShippingQuote] | None:
        s = self.settings
        if ctx.currency not in s.prices:
            return None
        address = ctx.shipping_address
        if s.countries and (address is None or address.country not in s.countries):
            return None
        return [ShippingQuote(service=s.service, name=s.name, price=s.prices[ctx.currency],
                              expected_delivery=add_business_days(ctx.now.date(),
                                                                  s.transit_days))]

    @hookimpl
    def ordnung_create_label(self, order: Order, shipment: Shipment) -> Label:
        number = f"{self.settings.tracking_prefix}{secrets.token_hex(5).upper()}"
        return Label(tracking_number=number)

    @hookimpl
    def ordnung_parse_tracking(self, payload: dict[str, Any]) -> list[TrackingUpdate]:
        at = payload.get("at")
        return [TrackingUpdate(tracking_number=str(payload["tracking_number"]),
                               status=str(payload["status"]),
                               description=str(payload.get("description", "")),
                               at=datetime.fromisoformat(at) if at else None)]
