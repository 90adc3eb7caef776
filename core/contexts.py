"""Read-only views the core hands to plugins.

Plugins get snapshots, never live rows or the session: they answer, the
core decides and writes. That keeps every write inside the core's
transaction and every plugin testable without a database.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from ordnung.core.domain.addresses import Address
from ordnung.core.domain.customers import Customer
from ordnung.core.domain.orders import Order, OrderLine


class PricingContext(msgspec.Struct, kw_only=True, frozen=True):
    """A cart on its way through the pricing pipeline.

    ``lines`` are the customer's own lines priced from the catalogue (no gift
    lines yet); ``subtotal`` is their sum. ``customer`` is None for guests.
    """

    currency: str
    channel: str
    customer: Customer | None
    email: str
    lines: list[OrderLine]
    subtotal: int
    weight_grams: int
    shipping_address: Address | None
    billing_address: Address | None
    codes: list[str]
    shipping_method: str | None
    now: datetime
    #: set when re-pricing an existing order
    order_id: str | None = None


class TransitionContext(msgspec.Struct, kw_only=True, frozen=True):
    """A transition about to be committed, for guards."""

    machine: str
    entity_id: str
    source: str
    event: str
    target: str
    actor: str
    order: Order | None
    data: dict[str, Any] = {}


class RiskContext(msgspec.Struct, kw_only=True, frozen=True):
    """What a risk plugin may look at when an order is placed."""

    order: Order
    customer: Customer | None
    #: client facts the storefront passed on (ip, user agent, card fingerprint); over
    #: the REST API "ip" comes only from a trusted source, or is absent
    client: dict[str, str] = {}
    recent_orders_by_customer: int = 0
    recent_orders_by_email: int = 0
