"""Orders: placement, look-up, holds, cancellation, custom transitions, the timeline."""

from __future__ import annotations

import builtins
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import msgspec
import structlog

from ordnung.core.contexts import PricingContext, RiskContext
from ordnung.core.domain.carts import Cart, PricedCart
from ordnung.core.domain.common import new_id, order_number, utcnow
from ordnung.core.domain.customers import Customer
from ordnung.core.domain.events import Event
from ordnung.core.domain.orders import Order
from ordnung.core.domain.payments import Payment
from ordnung.core.domain.pricing import ExplanationStep
from ordnung.core.errors import (
    Conflict,
    InvalidInput,
    PaymentDeclined,
    ValidationFailed,
)
from ordnung.core.errors_db import TransientConflict, is_unique_violation
from ordnung.core.invariants import payment_secured
from ordnung.core.lifecycle import CORE_MACHINES
from ordnung.core.observe import Metrics, counts_placements
from ordnung.core.persistence.database import Statement
from ordnung.core.pricing import Buyer, PricingPipeline
from ordnung.core.requests import PaymentInput, PlaceOrder
from ordnung.core.runtime import OrderChange, ReservationRefused, Runtime, bound
from ordnung.core.services.idempotency import resolving
from ordnung.core.services.payments import RESUME_AUTHORIZATION_AFTER
from ordnung.core.services.placement_key import PlacementKey, Replayed
from ordnung.core.validation import check_bounds

if TYPE_CHECKING:
    from ordnung.core.services.channels import ChannelService
    from ordnung.core.services.customers import CustomerService
    from ordnung.core.services.payments import PaymentService

log = structlog.get_logger("ordnung.orders")

VELOCITY_WINDOW = timedelta(hours=24)
#: seconds a worker places every order reserving first after a plugin's claim for an
#: order without codes ran a statement (such a placement would otherwise start twice)
CLAIMS_MEMORY_S = 60.0
#: the core's own order events, reached through their operations ("complete" has no work
#: attached, so staff may fire it directly)
CORE_ORDER_EVENTS = frozenset(event for _, event in CORE_MACHINES["order"].edges) - {"complete"}


