"""Shipments: which units leave from where, how they were packed and tracked."""

from __future__ import annotations

from datetime import datetime

import msgspec


class ShipmentLine(msgspec.Struct, kw_only=True):
    line_id: str
    sku: str
    barcode: str = ""
    quantity: int
    packed: int = 0


class TrackingEvent(msgspec.Struct, kw_only=True, frozen=True):
    status: str  # in_transit | out_for_delivery | delivered | exception
    description: str = ""
    at: datetime


class Shipment(msgspec.Struct, kw_only=True):
    id: str
    status: str = "pending"
    location_id: str = ""
    lines: list[ShipmentLine]
    carrier: str = ""
    service: str = ""
    tracking_number: str = ""
    label_url: str = ""
    tracking: list[TrackingEvent] = []
    created_at: datetime
    shipped_at: datetime | None = None
    delivered_at: datetime | None = None


class Label(msgspec.Struct, kw_only=True, frozen=True):
    """What a carrier plugin returns when a shipment is shipped."""

    tracking_number: str
    label_url: str = ""


class TrackingUpdate(msgspec.Struct, kw_only=True, frozen=True):
    """A carrier's tracking news for one tracking number."""

    tracking_number: str
    status: str
    description: str = ""
    at: datetime | None = None


class ListedShipment(Shipment, kw_only=True):
    """A shipment in a list across orders: the shipment and the order it belongs to."""

    order_id: str
    order_number: str
