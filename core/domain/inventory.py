"""Stock per location and the movement ledger that explains every number."""

from __future__ import annotations

from datetime import datetime

import msgspec


class Location(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    id: str
    name: str
    #: lower first: reservations try locations in this order
    priority: int = 100
    active: bool = True


class StockLevel(msgspec.Struct, kw_only=True, frozen=True):
    sku: str
    location_id: str
    on_hand: int
    reserved: int
    #: on_hand - reserved (negative only for a SKU that allows backorders)
    available: int = 0

    def __post_init__(self) -> None:
        msgspec.structs.force_setattr(self, "available", self.on_hand - self.reserved)


class Movement(msgspec.Struct, kw_only=True, frozen=True):
    """One ledger entry. Summing ``on_hand_delta`` and ``reserved_delta`` per SKU
    and location gives the level exactly; the test-suite checks that it does."""

    id: str
    sku: str
    location_id: str
    #: receive | adjust | count | reserve | release | ship | restock
    kind: str
    on_hand_delta: int
    reserved_delta: int
    order_id: str | None = None
    reason: str = ""
    actor: str = ""
    at: datetime


class Allocation(msgspec.Struct, kw_only=True, frozen=True):
    """Where a line's units are reserved."""

    location_id: str
    quantity: int


class AvailabilityChange(msgspec.Struct, kw_only=True, frozen=True):
    """What channel plugins receive when a SKU's availability changed."""

    sku: str
    available: int
    channels: list[str]
    reason: str


class Channel(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    """A sales channel (web, etsy, ebay, pos, phone...). Orders carry theirs."""

    id: str
    name: str
    kind: str = "web"
    #: the default currency of the channel's carts and orders
    currency: str = "EUR"
    active: bool = True
    #: every currency the channel sells in (``currency`` always among them); a cart or
    #: order in any other is refused. Empty: ``currency`` only
    currencies: list[str] = []

    def sells_in(self, currency: str) -> bool:
        return currency == self.currency or currency in self.currencies
