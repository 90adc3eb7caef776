"""The customer's view of an order and its timeline: what a shopper may read.

Staff (admin keys) read the whole ``Order`` and every ``Event``. Everyone else — a
storefront key, a customer token, a stream token — reads this projection, which is
built here and nowhere else, so no route can forget a field. It is an allow-list: a
field added to ``Order`` later stays staff-only until it is added here on purpose.

Left out: the hold reason, the risk score and its reasons, staff notes (the
``order.note`` and ``order.risk_assessed`` events), who on the staff did what (key
ids become ``staff``), stock locations, internal priorities, the cancel reason (staff may
write it) and a payment's in-flight bookkeeping.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from ordnung.core.domain.addresses import Address
from ordnung.core.domain.events import Event
from ordnung.core.domain.orders import Order
from ordnung.core.domain.pricing import Adjustment, ExplanationStep, ShippingSelection, Totals
from ordnung.core.domain.shipments import TrackingEvent

#: timeline events a customer never sees at all
STAFF_EVENT_KINDS = frozenset({"order.note", "order.risk_assessed"})
#: event ``data`` keys a customer may see (anything else — reasons, notes, plugin names,
#: stock locations, scan counts — is staff-only)
CUSTOMER_EVENT_DATA = frozenset({"number", "total", "currency", "channel", "amount",
                                 "gateway", "carrier", "tracking_number",
                                 "expected_delivery", "status", "description",
                                 "refund_amount", "lines", "reference", "grants_terms",
                                 "via"})


class CustomerOrderLine(msgspec.Struct, kw_only=True):
    id: str
    sku: str
    name: str
    quantity: int
    unit_price: int
    line_total: int
    discount: int = 0
    tax: int = 0
    tax_rate: str = "0"
    gift: bool = False
    cancelled: int = 0
    shipped: int = 0
    returned: int = 0


class CustomerPayment(msgspec.Struct, kw_only=True):
    id: str
    gateway: str
    method: str = ""
    status: str
    amount: int
    authorized: int = 0
    captured: int = 0
    refunded: int = 0
    #: the gateway's id: a page may need it to finish a payment (3-D Secure)
    reference: str = ""
    #: pay later (invoice, cash on delivery)
    grants_terms: bool = False
    failure_reason: str = ""
    created_at: datetime


class CustomerShipmentLine(msgspec.Struct, kw_only=True):
    line_id: str
    sku: str
    quantity: int


class CustomerShipment(msgspec.Struct, kw_only=True):
    id: str
    status: str
    lines: list[CustomerShipmentLine]
    carrier: str = ""
    service: str = ""
    tracking_number: str = ""
    tracking: list[TrackingEvent] = []
    created_at: datetime
    shipped_at: datetime | None = None
    delivered_at: datetime | None = None


class CustomerReturnLine(msgspec.Struct, kw_only=True):
    line_id: str
    sku: str
    quantity: int


class CustomerReturn(msgspec.Struct, kw_only=True):
    id: str
    status: str
    lines: list[CustomerReturnLine]
    reason: str = ""
    refund_amount: int = 0
    created_at: datetime


class CustomerOrder(msgspec.Struct, kw_only=True):
    """An order as its customer (or the storefront that placed it) sees it."""

    id: str
    number: str
    channel: str
    customer_id: str | None = None
    email: str = ""
    status: str
    currency: str
    prices_include_tax: bool = False
    lines: list[CustomerOrderLine]
    adjustments: list[Adjustment] = []
    shipping: ShippingSelection | None = None
    shipping_address: Address | None = None
    billing_address: Address | None = None
    codes: list[str] = []
    totals: Totals
    payments: list[CustomerPayment] = []
    shipments: list[CustomerShipment] = []
    returns: list[CustomerReturn] = []
    explanation: list[ExplanationStep] = []
    metadata: dict[str, str] = {}
    event_seq: int = 0
    created_at: datetime
    updated_at: datetime


def _pick(obj: msgspec.Struct, cls: type[Any], **override: Any) -> Any:
    """``cls`` built from the fields of ``obj`` that ``cls`` declares."""
    names = set(cls.__struct_fields__) - set(override)
    return cls(**{n: getattr(obj, n) for n in names}, **override)


def customer_order(order: Order) -> CustomerOrder:
    """The customer's view of ``order``."""
    return _pick(
        order, CustomerOrder,
        lines=[_pick(line, CustomerOrderLine) for line in order.lines],
        payments=[_pick(p, CustomerPayment) for p in order.payments],
        shipments=[_pick(s, CustomerShipment,
                         lines=[_pick(sl, CustomerShipmentLine) for sl in s.lines])
                   for s in order.shipments],
        returns=[_pick(r, CustomerReturn, lines=[_pick(rl, CustomerReturnLine)
                                                 for rl in r.lines])
                 for r in order.returns])


def customer_actor(actor: str, customer_id: str | None) -> str:
    """Who did it, as a customer may know: themselves, their shop's storefront, the
    shop's staff or the system — never a key id."""
    if customer_id is not None and actor == f"customer:{customer_id}":
        return "you"
    kind = actor.partition(":")[0]
    if kind == "admin":
        return "staff"
    if kind in ("storefront", "customer"):
        return kind
    return "system"


def customer_event(event: Event, customer_id: str | None) -> Event | None:
    """The customer's view of one timeline event, or None if it is staff-only."""
    if event.kind in STAFF_EVENT_KINDS:
        return None
    return msgspec.structs.replace(
        event, actor=customer_actor(event.actor, customer_id),
        data={k: v for k, v in event.data.items() if k in CUSTOMER_EVENT_DATA})


def customer_timeline(events: list[Event], customer_id: str | None) -> list[Event]:
    return [v for v in (customer_event(e, customer_id) for e in events) if v is not None]