class OrderService:
    def __init__(self, rt: Runtime, pipeline: PricingPipeline, channels: ChannelService,
                 customers: CustomerService, payments: PaymentService) -> None:
        self.rt = rt
        self.pipeline = pipeline
        self.channels = channels
        self.customers = customers
        self.payments = payments
        #: until when (monotonic) placements reserve first: a claim wrote lately
        self._claims_until = 0.0

    @property
    def metrics(self) -> Metrics:
        return self.rt.metrics

    # -- placement ----------------------------------------------------------------
    @counts_placements
    async def place(self, request: PlaceOrder, *, idempotency_key: str | None = None,
                    actor: str = "system", cart_id: str | None = None,
                    cart: Cart | None = None) -> Order:
        """Price, validate, reserve and record an order; then authorize its payment.

        With a payment, a decline cancels the order and releases its stock, and
        ``PaymentDeclined`` is raised (naming the order): a one-shot placement
        either yields an order whose payment is authorized or pending
        confirmation, or holds nothing.

        ``cart_id``: the cart this order is placed from, marked placed with it; ``cart``:
        that cart as the caller read it for this request (its version guards the mark).
        """
        key = PlacementKey(self.rt.idempotency, idempotency_key, request, cart_id)
        earlier = await key.earlier()
        if earlier is not None:
            return await self._replay(earlier, request, actor, idempotency_key)
        draft = await self._draft(request)
        try:
            with bound(order_id=draft.order_id):
                change = await self._commit(draft, request, actor, key, cart_id, cart)
        except _HintedGiftGone:
            # nothing was written: priced again with the gift's stock read, the order
            # goes without the gift (and without its weight in the shipping price)
            draft = await self._draft(request, hints=False)
            with bound(order_id=draft.order_id):
                change = await self._commit(draft, request, actor, key, cart_id, cart)
        with bound(order_id=draft.order_id):
            if isinstance(change, str):
                return await self._replay(change, request, actor, idempotency_key)
            order = change.order
            log.info("order placed", number=order.number, total=order.totals.total,
                     status=order.status)
            await self.rt.deliver(change.events, order,
                                  available=change.stock.known_availability)
            if request.payment is not None and order.payments:
                order = await self.payments.run_authorization(
                    order.id, order.payments[-1].id, request.payment.token, one_shot=True,
                    actor=actor, order=order)
            return order

    async def _draft(self, request: PlaceOrder, *, hints: bool = True) -> _Draft:
        """Everything a placement settles before it writes: the checks, the buyer, the
        price, and the plugins' verdict on it. ``hints=False``: every gift's stock is
        read (see ``stock_hints``)."""
        channel, currency = await self.channels.currency_for(request.channel, request.currency)
        if not request.lines:
            raise InvalidInput("an order needs at least one line", field="lines")
        check_bounds(request.lines, request.codes, self.rt.limits,
                     max_lines=self.rt.limits.max_lines_per_order, what="an order")
        customer: Customer | None = None
        if request.customer_id:
            customer = await self.customers.active(request.customer_id)
        email = (request.email or (customer.email if customer else "")).strip().lower()
        if request.payment is not None:
            self.payments.check_gateway(request.payment.gateway)
        now = utcnow()
        pricing = await self.pipeline.run(request, Buyer(
            currency=currency, channel=channel.id, customer=customer, email=email, now=now),
            strict=True, hints=hints)
        priced = pricing.result()
        await self._validate(pricing.context())  # the lines as pricing's last step left them
        return _Draft(order_id=new_id("ord"), channel=channel.id, currency=currency,
                      customer=customer, email=email, now=now, priced=priced,
                      assumed=frozenset(pricing.assumed))

    def _order(self, draft: _Draft, request: PlaceOrder) -> Order:
        priced, now = draft.priced, draft.now
        return Order(
            id=draft.order_id, number=order_number(), channel=draft.channel,
            customer_id=draft.customer.id if draft.customer else None, email=draft.email,
            status=self.rt.lifecycle.order.initial,
            currency=draft.currency, prices_include_tax=priced.prices_include_tax,
            lines=[msgspec.structs.replace(line) for line in priced.lines],
            adjustments=list(priced.adjustments), shipping=priced.shipping,
            shipping_address=request.shipping_address,
            billing_address=request.billing_address or request.shipping_address,
            codes=list(request.codes), totals=priced.totals,
            explanation=list(priced.explanation), metadata=dict(request.metadata),
            created_at=now, updated_at=now)

    async def _commit(self, draft: _Draft, request: PlaceOrder, actor: str,
                      key: PlacementKey, cart_id: str | None,
                      cart: Cart | None) -> OrderChange | str:
        """Record the order (a fresh number if one collides); or the id of the order a
        concurrent duplicate under the same key committed first.

        Each try builds the order afresh from the draft: a try whose transaction the
        database aborted for a concurrent one (a deadlock over stock rows) is run again
        whole, and what it changed in memory (allocations, gifts dropped, a hold) goes
        with it. The payment is authorized after the try that committed, never in one.

        The first try reserves the stock with the order's writes where it can (see
        ``OrderChange.reserve_lines``); one whose writes refused themselves for that
        reservation is run again reserving first."""
        collisions = lost = 0
        with_writes = True
        while True:
            try:
                return await self._record(self._order(draft, request), request,
                                          draft.customer, actor, key, cart_id, cart,
                                          draft.assumed, with_writes=with_writes)
            except Replayed as replay:
                return replay.order_id
            except ReservationRefused:
                with_writes = False
            except TransientConflict as exc:
                lost += 1
                await self.rt.again(exc, lost)
            except Exception as exc:
                if not is_unique_violation(exc):
                    raise
                if (existing := await key.duplicate()) is not None:
                    return existing
                collisions += 1
                if collisions >= 3:
                    raise Conflict("could not allocate an order number; retry") from exc

    async def _validate(self, ctx: PricingContext) -> None:
        """Let plugins refuse the priced order before anything is written."""
        violations: list[dict[str, Any]] = []
        for plugin, answers in await self.rt.plugins.call("ordnung_validate_order", ctx=ctx):
            for v in answers:
                violations.append({"plugin": plugin, **msgspec.to_builtins(v)})
        if violations:
            raise ValidationFailed(violations)

    async def _replay(self, order_id: str, request: PlaceOrder, actor: str,
                      idempotency_key: str | None = None) -> Order:
        """The order an earlier placement with the same idempotency key made, answered as
        that placement answered: a declined payment raises ``PaymentDeclined`` again.

        If that placement's process died after recording the order and before recording
        its payment's authorization, the authorization stays in flight and nothing else
        finishes it. Once it has been in flight for ``RESUME_AUTHORIZATION_AFTER``, the
        repeat finishes it as the first attempt would have: the gateway gets the same
        idempotency key (so it charges once), a decline cancels the order and releases
        its stock.

        A claimed request that got here is told that this placement answers the earlier
        attempt's outcome (and may finish it), and whether that outcome is settled: an
        order whose authorization is still in flight is answered as it is, but that
        answer is not kept for later repeats.
        """
        if idempotency_key:
            resolving(idempotency_key)
        order = await self.rt.orders.get(order_id)
        payment = order.payments[0] if order.payments else None
        if request.payment is None or payment is None:
            return order
        self._decline_again(order, payment)
        if not _authorization_to_resume(payment):
            if (idempotency_key and payment.in_flight
                    and self.rt.lifecycle.payment_unanswered(payment)):
                resolving(idempotency_key, settled=False)
            return order
        log.warning("resuming an authorization its placement left in flight",
                    order_id=order.id, payment_id=payment.id)
        return await self.payments.run_authorization(
            order.id, payment.id, request.payment.token, one_shot=True, actor=actor,
            order=order)

    def _decline_again(self, order: Order, payment: Payment) -> None:
        """Declined, or voided unanswered by the reconciliation job: the placement holds
        nothing, as a decline would have left it, and answers as the decline did."""
        lifecycle = self.rt.lifecycle
        if lifecycle.payment_declined(payment) or (lifecycle.payment_voided(payment)
                                                   and payment.failure_reason != ""):
            raise PaymentDeclined(payment.gateway, payment.failure_reason or "declined",
                                  order_id=order.id, payment_id=payment.id,
                                  order_status=order.status)

    async def _record(self, order: Order, request: PlaceOrder, customer: Customer | None,
                      actor: str, key: PlacementKey, cart_id: str | None,
                      cart: Cart | None, assumed: frozenset[str], *,
                      with_writes: bool) -> OrderChange:
        with_writes = with_writes and self._may_reserve_with_writes(request, key, cart_id,
                                                                    cart)
        async with self.rt.db.transaction():
            await key.begin(order.id)
            change = OrderChange(self.rt, order, actor)
            await change.transition("order", order, "place",
                                    data={"number": order.number, "total": order.totals.total,
                                          "currency": order.currency,
                                          "channel": order.channel})
            if request.payment is not None:
                self._start_payment(change, request.payment)
            await self._assess(change, customer, request.client)
            order.priority = sum(int(points) for _, points in await self.rt.plugins.call(
                "ordnung_fulfilment_priority", order=order, customer=customer))
            # Stock rows are locked from here to the commit (PostgreSQL): reserve as late
            # as possible, so a hot SKU's row is held for as short a time as possible
            # (with the writes, it is held for their one statement).
            skipped = await change.reserve_lines(f"order {order.number}",
                                                 with_writes=with_writes)
            if skipped:
                if assumed & {ln.sku for ln in order.lines if ln.id in skipped}:
                    raise _HintedGiftGone
                self._drop_gifts(order, set(skipped))
            await self._claim(change)
            marking = self._marking(cart, order.id) if cart_id else None
            marked = await change.commit(insert=True, also=[marking] if marking else [])
            if cart_id and marking is None:
                await self._mark_placed(cart_id, cart, order.id)
            elif cart_id and not marked[0]:
                raise await self._not_placeable(cart_id)
            await key.end(order.id)
        return change

    def _may_reserve_with_writes(self, request: PlaceOrder, key: PlacementKey,
                                 cart_id: str | None, cart: Cart | None) -> bool:
        """Whether the reservation may go with the order's writes: they must be the
        transaction's last statement (no record of the key's, no cart to read and mark
        afterwards), and no plugin is likely to claim anything for the order (codes: the
        coupons'; a claim that wrote lately: see ``_claim``)."""
        return (key.record is None and not request.codes
                and (cart_id is None or (cart is not None and cart.is_open))
                and time.monotonic() >= self._claims_until)

    @staticmethod
    def _start_payment(change: OrderChange, given: PaymentInput) -> None:
        """The order's payment, its authorization in flight from the start."""
        order = change.order
        payment = Payment(id=new_id("pay"), gateway=given.gateway, method=given.method,
                          amount=order.totals.total, in_flight="authorize",
                          in_flight_amount=order.totals.total, in_flight_since=utcnow(),
                          operations=1, created_at=utcnow())
        order.payments.append(payment)
        change.emit("payment.created", machine="payment", entity_id=payment.id,
                    to_state=payment.status,
                    data={"gateway": payment.gateway, "amount": payment.amount})

    async def _claim(self, change: OrderChange) -> None:
        """Let plugins claim what the order uses up. Stock rows are locked before any
        claim's rows on every path: a placement that reserves with its writes, after
        this, and whose claims ran a statement (so took rows) starts again reserving
        first, as every other placement does, and this worker reserves first for a while
        (claims are likely again); two placements locking the same two rows in opposite
        orders would deadlock."""
        with self.rt.db.tally() as claiming:
            await self.rt.plugins.call(
                "ordnung_claim_resources", order=change.order,
                each=lambda plugin: {"store": self.rt.plugin_store(plugin)})
        if claiming.statements and change.stock.heading is not None:
            self._claims_until = time.monotonic() + CLAIMS_MEMORY_S
            raise ReservationRefused

    def _marking(self, read: Cart | None, order_id: str) -> Statement | None:
        """The write that marks the cart the placement read before pricing (``read``)
        as placed as ``order_id``, guarded by that read's version, to run with the
        order's own writes: a cart that another placement took, or that changed after
        it was priced, matches nothing, and the whole placement is refused and rolled
        back without the cart being read again (only the refusal reads it, to say
        which). None without an open read: ``_mark_placed`` then does it."""
        if read is None or not read.is_open:
            return None
        cart = msgspec.structs.replace(read)
        version = cart.version
        cart.placed_as(order_id, utcnow())
        return self.rt.carts.saving(cart, version, read=read)

    async def _not_placeable(self, cart_id: str) -> Conflict:
        """Why the guarded mark of ``_marking`` matched nothing."""
        cart = await self.rt.carts.get(cart_id)
        if cart.is_open:
            return Conflict(f"cart {cart_id} changed while it was being placed; "
                            f"place it again", cart_id=cart_id)
        return Conflict(f"cart {cart_id} was already placed", cart_id=cart_id,
                        order_id=cart.order_id)

    async def _mark_placed(self, cart_id: str, read: Cart | None, order_id: str) -> None:
        """Mark the cart placed as ``order_id`` in the placement's transaction, when the
        placement had no open read of it: the cart is read and locked first (or, read
        already placed, refused)."""
        cart = read if read is not None else await self.rt.carts.get(cart_id, for_update=True)
        if not cart.is_open:
            raise Conflict(f"cart {cart_id} was already placed", cart_id=cart_id,
                           order_id=cart.order_id)
        stored = self.rt.carts.columns(cart)
        cart = msgspec.structs.replace(cart)
        version = cart.version
        cart.placed_as(order_id, utcnow())
        await self.rt.carts.save(cart, version, stored=stored)

    @staticmethod
    def _drop_gifts(order: Order, skipped: set[str]) -> None:
        for line in [ln for ln in order.lines if ln.id in skipped]:
            order.explanation.append(ExplanationStep(
                step="promotions", source=line.source, line_id=line.id,
                message=f"gift {line.sku} skipped: out of stock at placement"))
        order.lines = [ln for ln in order.lines if ln.id not in skipped]
        order.adjustments = [a for a in order.adjustments if a.line_id not in skipped]

    async def _assess(self, change: OrderChange, customer: Customer | None,
                      client: dict[str, str]) -> None:
        if not self.rt.plugins.has_impl("ordnung_assess_risk"):
            return
        order = change.order
        since = utcnow() - VELOCITY_WINDOW
        by_customer, by_email = await self.rt.orders.count_recent(
            customer_id=order.customer_id, email=order.email, since=since)
        ctx = RiskContext(order=order, customer=customer, client=dict(client),
                          recent_orders_by_customer=by_customer, recent_orders_by_email=by_email)
        hold_reasons: list[str] = []
        for plugin, assessment in await self.rt.plugins.call("ordnung_assess_risk", ctx=ctx):
            order.risk_score = max(order.risk_score, assessment.score)
            order.risk_reasons.extend(f"{plugin}: {r}" for r in assessment.reasons)
            change.emit("order.risk_assessed", data={"plugin": plugin,
                                                     "score": assessment.score,
                                                     "reasons": list(assessment.reasons),
                                                     "hold": assessment.hold})
            if assessment.hold:
                hold_reasons.append(f"{plugin}: " + ", ".join(assessment.reasons or ["risk"]))
        if hold_reasons and change.can("order", order, "hold"):
            order.hold_reason = "; ".join(hold_reasons)
            await change.transition("order", order, "hold", data={"reason": order.hold_reason})

    # -- reading --------------------------------------------------------------------
    async def get(self, order_id: str) -> Order:
        return await self.rt.orders.get(order_id)

    async def by_number(self, number: str) -> Order:
        return await self.rt.orders.by_number(number)

    async def list(self, *, customer_id: str | None = None, status: Sequence[str] | None = None,
                   channel: str | None = None, after: str | None = None,
                   limit: int = 50) -> list[Order]:
        if not 1 <= limit <= 200:
            raise InvalidInput("limit must be between 1 and 200", field="limit")
        known = self.rt.lifecycle.order.states
        unknown = sorted({s for s in status or () if s not in known})
        if unknown:
            # a misspelt status would list nothing, silently; and each status is one
            # part of the list's statement, so only the lifecycle's own are taken
            raise InvalidInput(f"unknown order status {', '.join(map(repr, unknown))} "
                               f"(known: {', '.join(sorted(known))})", field="status")
        return await self.rt.orders.page(customer_id=customer_id, status=status,
                                         channel=channel, after=after, limit=limit)

    async def timeline(self, order_id: str) -> builtins.list[Event]:
        await self.rt.orders.get(order_id)
        return await self.rt.journal.timeline(order_id)

    def payment_secured(self, order: Order) -> bool:
        return payment_secured(order)

    # -- holds, cancellation, custom transitions --------------------------------------
    async def hold(self, order_id: str, reason: str, *, actor: str = "system") -> Order:
        async def work(change: OrderChange) -> None:
            change.require("order", change.order, "hold")
            change.order.hold_reason = reason
            await change.transition("order", change.order, "hold", data={"reason": reason})

        return (await self.rt.change_order(order_id, actor, work))[1]

    async def release(self, order_id: str, *, note: str = "", actor: str = "system") -> Order:
        """Release a hold: the order continues (to processing at once if already paid)."""
        async def work(change: OrderChange) -> None:
            await change.transition("order", change.order, "release", data={"note": note})
            change.order.hold_reason = ""

        return (await self.rt.change_order(order_id, actor, work))[1]

    async def cancel(self, order_id: str, *, reason: str = "", actor: str = "system") -> Order:
        """Cancel: release reservations, then void authorizations with the gateways."""
        async def work(change: OrderChange) -> None:
            change.require("order", change.order, "cancel")
            if any(line.shipped for line in change.order.lines):
                raise InvalidInput("an order with shipped lines cannot be cancelled; "
                                   "use a return", field="order")
            for shipment in change.order.shipments:
                if change.can("shipment", shipment, "cancel"):
                    await change.transition("shipment", shipment, "cancel")
            await change.release_open_reservations(f"order {change.order.number} cancelled")
            await change.release_claims()
            change.order.cancel_reason = reason
            await change.transition("order", change.order, "cancel", data={"reason": reason})

        _, order = await self.rt.change_order(order_id, actor, work)
        return await self.payments.void_open(order, actor=actor)

    async def transition(self, order_id: str, event_name: str, *,
                         data: dict[str, Any] | None = None, actor: str = "system") -> Order:
        """Fire a plugin-defined order event (e.g. ``age_verified``) through the machine.

        The core's own events (``cancel``, ``ship_all`` ...) are refused here: they
        have work attached (stock, payments) and are reached through their operations.
        """
        if event_name in CORE_ORDER_EVENTS:
            raise InvalidInput(f"{event_name!r} is a core event; use its operation "
                               "(cancel, ship, release ...) instead", field="event")

        async def work(change: OrderChange) -> None:
            await change.transition("order", change.order, event_name, data=data)

        return (await self.rt.change_order(order_id, actor, work))[1]

    async def add_note(self, order_id: str, note: str, *, actor: str = "system") -> Order:
        async def work(change: OrderChange) -> None:
            change.emit("order.note", data={"note": note})

        return (await self.rt.change_order(order_id, actor, work))[1]

    async def record_notification(self, order_id: str, *, channel: str, notice: str,
                                  to: str = "", actor: str = "system",
                                  **data: Any) -> Order:
        """Record in the order's timeline that the customer was told (an e-mail sent...):
        a ``notification.sent`` event, which webhooks pass on, so that a storefront can
        show "confirmation sent, delivery expected on ..."."""
        async def work(change: OrderChange) -> None:
            shipping = change.order.shipping
            expected = shipping.expected_delivery if shipping is not None else None
            change.emit("notification.sent", data={
                "channel": channel, "notice": notice, "to": to,
                "expected_delivery": expected.isoformat() if expected else None, **data})

        return (await self.rt.change_order(order_id, actor, work))[1]


@dataclass(frozen=True)
class _Draft:
    """A priced, validated placement not yet written."""

    order_id: str
    channel: str
    currency: str
    customer: Customer | None
    email: str
    now: datetime
    priced: PricedCart
    #: gift SKUs priced in on a stock hint (their stock not read)
    assumed: frozenset[str] = frozenset()


class _HintedGiftGone(Exception):
    """A gift added on a stock hint was out of stock at the reservation: the placement
    is rolled back and priced again, its gifts' stock read."""


def _authorization_to_resume(payment: Payment) -> bool:
    """The placement's own authorization, left in flight long enough that its attempt
    is taken to have died before recording the gateway's answer."""
    return (payment.in_flight == "authorize" and payment.operations == 1
            and payment.in_flight_since is not None
            and utcnow() - payment.in_flight_since >= RESUME_AUTHORIZATION_AFTER)
