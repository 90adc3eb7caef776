"""Fulfilment priority for VIP, high-value and frequent customers.

Points are summed by the core over every ``ordnung_fulfilment_priority`` answer
and stored on the order at placement; ``engine.fulfilment.queue()`` lists the
highest first, then the oldest. This plugin gives

* ``vip_points`` when the customer carries one of ``vip_tags`` (case-insensitive);
* ``high_value_points`` when the order's total reaches ``high_value[currency]``;
* ``frequent_points`` when the customer placed more than ``frequent_after``
  earlier orders (cancelled ones do not count; 0 turns the rule off).

The rules add up: a VIP placing a high-value order gets both.
"""

from __future__ import annotations

import msgspec

from ordnung.plugin import Customer, Order, hookimpl


class VipPriority:
    """Puts orders of VIP, high-value and frequent customers first in the fulfilment queue."""

    class Settings(msgspec.Struct, forbid_unknown_fields=True):
        vip_tags: list[str] = msgspec.field(default_factory=lambda: ["vip"])
        vip_points: int = 100
        #: order total (minor units) per currency from which an order is high-value
        high_value: dict[str, int] = msgspec.field(
            default_factory=lambda: {"EUR": 50_000, "USD": 50_000, "GBP": 50_000})
        high_value_points: int = 50
        #: more than this many earlier orders make a frequent customer; 0 = off
        frequent_after: int = 0
        frequent_points: int = 20

    def __init__(self, settings: VipPriority.Settings) -> None:
        self.settings = settings
        self.vip_tags = {t.strip().lower() for t in settings.vip_tags}

    def points(self, order: Order, customer: Customer | None) -> int:
        s = self.settings
        total = 0
        if customer is not None and self.vip_tags & {t.strip().lower() for t in customer.tags}:
            total += s.vip_points
        threshold = s.high_value.get(order.currency)
        if threshold is not None and order.totals.total >= threshold:
            total += s.high_value_points
        if customer is not None and s.frequent_after and customer.order_count > s.frequent_after:
            total += s.frequent_points
        return total

    @hookimpl
    def ordnung_fulfilment_priority(self, order: Order, customer: Customer | None) -> int | None:
        return self.points(order, customer) or None
