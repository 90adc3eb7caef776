"""The questions services ask about an order, payment, shipment or return.

Services ask these instead of comparing state names, so a plugin that adds a state
(``StateExtension``) changes no service: every answer comes from the machines' graph
and capabilities (see ``Machine.went_through``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from ordnung.core.lifecycle.machine import Machine


class Stateful(Protocol):
    @property
    def status(self) -> str: ...


class Lifecycle:
    def __init__(self, machines: Mapping[str, Machine]) -> None:
        self.order = machines["order"]
        self.payment = machines["payment"]
        self.shipment = machines["shipment"]
        self.returns = machines["return"]

    # -- orders -------------------------------------------------------------------
    def order_cancelled(self, order: Stateful) -> bool:
        return self.order.went_through(order.status, "cancel")

    # -- payments -----------------------------------------------------------------
    def payment_unanswered(self, payment: Stateful) -> bool:
        """Created, and no answer of the gateway recorded yet."""
        return self.payment.is_initial(payment.status)

    def payment_declined(self, payment: Stateful) -> bool:
        return self.payment.went_through(payment.status, "fail")

    def payment_voided(self, payment: Stateful) -> bool:
        return self.payment.went_through(payment.status, "void")

    def refund_may_close(self, payment: Stateful) -> bool:
        """Whether refunding all that was captured ends the payment (``refund_all``); not
        while part of the authorization may still be captured."""
        return self.payment.target(payment.status, "refund_all") is not None

    def payment_preference(self, payment: Stateful,
                           capability: str) -> tuple[bool, bool, bool] | None:
        """How apt ``payment`` is for an operation that names no payment (capture, refund,
        void): None if its state does not allow ``capability``; otherwise, lower first.
        Money a gateway answered for comes first, then money collected outside any
        gateway, then a payment the gateway has still to confirm, the unanswered last."""
        status = payment.status
        if not self.payment.allows(status, capability):
            return None
        return (self.payment.allows(status, "authorize"),
                self.payment.went_through(status, "await_payment"),
                self.payment.is_initial(status))

    # -- shipments ----------------------------------------------------------------
    def shipment_live(self, shipment: Stateful) -> bool:
        return not self.shipment.went_through(shipment.status, "cancel")

    def shipment_left(self, shipment: Stateful) -> bool:
        """Shipped (the units left its location), whether delivered since or not."""
        return self.shipment.went_through(shipment.status, "ship")

    def shipment_delivered(self, shipment: Stateful) -> bool:
        return self.shipment.went_through(shipment.status, "deliver")

    def shipment_holds_units(self, shipment: Stateful) -> bool:
        """Neither shipped nor cancelled: its units are still set aside at its location."""
        return self.shipment_live(shipment) and not self.shipment_left(shipment)

    # -- returns ------------------------------------------------------------------
    def return_open(self, rma: Stateful) -> bool:
        """Requested or approved: its units count against what may still be returned."""
        return not (self.returns.went_through(rma.status, "receive")
                    or self.returns.went_through(rma.status, "reject"))
