"""The invariants the core enforces whatever plugins do.

Checked on every order before it is written; a violation aborts the
transaction. The database's CHECK constraints back the money rules a second
time, so even a bug here cannot commit an impossible order.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from ordnung.core.domain.orders import Order
from ordnung.core.errors import InvariantViolation


def payment_secured(order: Order) -> bool:
    """Paid enough to fulfil: live authorizations cover the total, or a payment grants terms.

    Only a confirmed payment holds money (``authorized``): one the gateway has not
    confirmed yet holds none (``check_order``), so it never counts as paid."""
    live = [p for p in order.payments if p.live]
    if any(p.grants_terms and not p.unconfirmed for p in live):
        return True
    return sum(p.authorized for p in live) >= order.totals.total


def _payment_amounts(order: Order) -> Iterator[str]:
    """Each payment refunds at most what it captured and captures at most what it holds."""
    for p in order.payments:
        if not 0 <= p.refunded <= p.captured <= p.authorized:
            yield (f"payment {p.id}: refunded {p.refunded} <= captured {p.captured} "
                   f"<= authorized {p.authorized} does not hold")
        if p.awaiting and (p.authorized or p.captured):
            yield f"payment {p.id} is {p.status}: it holds no money until it is confirmed"


def _payment_totals(order: Order) -> Iterator[str]:
    """The order's payment figures are the sums over its payments, within its total."""
    t = order.totals
    authorized = sum(p.authorized for p in order.payments)
    captured = sum(p.captured for p in order.payments)
    refunded = sum(p.refunded for p in order.payments)
    if authorized > t.total:
        yield f"authorized {authorized} exceeds total {t.total}"
    if not (t.authorized == authorized and t.paid == captured and t.refunded == refunded):
        yield "payment totals disagree with the payments"


def _price_totals(order: Order) -> Iterator[str]:
    """The totals are lines + adjustments + shipping (+ tax), never below zero."""
    t = order.totals
    subtotal = sum(line.line_total for line in order.lines)
    discounts = sum(a.amount for a in order.adjustments)
    shipping = order.shipping.price if order.shipping else 0
    tax = sum(line.tax for line in order.lines) + (order.shipping.tax if order.shipping else 0)
    expected_total = subtotal + discounts + shipping + (0 if order.prices_include_tax else tax)
    if (t.subtotal, t.discounts, t.shipping, t.tax, t.total) != (
            subtotal, discounts, shipping, tax, expected_total):
        yield "totals are not lines + adjustments + shipping + tax"
    if sum(line.discount for line in order.lines) != discounts:
        yield "line discounts do not add up to the adjustments"
    if t.total < 0:
        yield "total below zero"


def _line_quantities(order: Order) -> Iterator[str]:
    """A line ships at most what is still ordered, returns at most what shipped, and
    reserves at most what is still ordered."""
    for line in order.lines:
        if not 0 <= line.shipped <= line.quantity - line.cancelled:
            yield (f"line {line.id}: shipped {line.shipped} exceeds ordered "
                   f"{line.quantity} - cancelled {line.cancelled}")
        if not 0 <= line.returned <= line.shipped:
            yield f"line {line.id}: returned {line.returned} exceeds shipped"
        if sum(a.quantity for a in line.allocations) > line.quantity - line.cancelled:
            yield f"line {line.id}: more reserved than ordered"


def _shipment_quantities(order: Order) -> Iterator[str]:
    """The shipments that are not cancelled hold at most what each line still orders."""
    in_shipments: dict[str, int] = {}
    for shipment in order.shipments:
        if shipment.status == "cancelled":
            continue
        for sl in shipment.lines:
            in_shipments[sl.line_id] = in_shipments.get(sl.line_id, 0) + sl.quantity
    for line in order.lines:
        if in_shipments.get(line.id, 0) > line.quantity - line.cancelled:
            yield f"line {line.id}: shipments hold more than ordered"


#: the checks ``check_order`` runs, in the order their problems are reported
ORDER_CHECKS: tuple[Callable[[Order], Iterable[str]], ...] = (
    _payment_amounts, _payment_totals, _price_totals, _line_quantities, _shipment_quantities)


def check_order(order: Order) -> None:
    """Raise ``InvariantViolation`` naming every problem any of ``ORDER_CHECKS`` finds."""
    problems = [problem for check in ORDER_CHECKS for problem in check(order)]
    if problems:
        raise InvariantViolation("; ".join(problems), order_id=order.id, problems=problems)


def refresh_money_totals(order: Order) -> None:
    """Recompute the derived payment figures of ``order.totals``."""
    import msgspec

    authorized = sum(p.authorized for p in order.payments)
    captured = sum(p.captured for p in order.payments)
    refunded = sum(p.refunded for p in order.payments)
    order.totals = msgspec.structs.replace(order.totals, authorized=authorized, paid=captured,
                                           refunded=refunded,
                                           balance=0 if order.status == "cancelled"
                                           else max(order.totals.total - captured, 0))
