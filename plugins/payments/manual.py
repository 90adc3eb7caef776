"""Manual payments: bank transfer, invoice and cash on delivery.

Nothing is charged by a machine: the payment is *awaiting payment* until staff
mark it paid (a capture: ``engine.payments.capture(order_id)``, partial
amounts too). Invoice and cash on delivery grant terms — the order may be
picked, packed and shipped before the money arrives; bank transfer does not,
so its order waits in ``placed`` until the transfer is marked paid. Cash on
delivery is marked paid once the courier has collected it, i.e. after the
delivery. A card number sent as the payment token is refused and goes
nowhere.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from ordnung.plugin import GatewayResult, Order, PaymentMethod, PaymentRequest, hookimpl
from ordnung.plugins.payments.cards import CARD_NUMBER_REFUSED, looks_like_card_number

Method = Literal["bank_transfer", "invoice", "cash_on_delivery"]
NAMES = {"bank_transfer": "Bank transfer", "invoice": "Invoice",
         "cash_on_delivery": "Cash on delivery"}
GRANTS_TERMS = {"invoice", "cash_on_delivery"}


class ManualPayments:
    """Bank transfer, invoice and cash on delivery, marked paid by staff."""

    class Settings(msgspec.Struct, forbid_unknown_fields=True):
        methods: list[Method] = msgspec.field(
            default_factory=lambda: ["bank_transfer", "invoice", "cash_on_delivery"])
        #: orders above this total (minor units) may not use terms; 0 = no limit
        terms_limit: int = 0

    def __init__(self, settings: ManualPayments.Settings) -> None:
        self.settings = settings

    def _grants(self, method: str, amount: int) -> bool:
        limit = self.settings.terms_limit
        return method in GRANTS_TERMS and (limit == 0 or amount <= limit)

    @hookimpl
    def ordnung_payment_methods(self, order: Order) -> list[PaymentMethod]:
        return [PaymentMethod(method=m, name=NAMES[m],
                              grants_terms=self._grants(m, order.totals.total))
                for m in self.settings.methods]

    @hookimpl
    def ordnung_authorize(self, request: PaymentRequest) -> GatewayResult:
        if looks_like_card_number(request.token):
            return GatewayResult(outcome="declined", reason=CARD_NUMBER_REFUSED)
        method = request.method or "bank_transfer"
        if method not in self.settings.methods:
            return GatewayResult(outcome="declined", reason=f"method {method!r} is not offered")
        # no gateway will confirm it: staff capturing it ("money received") is its
        # confirmation
        return GatewayResult(outcome="pending", reference=f"manual-{request.payment_id}",
                             grants_terms=self._grants(method, request.amount),
                             confirmed_by_capture=True)

    @hookimpl
    def ordnung_capture(self, request: PaymentRequest) -> GatewayResult:
        return GatewayResult(outcome="approved", reference=request.reference)

    @hookimpl
    def ordnung_refund(self, request: PaymentRequest) -> GatewayResult:
        return GatewayResult(outcome="approved", reference=request.reference)

    @hookimpl
    def ordnung_void(self, request: PaymentRequest) -> GatewayResult:
        return GatewayResult(outcome="approved", reference=request.reference)
