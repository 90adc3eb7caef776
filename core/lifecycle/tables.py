"""The core transition tables (SPEC "The lifecycle").

Capabilities used by the engine's operations:

order
  ``authorize``  a payment may be authorized or started
  ``capture``    money may be captured
  ``refund``     captured money may be refunded
  ``hold``       the order may be put on hold (needs a ``hold`` transition)
  ``cancel``     the order may be cancelled (needs a ``cancel`` transition)
  ``fulfil``     shipments may be created, picked, packed and shipped
                 (needs ``ship_partial`` and ``ship_all`` transitions)
  ``deliver``    the order may become delivered (needs ``deliver``)
  ``complete``   the order may be completed (needs ``complete``)
  ``return``     returns may be requested (needs ``return_partial`` and ``return_all``)

The engine fires ``payment_secured`` when an order's payments cover its total
(or a payment grants terms such as cash on delivery) and the current state
has that transition; ``release`` leaves a hold.

payment
  ``authorize``  the gateway may still confirm (or decline: ``fail``) the payment
  ``capture``    money may be captured: only once the gateway has confirmed the
                 payment (``authorized``...), or where no gateway ever will
                 (``awaiting_payment``: staff capture money they received). A payment
                 the gateway has not confirmed (``pending``, ``awaiting_confirmation``)
                 cannot be captured; the gateway's own "captured" webhook confirms it
                 first (``authorize``), then captures.
  ``void``       the authorization (or what is left of it) may be released
"""

from __future__ import annotations

from collections.abc import Iterable

from ordnung.core.lifecycle.machine import Machine, StateExtension, StateSpec, Transition


def _s(name: str, *allows: str, terminal: bool = False, description: str = "") -> StateSpec:
    return StateSpec(name, frozenset(allows), terminal, description)


def _t(source: str, event: str, target: str) -> Transition:
    return Transition(source, event, target)


ORDER = Machine(
    "order",
    "draft",
    [
        _s("draft", description="a cart being priced; not yet an order"),
        _s("placed", "authorize", "capture", "hold", "cancel",
           description="stock reserved, waiting for payment to be secured"),
        _s("on_hold", "authorize", "cancel",
           description="held for review: nothing is captured or shipped until released"),
        _s("processing", "authorize", "capture", "refund", "hold", "cancel", "fulfil",
           description="paid (or on terms); ready to pick, pack and ship"),
        _s("partially_fulfilled", "capture", "refund", "fulfil",
           description="some lines shipped"),
        _s("fulfilled", "capture", "refund", "deliver", "return",
           description="every line shipped"),
        _s("delivered", "capture", "refund", "complete", "return",
           description="every shipment delivered"),
        _s("completed", "refund", "return", description="closed for fulfilment"),
        _s("partially_returned", "refund", "return", description="some lines returned"),
        _s("returned", "refund", terminal=True, description="every shipped line returned"),
        _s("cancelled", "refund", terminal=True, description="cancelled; stock released"),
    ],
    [
        _t("draft", "place", "placed"),
        _t("placed", "payment_secured", "processing"),
        _t("placed", "hold", "on_hold"),
        _t("placed", "cancel", "cancelled"),
        _t("on_hold", "release", "placed"),
        _t("on_hold", "cancel", "cancelled"),
        _t("processing", "hold", "on_hold"),
        _t("processing", "cancel", "cancelled"),
        _t("processing", "ship_partial", "partially_fulfilled"),
        _t("processing", "ship_all", "fulfilled"),
        _t("partially_fulfilled", "ship_partial", "partially_fulfilled"),
        _t("partially_fulfilled", "ship_all", "fulfilled"),
        _t("fulfilled", "deliver", "delivered"),
        _t("delivered", "complete", "completed"),
        *(
            _t(src, ev, dst)
            for src in ("fulfilled", "delivered", "completed", "partially_returned")
            for ev, dst in (("return_partial", "partially_returned"), ("return_all", "returned"))
        ),
    ],
    requires={
        "hold": ("hold",),
        "cancel": ("cancel",),
        "fulfil": ("ship_partial", "ship_all"),
        "deliver": ("deliver",),
        "complete": ("complete",),
        "return": ("return_partial", "return_all"),
    },
)

