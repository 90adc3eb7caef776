"""The order: the priced snapshot frozen at placement, and everything that follows."""

from __future__ import annotations

from datetime import datetime

import msgspec

from ordnung.core.domain.addresses import Address
from ordnung.core.domain.inventory import Allocation
from ordnung.core.domain.payments import Payment
from ordnung.core.domain.pricing import Adjustment, ExplanationStep, ShippingSelection, Totals
from ordnung.core.domain.returns import ReturnRequest
from ordnung.core.domain.shipments import Shipment


class OrderLine(msgspec.Struct, kw_only=True):
    id: str
    sku: str
    name: str
    barcode: str = ""
    quantity: int
    unit_price: int
    #: unit_price * quantity
    line_total: int
    #: share of discounts allocated to this line (<= 0)
    discount: int = 0
    tax: int = 0
    tax_rate: str = "0"
    tax_class: str = "standard"
    weight_grams: int = 0
    gift: bool = False
    source: str = "core"
    cancelled: int = 0
    shipped: int = 0
    returned: int = 0
    allocations: list[Allocation] = []

    @property
    def open_quantity(self) -> int:
        """Units still to ship: ordered minus cancelled minus shipped."""
        return self.quantity - self.cancelled - self.shipped


class Order(msgspec.Struct, kw_only=True):
    id: str
    number: str
    channel: str
    customer_id: str | None = None
    email: str = ""
    status: str
    currency: str
    prices_include_tax: bool = False
    lines: list[OrderLine]
    adjustments: list[Adjustment] = []
    shipping: ShippingSelection | None = None
    shipping_address: Address | None = None
    billing_address: Address | None = None
    codes: list[str] = []
    totals: Totals
    payments: list[Payment] = []
    shipments: list[Shipment] = []
    returns: list[ReturnRequest] = []
    explanation: list[ExplanationStep] = []
    priority: int = 0
    hold_reason: str = ""
    risk_score: int = 0
    risk_reasons: list[str] = []
    cancel_reason: str = ""
    metadata: dict[str, str] = {}
    #: sequence number of the last timeline event
    event_seq: int = 0
    created_at: datetime
    updated_at: datetime
    version: int = 0

    def line(self, line_id: str) -> OrderLine:
        for line in self.lines:
            if line.id == line_id:
                return line
        from ordnung.core.errors import NotFound

        raise NotFound("order line", line_id)

    def payment(self, payment_id: str) -> Payment:
        for p in self.payments:
            if p.id == payment_id:
                return p
        from ordnung.core.errors import NotFound

        raise NotFound("payment", payment_id)

    def shipment(self, shipment_id: str) -> Shipment:
        for s in self.shipments:
            if s.id == shipment_id:
                return s
        from ordnung.core.errors import NotFound

        raise NotFound("shipment", shipment_id)

    def return_request(self, return_id: str) -> ReturnRequest:
        for r in self.returns:
            if r.id == return_id:
                return r
        from ordnung.core.errors import NotFound

        raise NotFound("return", return_id)
