"""The hook specifications: the plugin author's manual.

A plugin is any object (usually a class instance) with methods named after
these hooks and marked with ``@ordnung.plugin.hookimpl``. Implementations may be
plain functions or ``async def``: the core awaits them. An implementation may
accept any subset of the arguments, in any order, by name.

Each spec declares its calling convention and its phase with ``@contract``; its
answer type is its return annotation (``None`` left out). The host reads these
once at start (``core/hook_contracts.py``), calls every hook through
``PluginHost.call`` accordingly, and checks every answer against the declared
type; ``docs/hooks.md``'s convention table is generated from them.

Conventions:

* **collect**: every implementation is called, in pluggy's order (last
  registered first; ``tryfirst``/``trylast`` respected); ``None`` answers are
  dropped, the rest come back in a list.
* **firstresult**: implementations are called in the same order until one
  answers something other than ``None``; that answer is used.
* **directed**: only the plugin named by the entity (the payment's
  ``gateway``, the shipment's ``carrier``) is called. Others never see it.

Phases:

* **start-up**: called once while the engine starts; raising stops start-up.
* **outside-transaction**: called on a request's path while no database
  transaction is open (pricing, gateway and carrier calls: no row stays locked
  while a remote service answers). Raising fails the operation.
* **in-transaction**: called while the core's database transaction is open.
  Raising aborts the whole operation; nothing is written, no stock is held. A
  transaction the database aborted for a concurrent one is run again, and the hook
  called again (its first call's writes rolled back): write only through the given
  store, call nothing outside the database.
* **after-commit**: called once the change is committed. Raising does not
  undo anything: the failure is recorded and the call is retried later with
  backoff (at-least-once; make the implementation idempotent).
* **background**: called after the request that caused it has answered (its answer
  does not depend on the hook); not retried, raising is logged.

Hook wrappers (``wrapper=True``/``hookwrapper=True``) are not supported for
these hooks, because the core awaits implementations itself; registering one
is refused at start-up.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar

import pluggy

from ordnung.core.contexts import PricingContext, RiskContext, TransitionContext
from ordnung.core.domain.accounts import AccountNotice
from ordnung.core.domain.coupons import CouponGrant
from ordnung.core.domain.customers import Customer
from ordnung.core.domain.events import Event
from ordnung.core.domain.inventory import AvailabilityChange
from ordnung.core.domain.orders import Order
from ordnung.core.domain.payments import (
    GatewayResult,
    OperationLookup,
    PaymentMethod,
    PaymentRequest,
    PaymentUpdate,
)
from ordnung.core.domain.pricing import (
    Discount,
    GiftLine,
    Note,
    RiskAssessment,
    ShippingQuote,
    TaxAnswer,
    Violation,
)
from ordnung.core.domain.shipments import Label, Shipment, TrackingUpdate
from ordnung.core.lifecycle.machine import StateExtension
from ordnung.core.persistence.plugin_store import PluginStore
from ordnung.core.plugin_context import PluginContext

PROJECT = "ordnung"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

Convention = Literal["collect", "firstresult", "directed"]
Phase = Literal["start-up", "outside-transaction", "in-transaction", "after-commit",
                "background"]
CONVENTIONS: tuple[Convention, ...] = ("collect", "firstresult", "directed")
PHASES: tuple[Phase, ...] = ("start-up", "outside-transaction", "in-transaction",
                             "after-commit", "background")

F = TypeVar("F", bound=Callable[..., Any])


def contract(convention: Convention, phase: Phase) -> Callable[[F], F]:
    """Declare a hook spec's calling convention and phase, and make it a pluggy spec.

    pluggy's ``firstresult`` follows from the convention (first-result and directed
    hooks want one answer), so the two can never disagree.
    """
    if convention not in CONVENTIONS or phase not in PHASES:
        raise ValueError(f"unknown hook convention {convention!r} or phase {phase!r}")

    def mark(fn: F) -> F:
        fn.ordnung_convention = convention  # type: ignore[attr-defined]
        fn.ordnung_phase = phase  # type: ignore[attr-defined]
        return hookspec(firstresult=convention != "collect")(fn)

    return mark


# --------------------------------------------------------------------------- start-up


@contract("collect", "start-up")
def ordnung_lifecycle_extensions() -> Sequence[StateExtension] | None:
    """Add states or redirect transitions of the order, payment, shipment or return machine.

    Called once at start-up, collected. Return ``StateExtension`` objects. The
    merged graph is validated (every state reachable, terminal states have no
    way out, every non-terminal state can end, a state allowing a capability
    has the transitions that capability fires); an inconsistency stops the
    engine from starting with ``LifecycleDefinitionError`` naming the problem.
    Move an order through your own events with ``engine.orders.transition``.
    Raising stops start-up.
    """


@contract("collect", "start-up")
def ordnung_plugin_started(context: PluginContext[Any]) -> None:
    """The engine is ready: keep this plugin's own context if it needs it later.

    Called once per plugin after start-up with its ``PluginContext``: its ``name``,
    its validated ``settings``, its own ``store``, a ``log`` bound to its name and
    ``engine``, the few engine operations a plugin may call (``PluginEngine``).
    Results are ignored. Raising stops start-up (e.g. a plugin it needs is missing).
    """


# --------------------------------------------------------------------------- pricing


@contract("collect", "outside-transaction")
def ordnung_adjustments(ctx: PricingContext) -> Sequence[Discount | GiftLine | Note] | None:
    """Promotions and loyalty: discounts, complimentary gift lines and notes.

    Called on every pricing (each cart change, and at placement before the
    transaction opens), collected. Return a list of ``Discount`` (``amount`` > 0
    reduces the total; ``line_id`` targets a line, else the order), ``GiftLine``
    (a zero-priced line whose stock is reserved like any other; a gift whose
    SKU is out of stock is skipped and the explanation says so) or ``Note``
    (an explanation without money). Must be deterministic for the same
    context. Discounts never take a line or the order below zero: the core
    caps them and says so in the explanation. Raising aborts the pricing.
    """


@contract("collect", "outside-transaction")
def ordnung_shipping_quotes(ctx: PricingContext) -> Sequence[ShippingQuote] | None:
    """Carriers: what shipping this cart can have, at what price and when.

    Called on every pricing, collected. Return ``ShippingQuote`` objects in the
    cart's currency; the core names each ``"<plugin>:<service>"`` and applies
    the one the cart selected. Return ``None`` or ``[]`` when the carrier does
    not serve the address. Raising aborts the pricing.
    """


@contract("firstresult", "outside-transaction")
def ordnung_tax(ctx: PricingContext) -> TaxAnswer | None:
    """Tax rates for each line and for shipping.

    Called on every pricing after promotions and shipping, firstresult. The
    ``ctx.lines`` carry their ``discount`` share, so the taxable base of a line
    is ``line_total + discount``. Return rates; the core computes the amounts,
    per line, rounding half-up. ``None`` means "not mine": if no plugin
    answers and the engine requires tax (the default), placement fails with
    ``TaxUnavailable`` — the engine never silently charges zero tax. Raising
    aborts the pricing.
    """


@contract("collect", "outside-transaction")
def ordnung_validate_order(ctx: PricingContext) -> Sequence[Violation] | None:
    """Regional rules and restrictions: may this cart become an order?

    Called at placement after pricing, before anything is written, collected.
    Return ``Violation`` objects naming the line and the rule; any
    violation refuses the placement with ``ValidationFailed`` listing all of
    them. Raising aborts the placement.
    """


@contract("collect", "in-transaction")
def ordnung_assess_risk(ctx: RiskContext) -> RiskAssessment | None:
    """Fraud: score a freshly placed order.

    Called at placement, in-transaction, collected. If any assessment has
    ``hold=True``, the order goes on hold for review in the same transaction:
    nothing is captured or shipped until staff release it. Scores and reasons
    are stored on the order and shown in the timeline. Raising aborts the placement.
    """


@contract("collect", "in-transaction")
def ordnung_fulfilment_priority(order: Order, customer: Customer | None) -> int | None:
    """Priority points for the fulfilment queue (higher ships first).

    Called at placement, in-transaction, collected; the points are summed and
    stored on the order. Raising aborts the placement.
    """


@contract("collect", "in-transaction")
def ordnung_claim_resources(order: Order, store: PluginStore) -> None:
    """Claim what the order uses up, atomically with it: a coupon's uses, a budget.

    Called at placement, in-transaction, after stock is reserved and before
    the order is written, collected. (Where the engine would reserve with the
    order's writes, in one statement, it calls this first; a claim that runs a
    statement makes the placement start again reserving first, so that stock
    rows are always locked before a claim's.) ``store`` is this plugin's own
    ``PluginStore``; its writes commit or roll back with the order
    (``store.claim(kind, key, limit)`` is a guarded counter). Raise an
    ``ordnung.core.errors.OrdnungError`` (e.g. ``ValidationFailed``) to refuse
    the order: nothing is written.
    """


@contract("collect", "in-transaction")
def ordnung_release_resources(order: Order, store: PluginStore) -> None:
    """Give back what ``ordnung_claim_resources`` claimed, when an order is cancelled.

    Called in-transaction with the cancellation, collected. Raising aborts the
    cancellation.
    """


@contract("directed", "outside-transaction")
def ordnung_issue_coupon(grant: CouponGrant) -> bool | None:
    """Issue a coupon another plugin grants (a loyalty reward), for later orders.

    Directed to the plugin that keeps coupons, named by the granting plugin's
    settings (``PluginEngine.issue_coupon``), so the granting plugin never touches
    that plugin's store. Answer ``True`` if issued, ``False`` if a coupon with that
    code exists already (issuing again is safe: the first one stays). Raising fails
    the grant; a granting after-commit reaction is then retried.
    """


# --------------------------------------------------------------------------- payments


@contract("collect", "outside-transaction")
def ordnung_payment_methods(order: Order) -> Sequence[PaymentMethod] | None:
    """Which ways to pay this plugin offers for ``order``.

    Called when a client lists payment methods, collected; the core fills
    ``gateway`` with the plugin's name. Raising is an error for the caller.
    """


@contract("directed", "outside-transaction")
def ordnung_authorize(request: PaymentRequest) -> GatewayResult | None:
    """Authorize (hold) ``request.amount`` with the gateway.

    Directed to the payment's gateway plugin, called outside the database
    transaction (no row is locked while the gateway answers). Must be
    idempotent on ``request.idempotency_key``. Return ``approved`` (with the
    gateway's ``reference``), ``pending`` (a webhook will confirm; until it does
    the payment cannot be captured and counts as unpaid) or ``declined`` (with a
    ``reason``). Money collected outside any gateway (bank transfer, invoice, cash
    on delivery) answers ``pending`` with ``confirmed_by_capture=True``: staff
    capture it when it arrives. Raising is treated as a decline with the error's
    message and is logged.
    """


@contract("directed", "outside-transaction")
def ordnung_capture(request: PaymentRequest) -> GatewayResult | None:
    """Capture ``request.amount`` of an authorized payment (partial captures allowed).

    Directed, outside the transaction, idempotent on the key. For manual
    methods the plugin approves (staff marked it paid). The core has already
    checked captured <= authorized <= total, and never asks to capture a payment
    the gateway has not confirmed. Raising means not captured.
    """


@contract("directed", "outside-transaction")
def ordnung_refund(request: PaymentRequest) -> GatewayResult | None:
    """Refund ``request.amount`` of captured money (partial refunds allowed).

    Directed, outside the transaction, idempotent on the key. The core has
    already checked refunded <= captured. Raising means not refunded.
    """


@contract("directed", "outside-transaction")
def ordnung_void(request: PaymentRequest) -> GatewayResult | None:
    """Release an authorization that will not be captured (cancel, decline...).

    Directed, outside the transaction, idempotent. Raising means not voided;
    the core records the failure and retries.
    """


@contract("directed", "outside-transaction")
def ordnung_lookup_operation(operation: str, request: PaymentRequest) -> OperationLookup | None:
    """Tell what became of an operation sent earlier with ``request.idempotency_key``.

    Optional. The core asks when a process died while the gateway was answering
    (an authorization left in flight by a crash): the reconciliation job sends the
    same ``request`` as the lost call, with the same idempotency key, and
    ``operation`` naming the hook it went to (``"authorize"``, ``"capture"``,
    ``"refund"`` or ``"void"``). Directed to the payment's gateway, outside the
    transaction. Look the key up, never carry the operation out (a lookup must
    not charge anything): answer ``OperationLookup(found=True, result=...)`` with
    the answer the gateway gave (or would give to a repeat of the key), or
    ``OperationLookup(found=False)`` if the gateway never received that key.
    Raise when the gateway cannot tell right now (unreachable): the core then
    treats the outcome as unknown.

    A gateway without this hook (or answering ``None``) gets the safe path: the
    core voids the authorization with ``ordnung_void`` and cancels the placement,
    releasing its stock; the customer places the order again.
    """


@contract("directed", "outside-transaction")
def ordnung_gateway_webhook(headers: dict[str, str], body: bytes) -> Sequence[PaymentUpdate] | None:
    """Verify and parse a gateway's webhook call.

    Directed to the gateway named in the webhook URL. Verify the signature
    first; raise ``ordnung.core.errors.Forbidden`` for a bad or stale
    signature (the core answers 403 and changes nothing). Return the payment
    updates the call reports; the core applies each in its own transaction,
    idempotently (a repeated webhook changes nothing the second time).
    """


# --------------------------------------------------------------------------- fulfilment


@contract("directed", "outside-transaction")
def ordnung_create_label(order: Order, shipment: Shipment) -> Label | None:
    """Create the carrier label and tracking number when a shipment ships.

    Directed to the shipment's carrier plugin, outside the transaction. If the
    carrier plugin does not implement it, the caller's tracking number is
    used. Raising refuses the ship operation; nothing changes.
    """


@contract("directed", "outside-transaction")
def ordnung_parse_tracking(payload: dict[str, Any]) -> Sequence[TrackingUpdate] | None:
    """Turn a carrier's tracking push into updates.

    Directed to the carrier plugin named by the caller. A ``delivered``
    update delivers the shipment (and the order once every shipment is
    delivered). Raising refuses the payload; nothing changes.
    """


@contract("directed", "outside-transaction")
def ordnung_label_document(tracking_number: str) -> bytes | None:
    """The printable label of a shipment the carrier shipped, for ``GET /labels``.

    Directed to the carrier plugin named in the URL, with the tracking number its
    ``ordnung_create_label`` made. Return the document's bytes (a PDF), or ``None``
    when there is none (an unknown number, or a label erased with its customer's
    data): the caller gets 404. The ``label_url`` a label answers should point here,
    ``/labels/<carrier>/<tracking number>``; where the plugin keeps the document (its
    own store, the carrier's service) is its own affair.
    """


# --------------------------------------------------------------------------- transitions


@contract("collect", "in-transaction")
def ordnung_guard_transition(ctx: TransitionContext) -> str | None:
    """Veto a transition of any machine before it is committed.

    Called for every transition, in-transaction, collected. Return a reason
    (a non-empty string) to veto: the operation fails with ``TransitionVetoed``
    naming the plugin and the reason, and nothing is written. Return ``None``
    to allow. Raising aborts the operation like a veto without a reason.
    """


@contract("collect", "after-commit")
def ordnung_after_transition(event: Event, order: Order | None) -> None:
    """React to a committed transition (notifications, sync, analytics).

    After-commit, collected, once per transition event; ``order`` is the
    order as committed. Failures are recorded and retried with backoff.
    """


@contract("collect", "after-commit")
def ordnung_on_event(event: Event) -> None:
    """Every committed timeline event, transitions and others (webhook or broker forwarders).

    After-commit, collected. Failures are recorded and retried with backoff.
    """


@contract("collect", "after-commit")
def ordnung_availability_changed(changes: Sequence[AvailabilityChange]) -> None:
    """Tell sales channels that SKUs' availability changed.

    After-commit, collected; ``changes`` carries each SKU's new available
    quantity (the same number for every channel) and the channels to inform.
    Failures are recorded and retried with backoff.
    """


# --------------------------------------------------------------------------- customers


@contract("collect", "outside-transaction")
def ordnung_export_customer_data(customer: Customer) -> dict[str, Any] | None:
    """Contribute this plugin's data about a customer to a data export (GDPR/CCPA).

    Called when a customer's data is exported, collected; each answer is put
    under the plugin's name in the export. Raising fails the export.
    """


@contract("collect", "outside-transaction")
def ordnung_erase_customer_data(customer: Customer) -> None:
    """Erase what this plugin holds about a customer.

    Called before the core anonymises the customer and their orders, collected.
    Raising aborts the erasure; nothing is anonymised.
    """


@contract("collect", "background")
def ordnung_account_notice(notice: AccountNotice) -> bool | None:
    """Deliver a one-time account token to the customer: a password reset or an e-mail
    verification (``notice.kind``).

    Called in the background once the request that asked for it has answered (so the
    answer is the same whether or not the address has an account), collected; answer
    ``True`` when the notice went out. ``notice.token`` is a secret: send it to
    ``notice.email`` only, never log or store it. It expires at ``notice.expires_at`` and
    works once. Not retried: raising is logged (without the token) and the customer asks
    again, which replaces the token. Let one plugin deliver these notices.
    """


# --------------------------------------------------------------------------- event brokers


@contract("collect", "start-up")
def ordnung_event_publisher() -> Any | None:
    """Return an object with ``async publish(events: Sequence[Event]) -> None``.

    Called once at start. Every committed event is then handed to each publisher
    by the broker worker, from the outbox and in the background (never on a
    request's path), in batches in outbox order. ``publish`` returns once the
    broker has confirmed every event and raises otherwise: the batch is retried
    with backoff and jitter, so a publisher must let the broker deduplicate by
    ``event.id`` (events may be published more than once, never lost).
    """