PAYMENT = Machine(
    "payment",
    "pending",
    [
        _s("pending", "authorize", "fail", "void",
           description="created; the gateway's answer is not recorded yet"),
        _s("awaiting_confirmation", "authorize", "fail", "void",
           description="the gateway confirms later (e.g. a webhook after 3-D Secure); "
                       "nothing can be captured before it does"),
        _s("awaiting_payment", "capture", "void",
           description="no gateway confirms it: money collected outside any gateway "
                       "(bank transfer, invoice, cash on delivery); capturing it is staff "
                       "marking it received"),
        _s("authorized", "capture", "void", description="funds held"),
        _s("partially_captured", "capture", "refund", "void"),
        _s("captured", "refund"),
        _s("partially_refunded", "refund"),
        _s("refunded", terminal=True),
        _s("failed", terminal=True),
        _s("voided", terminal=True),
    ],
    [
        _t("pending", "authorize", "authorized"),
        _t("pending", "await_confirmation", "awaiting_confirmation"),
        _t("pending", "await_payment", "awaiting_payment"),
        _t("pending", "fail", "failed"),
        _t("pending", "void", "voided"),
        _t("awaiting_confirmation", "authorize", "authorized"),
        _t("awaiting_confirmation", "fail", "failed"),
        _t("awaiting_confirmation", "void", "voided"),
        _t("awaiting_payment", "capture_partial", "partially_captured"),
        _t("awaiting_payment", "capture_all", "captured"),
        _t("awaiting_payment", "void", "voided"),
        _t("authorized", "capture_partial", "partially_captured"),
        _t("authorized", "capture_all", "captured"),
        _t("authorized", "void", "voided"),
        _t("partially_captured", "capture_partial", "partially_captured"),
        _t("partially_captured", "capture_all", "captured"),
        _t("partially_captured", "void", "captured"),
        _t("partially_captured", "refund_partial", "partially_captured"),
        _t("captured", "refund_partial", "partially_refunded"),
        _t("captured", "refund_all", "refunded"),
        _t("partially_refunded", "refund_partial", "partially_refunded"),
        _t("partially_refunded", "refund_all", "refunded"),
    ],
    requires={
        "authorize": ("authorize",),
        "void": ("void",),
        "fail": ("fail",),
        "capture": ("capture_partial", "capture_all"),
    },
)

SHIPMENT = Machine(
    "shipment",
    "pending",
    [
        _s("pending", "pick", "cancel"),
        _s("picking", "pack", "cancel"),
        _s("packed", "ship", "cancel"),
        _s("shipped", "track", "deliver"),
        _s("delivered", terminal=True),
        _s("cancelled", terminal=True),
    ],
    [
        _t("pending", "pick", "picking"),
        _t("picking", "pack", "packed"),
        _t("packed", "ship", "shipped"),
        _t("shipped", "deliver", "delivered"),
        _t("pending", "cancel", "cancelled"),
        _t("picking", "cancel", "cancelled"),
        _t("packed", "cancel", "cancelled"),
    ],
    requires={"pick": ("pick",), "pack": ("pack",), "ship": ("ship",),
              "deliver": ("deliver",), "cancel": ("cancel",)},
)

RETURN = Machine(
    "return",
    "requested",
    [
        _s("requested", "approve", "reject"),
        _s("approved", "receive"),
        _s("received", "refund"),
        _s("rejected", terminal=True),
        _s("refunded", terminal=True),
    ],
    [
        _t("requested", "approve", "approved"),
        _t("requested", "reject", "rejected"),
        _t("approved", "receive", "received"),
        _t("received", "refund", "refunded"),
    ],
    requires={"approve": ("approve",), "reject": ("reject",), "receive": ("receive",),
              "refund": ("refund",)},
)

CORE_MACHINES: dict[str, Machine] = {
    m.name: m for m in (ORDER, PAYMENT, SHIPMENT, RETURN)
}


def build_machines(extensions: Iterable[StateExtension]) -> dict[str, Machine]:
    """Merge plugin extensions into the core machines and validate each result."""
    by_machine: dict[str, list[StateExtension]] = {}
    for ext in extensions:
        if ext.machine not in CORE_MACHINES:
            from ordnung.core.errors import LifecycleDefinitionError

            raise LifecycleDefinitionError(
                f"unknown machine {ext.machine!r} (known: {', '.join(sorted(CORE_MACHINES))})"
            )
        by_machine.setdefault(ext.machine, []).append(ext)
    return {
        name: machine.extended(by_machine[name]) if name in by_machine else machine
        for name, machine in CORE_MACHINES.items()
    }
