"""Payments: authorize, capture, refund, void, and gateway webhooks.

A gateway call never happens inside a database transaction. Each operation
is three steps: (1) in a transaction, check the invariants and mark the
amount *in flight* on the payment, so a concurrent request cannot spend the
same money; (2) call the gateway plugin with an idempotency key derived from
the payment; (3) in a transaction, apply the answer and clear the mark.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, Literal, cast

import structlog

from ordnung.core.domain.common import new_id, utcnow
from ordnung.core.domain.orders import Order
from ordnung.core.domain.payments import (
    GatewayResult,
    OperationLookup,
    Payment,
    PaymentMethod,
    PaymentRequest,
    PaymentUpdate,
)
from ordnung.core.errors import (
    Conflict,
    InvalidInput,
    InvariantViolation,
    NotFound,
    PaymentDeclined,
)
from ordnung.core.plugin_host import AnswerTypeError
from ordnung.core.runtime import OrderChange, Runtime, bound

log = structlog.get_logger("ordnung.payments")

Operation = Literal["authorize", "capture", "refund", "void"]
STALE_IN_FLIGHT = timedelta(minutes=5)
#: a placement's authorization still in flight after this long has lost its process (no
#: gateway call takes this long); repeating the placement then finishes it
RESUME_AUTHORIZATION_AFTER = timedelta(seconds=30)


class PaymentService:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def check_gateway(self, gateway: str) -> None:
        if not self.rt.plugins.implements(gateway, "ordnung_authorize"):
            gateways = sorted(self.rt.plugins.implementers("ordnung_authorize"))
            raise InvalidInput(f"unknown payment gateway {gateway!r} "
                               f"(available: {', '.join(gateways) or 'none'})",
                               field="payment.gateway")

    async def methods(self, order_id: str) -> list[PaymentMethod]:
        order = await self.rt.orders.get(order_id)
        out: list[PaymentMethod] = []
        for plugin, methods in await self.rt.plugins.call("ordnung_payment_methods",
                                                          order=order):
            out.extend(PaymentMethod(method=m.method, name=m.name, grants_terms=m.grants_terms,
                                     gateway=plugin) for m in methods)
        return out

    # -- shared steps ---------------------------------------------------------------
    @staticmethod
    def _mark(payment: Payment, operation: Operation, amount: int) -> None:
        if payment.in_flight and payment.in_flight_since and (
                utcnow() - payment.in_flight_since) < STALE_IN_FLIGHT:
            raise Conflict(f"payment {payment.id} has a {payment.in_flight} in progress; retry "
                           "when it has finished", payment_id=payment.id)
        payment.in_flight = operation
        payment.operations += 1
        payment.in_flight_amount = amount
        payment.in_flight_since = utcnow()

    @staticmethod
    def _clear(payment: Payment) -> None:
        payment.in_flight = ""
        payment.in_flight_amount = 0
        payment.in_flight_since = None

    def _request(self, order: Order, payment: Payment, amount: int, operation: str,
                 token: str = "") -> PaymentRequest:
        return PaymentRequest(
            payment_id=payment.id, order_id=order.id, order_number=order.number, amount=amount,
            currency=order.currency, method=payment.method, token=token,
            reference=payment.reference,
            idempotency_key=f"{payment.id}:{operation}:{payment.operations}",
            customer_email=order.email)

    async def _call(self, gateway: str, hook: str, request: PaymentRequest) -> GatewayResult:
        try:
            result = await self.rt.plugins.call(hook, to=gateway, request=request)
        except AnswerTypeError:
            raise
        except Exception as exc:
            log.warning("gateway call failed", gateway=gateway, hook=hook, error=repr(exc))
            return GatewayResult(outcome="declined", reason=f"gateway error: {exc}")
        if result is None:
            return GatewayResult(outcome="declined",
                                 reason=f"{gateway} does not implement {hook}")
        return cast(GatewayResult, result)

    # -- authorize ------------------------------------------------------------------
    async def authorize(self, order_id: str, *, gateway: str, method: str = "", token: str = "",
                        actor: str = "system") -> Order:
        """Start a new payment for what the order's live payments do not cover yet."""
        self.check_gateway(gateway)

        async def start(change: OrderChange) -> str:
            order = change.order
            change.require("order", order, "authorize")
            covered = sum(max(p.authorized, p.amount if p.awaiting else 0)
                          for p in order.payments if p.live)
            due = order.totals.total - covered
            if due <= 0:
                raise Conflict("the order's payments already cover its total",
                               order_id=order.id)
            payment = Payment(id=new_id("pay"), gateway=gateway, method=method, amount=due,
                              created_at=utcnow())
            self._mark(payment, "authorize", due)
            order.payments.append(payment)
            change.emit("payment.created", machine="payment", entity_id=payment.id,
                        to_state=payment.status, data={"gateway": gateway, "amount": due})
            return payment.id

        payment_id, _ = await self.rt.change_order(order_id, actor, start)
        return await self.run_authorization(order_id, payment_id, token, one_shot=False,
                                            actor=actor)

    async def run_authorization(self, order_id: str, payment_id: str, token: str, *,
                                one_shot: bool, actor: str = "system",
                                order: Order | None = None) -> Order:
        """Ask the gateway to authorize a payment already marked in flight, and record it.

        The answer is recorded only if that authorization is still in flight: whoever
        asked the gateway second (a resumed placement) got the same answer for the same
        idempotency key, and finds it recorded already.
        """
        with bound(order_id=order_id, payment_id=payment_id):
            if order is None or order.id != order_id:
                order = await self.rt.orders.get(order_id)
            payment = order.payment(payment_id)
            result = await self._call(payment.gateway, "ordnung_authorize",
                                      self._request(order, payment, payment.amount, "authorize",
                                                    token))
            _, order = await self.record_authorization(
                order_id, payment_id, payment.operations, result, one_shot=one_shot,
                actor=actor, order=order)
            if result.outcome == "declined":
                raise PaymentDeclined(payment.gateway, result.reason or "declined",
                                      order_id=order_id, payment_id=payment_id,
                                      order_status=order.status)
            return order

    async def record_authorization(self, order_id: str, payment_id: str, operations: int,
                                   result: GatewayResult, *, one_shot: bool,
                                   actor: str = "system", order: Order | None = None,
                                   note: dict[str, Any] | None = None) -> tuple[bool, Order]:
        """Record the gateway's answer to the authorization numbered ``operations``, if it
        is still in flight (True if this call recorded it). A decline of a ``one_shot``
        placement cancels the order and releases its stock; an approval that finds the
        order cancelled voids the hold. ``note`` is recorded with it as a
        ``payment.reconciled`` event (what the reconciliation job did)."""
        applied = False

        async def apply(change: OrderChange) -> None:
            nonlocal applied
            p = change.order.payment(payment_id)
            applied = p.in_flight == "authorize" and p.operations == operations
            if not applied:
                return
            self._clear(p)
            if note is not None:
                change.emit("payment.reconciled", machine="payment", entity_id=p.id,
                            data={**note, "outcome": result.outcome})
            if result.reference:
                p.reference = result.reference
                change.remember(f"payment:{p.gateway}", result.reference, payment_id)
            if result.outcome == "approved":
                p.authorized = min(result.amount or p.amount, p.amount)
                p.grants_terms = result.grants_terms
                await change.transition("payment", p, "authorize",
                                        data={"amount": p.authorized,
                                              "reference": p.reference})
            elif result.outcome == "pending":
                # not money yet: the gateway confirms later, or (money collected
                # outside any gateway) staff confirm it by capturing it
                p.grants_terms = result.grants_terms
                await change.transition(
                    "payment", p, "await_payment" if result.confirmed_by_capture
                    else "await_confirmation",
                    data={"reference": p.reference, "grants_terms": p.grants_terms})
            else:
                p.failure_reason = result.reason or "declined"
                await change.transition("payment", p, "fail",
                                        data={"reason": p.failure_reason})
                if one_shot:
                    await self._cancel_placement(change, "payment declined")

        _, order = await self.rt.change_order(order_id, actor, apply, known=order)
        if applied and result.outcome == "approved" and \
                self.rt.lifecycle.order_cancelled(order):
            # cancelled while the gateway was answering: give the hold back
            order = await self.void_open(order, actor=actor)
        return applied, order

    @staticmethod
    async def _cancel_placement(change: OrderChange, reason: str) -> None:
        """A placement whose payment failed holds nothing: its stock and claims go back."""
        if change.can("order", change.order, "cancel"):
            await change.release_open_reservations(reason)
            await change.release_claims()
            change.order.cancel_reason = reason
            await change.transition("order", change.order, "cancel", data={"reason": reason})

    # -- reconciliation ------------------------------------------------------------------
    async def lookup(self, order: Order, payment: Payment,
                     operation: Operation) -> OperationLookup | None:
        """Ask the gateway what became of the payment's operation in flight, by the same
        idempotency key; None if the gateway cannot tell (no such hook, or it failed)."""
        if not self.rt.plugins.implements(payment.gateway, "ordnung_lookup_operation"):
            return None
        request = self._request(order, payment, payment.in_flight_amount or payment.amount,
                                operation)
        try:
            found = await self.rt.plugins.call("ordnung_lookup_operation", to=payment.gateway,
                                               operation=operation, request=request)
        except AnswerTypeError as exc:
            # a broken answer tells nothing: the safe path (void) must still be taken
            log.error("gateway lookup answered the wrong type", gateway=payment.gateway,
                      error=exc.detail)
            return None
        except Exception as exc:
            log.warning("gateway lookup failed", gateway=payment.gateway, error=repr(exc))
            return None
        return cast(OperationLookup | None, found)

    async def abandon_authorization(self, order_id: str, payment_id: str, operations: int, *,
                                    one_shot: bool, reason: str, note: dict[str, Any],
                                    actor: str = "system") -> tuple[bool, Order]:
        """Give up an authorization whose outcome cannot be learnt: void it with the gateway
        (the hold, if there is one, goes back), fail nothing silently, and cancel a
        ``one_shot`` placement, releasing its stock. Safe to repeat: a void already sent
        (the process died after it) is sent again with the same idempotency key."""
        async def start(change: OrderChange) -> bool:
            p = change.order.payment(payment_id)
            if p.in_flight == "authorize" and p.operations == operations:
                # from now on no late answer of the authorization is recorded, and no
                # repeated placement resumes it
                p.in_flight = "void"
                p.operations += 1
                p.in_flight_amount = p.amount
                p.in_flight_since = utcnow()
                return True
            return p.in_flight == "void" and self.rt.lifecycle.payment_unanswered(p) and (
                p.operations == operations)

        go, order = await self.rt.change_order(order_id, actor, start)
        if not go:
            return False, order
        payment = order.payment(payment_id)
        result = await self._call(payment.gateway, "ordnung_void",
                                  self._request(order, payment, payment.in_flight_amount,
                                                "void"))
        voided_ops = payment.operations

        async def apply(change: OrderChange) -> bool:
            p = change.order.payment(payment_id)
            if p.in_flight != "void" or p.operations != voided_ops:
                return False
            self._clear(p)
            change.emit("payment.reconciled", machine="payment", entity_id=p.id,
                        data={**note, "outcome": "voided" if result.outcome == "approved"
                              else "void_failed", "void_reason": result.reason})
            p.failure_reason = reason
            if result.outcome == "approved":
                await change.transition("payment", p, "void", data={"reason": reason})
            else:
                change.emit("payment.void_failed", machine="payment", entity_id=p.id,
                            data={"reason": result.reason})
                await change.transition("payment", p, "fail", data={"reason": reason})
            if one_shot:
                await self._cancel_placement(change, reason)
            return True

        return await self.rt.change_order(order_id, actor, apply)

    # -- capture ------------------------------------------------------------------
    async def capture(self, order_id: str, *, amount: int | None = None,
                      payment_id: str | None = None, actor: str = "system") -> Order:
        """Capture authorized money (or mark a manual payment paid). Partial captures allowed."""
        async def start(change: OrderChange) -> tuple[str, int]:
            order = change.order
            change.require("order", order, "capture")
            payment = self._pick(order, payment_id, "capture")
            # a payment the gateway has not confirmed is never captured: its state
            # does not allow it (the gateway would be asked to take unconfirmed money)
            change.require("payment", payment, "capture")
            if payment.unconfirmed:  # whatever a lifecycle extension allows
                raise InvariantViolation(
                    f"payment {payment.id} is {payment.status}: the gateway has not confirmed "
                    "it, so it cannot be captured", payment_id=payment.id,
                    current_state=payment.status)
            ceiling = payment.amount if payment.awaiting else payment.authorized
            left = ceiling - payment.captured
            value = left if amount is None else amount
            if value <= 0 or value > left:
                raise InvariantViolation(
                    f"cannot capture {value}: {left} is left to capture on payment {payment.id}",
                    payment_id=payment.id, capturable=left)
            if payment.awaiting:
                others = sum(p.authorized for p in order.payments if p.id != payment.id)
                if others + payment.captured + value > order.totals.total:
                    raise InvariantViolation("capture would exceed the order total",
                                             payment_id=payment.id)
            self._mark(payment, "capture", value)
            return payment.id, value

        (pid, value), order = await self.rt.change_order(order_id, actor, start)

        async def captured(change: OrderChange, p: Payment, result: GatewayResult) -> None:
            if p.awaiting:  # staff received the money: the capture is the confirmation
                p.authorized = p.captured + value
            p.captured += value
            if result.reference and not p.reference:
                p.reference = result.reference
            event_name = "capture_all" if p.captured >= p.authorized else "capture_partial"
            await change.transition("payment", p, event_name, data={"amount": value})

        return await self._settle(order, pid, value, "capture", actor, captured)

    # -- refund -------------------------------------------------------------------
    async def refund(self, order_id: str, *, amount: int | None = None,
                     payment_id: str | None = None, reason: str = "",
                     actor: str = "system") -> Order:
        """Refund captured money, at most what was captured and not yet refunded."""
        async def start(change: OrderChange) -> tuple[str, int]:
            order = change.order
            change.require("order", order, "refund")
            payment = self._pick(order, payment_id, "refund")
            change.require("payment", payment, "refund")
            left = payment.captured - payment.refunded
            value = left if amount is None else amount
            if value <= 0 or value > left:
                raise InvariantViolation(
                    f"cannot refund {value}: {left} is refundable on payment {payment.id}",
                    payment_id=payment.id, refundable=left)
            self._mark(payment, "refund", value)
            return payment.id, value

        (pid, value), order = await self.rt.change_order(order_id, actor, start)
        return await self._finish_refund(order, pid, value, reason, actor)

    async def _finish_refund(self, order: Order, pid: str, value: int, reason: str,
                             actor: str) -> Order:
        async def refunded(change: OrderChange, p: Payment, _: GatewayResult) -> None:
            p.refunded += value
            full = p.refunded >= p.captured and self.rt.lifecycle.refund_may_close(p)
            await change.transition("payment", p, "refund_all" if full else "refund_partial",
                                    data={"amount": value, "reason": reason})

        return await self._settle(order, pid, value, "refund", actor, refunded)

    async def _settle(self, order: Order, pid: str, value: int,
                      operation: Literal["capture", "refund"], actor: str,
                      approved: Callable[[OrderChange, Payment, GatewayResult], Awaitable[None]]
                      ) -> Order:
        """Ask the payment's gateway to capture or refund ``value``, then record its
        answer in a change of its own: ``approved``, or a ``payment.<operation>_failed``
        event and ``PaymentDeclined``."""
        payment = order.payment(pid)
        result = await self._call(payment.gateway, f"ordnung_{operation}",
                                  self._request(order, payment, value, operation))

        async def apply(change: OrderChange) -> None:
            p = change.order.payment(pid)
            self._clear(p)
            if result.outcome != "approved":
                change.emit(f"payment.{operation}_failed", machine="payment", entity_id=p.id,
                            data={"amount": value, "reason": result.reason})
                return
            await approved(change, p, result)

        _, order = await self.rt.change_order(order.id, actor, apply)
        if result.outcome != "approved":
            raise PaymentDeclined(payment.gateway, result.reason or f"{operation} refused",
                                  order_id=order.id, payment_id=pid)
        return order

    # -- void ---------------------------------------------------------------------
    async def void(self, order_id: str, *, payment_id: str | None = None,
                   actor: str = "system") -> Order:
        """Release an authorization (or the uncaptured rest of one)."""
        async def start(change: OrderChange) -> str:
            payment = self._pick(change.order, payment_id, "void")
            change.require("payment", payment, "void")
            self._mark(payment, "void", payment.authorized - payment.captured)
            return payment.id

        pid, order = await self.rt.change_order(order_id, actor, start)
        return await self._finish_void(order, pid, actor)

    async def _finish_void(self, order: Order, pid: str, actor: str) -> Order:
        payment = order.payment(pid)
        result = await self._call(payment.gateway, "ordnung_void",
                                  self._request(order, payment, payment.in_flight_amount, "void"))

        async def apply(change: OrderChange) -> None:
            p = change.order.payment(pid)
            self._clear(p)
            if result.outcome == "declined":
                change.emit("payment.void_failed", machine="payment", entity_id=p.id,
                            data={"reason": result.reason})
                return
            p.authorized = p.captured
            await change.transition("payment", p, "void")

        _, order = await self.rt.change_order(order.id, actor, apply)
        if result.outcome == "declined":
            raise PaymentDeclined(payment.gateway, result.reason or "void refused",
                                  order_id=order.id, payment_id=pid)
        return order

    async def void_open(self, order: Order, *, actor: str = "system") -> Order:
        """After a cancellation: void every authorization still open; failures stay visible."""
        for p in list(order.payments):
            if p.in_flight or not self.rt.machines["payment"].allows(p.status, "void"):
                continue
            try:
                order = await self.void(order.id, payment_id=p.id, actor=actor)
            except (PaymentDeclined, Conflict) as exc:
                log.warning("void after cancel failed", payment_id=p.id, error=exc.detail)
                order = await self.rt.orders.get(order.id)
        return order

    # -- webhooks -----------------------------------------------------------------
    async def webhook(self, gateway: str, headers: dict[str, str], body: bytes) -> list[str]:
        """Verify (by the gateway plugin) and apply a gateway webhook; returns order ids changed."""
        if not self.rt.plugins.implements(gateway, "ordnung_gateway_webhook"):
            raise NotFound("payment gateway webhook", gateway)
        updates: list[PaymentUpdate] | None = await self.rt.plugins.call(
            "ordnung_gateway_webhook", to=gateway, headers=headers, body=body)
        changed: list[str] = []
        for update in updates or []:
            found = await self.rt.orders.find_reference(f"payment:{gateway}", update.reference)
            if found is None:
                log.warning("webhook for unknown payment", gateway=gateway,
                            reference=update.reference)
                continue
            order_id, payment_id = found
            await self._apply_update(order_id, payment_id, update, gateway)
            changed.append(order_id)
        return changed

    async def _apply_update(self, order_id: str, payment_id: str, update: PaymentUpdate,
                            gateway: str) -> None:
        async def apply(change: OrderChange) -> None:
            p = change.order.payment(payment_id)
            if update.outcome == "authorized" and change.can("payment", p, "authorize"):
                p.authorized = min(update.amount or p.amount, p.amount)
                await change.transition("payment", p, "authorize",
                                        data={"amount": p.authorized, "via": "webhook"})
            elif update.outcome == "declined" and change.can("payment", p, "fail"):
                p.failure_reason = update.reason or "declined"
                await change.transition("payment", p, "fail",
                                        data={"reason": p.failure_reason, "via": "webhook"})
            elif update.outcome == "captured":
                # the gateway's word is what happened: it may capture beyond a partial
                # authorization, never beyond what this payment asked for
                asked = update.amount if update.amount is not None else (
                    p.authorized or p.amount)
                target = min(asked, p.amount)
                if target > p.captured and change.can("payment", p, "authorize"):
                    # captured by the gateway before it confirmed to us: that confirms it
                    p.authorized = target
                    await change.transition("payment", p, "authorize",
                                            data={"amount": target, "via": "webhook"})
                if target > p.captured and change.can("payment", p, "capture"):
                    p.authorized = max(p.authorized, target)
                    p.captured = target
                    await change.transition(
                        "payment", p,
                        "capture_all" if p.captured >= p.authorized else "capture_partial",
                        data={"amount": target, "via": "webhook"})
            # anything else is a repeat or out of order: nothing to change

        await self.rt.change_order(order_id, f"gateway:{gateway}", apply)

    # -- helpers ------------------------------------------------------------------
    def _pick(self, order: Order, payment_id: str | None, capability: str) -> Payment:
        if payment_id is not None:
            return order.payment(payment_id)
        ranked = [(rank, index, p) for index, p in enumerate(order.payments)
                  if (rank := self.rt.lifecycle.payment_preference(p, capability)) is not None]
        if ranked:
            return min(ranked, key=lambda entry: entry[:2])[2]
        machine = self.rt.machines["payment"]
        for p in order.payments:
            if capability == "capture" and machine.allows(p.status, "authorize"):
                # the payment the caller means is still unconfirmed: say so, by its state
                machine.require(p.id, p.status, capability)
        raise InvalidInput(f"order {order.id} has no payment that can {capability}",
                           field="payment_id")
