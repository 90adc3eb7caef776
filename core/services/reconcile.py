"""Reconciliation: finish the work a crashed process left behind.

A placement records its order with the payment's authorization *in flight*, then
asks the gateway, then records the answer. If the process dies while the gateway
answers, the order keeps its stock and the authorization stays in flight: nobody
is left to record the answer, and the gateway may well hold the money. The
reconciliation job finishes such payments once they have been in flight longer
than a grace period (no gateway call takes that long, so the process that sent
it is gone):

- the gateway supports ``ordnung_lookup_operation``: the job asks it what became
  of the authorization, by the same idempotency key, and records that answer as
  the placement would have (approved: the order goes on; declined: the payment
  fails and the placement is cancelled, its stock released). A gateway that never
  received the key did nothing: the payment fails the same way.
- otherwise (no such hook, or the gateway cannot tell): the job voids the
  authorization with the gateway and cancels the placement, releasing its stock.

Every outcome is a ``payment.reconciled`` event in the order's timeline. A repeat of
the placement's ``Idempotency-Key`` then answers the finished order (or the
decline) for good. The job runs in every server process; a lease on the database's
clock lets one of them work at a time, and the age of an authorization is judged on
the database's clock too (``orders.authorizing_since`` is stamped with it), so a
server whose clock runs behind never takes a live authorization for a lost one.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta
from typing import Literal

import structlog

from ordnung.core.domain.common import new_id
from ordnung.core.domain.orders import Order
from ordnung.core.domain.payments import GatewayResult, Payment
from ordnung.core.persistence.leases import JobLeases
from ordnung.core.runtime import Runtime, bound
from ordnung.core.services.payments import PaymentService

log = structlog.get_logger("ordnung.reconcile")

JOB = "reconcile"
ACTOR = "system:reconcile"
#: orders looked at per round: a backlog is worked off over the following rounds
BATCH = 50
NEVER_RECEIVED = "the gateway never received the authorization (its placement was interrupted)"
UNKNOWN = ("the authorization's outcome could not be learnt after its placement was "
           "interrupted; voided")

Outcome = Literal["resumed", "declined", "voided", "skipped"]


class ReconcileService:
    def __init__(self, rt: Runtime, payments: PaymentService, *, grace_s: float,
                 interval_s: float) -> None:
        self.rt = rt
        self.payments = payments
        self.grace_s = grace_s
        self.interval_s = interval_s
        self.leases = JobLeases(rt.db)
        #: this process, as the lease's holder
        self.owner = new_id("job")

    @property
    def lease_s(self) -> float:
        """Long enough to outlive a slow round (the holder renews it every round); short
        enough that another process takes the job over soon after the holder died."""
        return max(3 * self.interval_s, 2.0)

    async def run_once(self, *, grace_s: float | None = None) -> dict[str, int]:
        """One round, if this process holds the job's lease: finish every payment in
        flight for longer than the grace period. Returns what it did, by outcome."""
        done: dict[str, int] = {}
        with self.rt.db.outside_transaction():
            if not await self.leases.take(JOB, self.owner, self.lease_s):
                return done
            grace = self.grace_s if grace_s is None else grace_s
            cutoff = await self.leases.now() - timedelta(seconds=grace)
        for n, order_id in enumerate(await self.rt.orders.authorizing_before(cutoff, BATCH)):
            if n and not await self.leases.take(JOB, self.owner, self.lease_s):
                break  # a slow round lost the lease: the new holder goes on from here
            with bound(order_id=order_id):
                try:
                    for outcome in await self.finish(order_id, cutoff):
                        done[outcome] = done.get(outcome, 0) + 1
                except Exception as exc:  # the next round tries again
                    log.warning("reconciling an order failed", error=repr(exc))
        if done:
            log.info("reconciled interrupted placements", **done)
        return done

    async def finish(self, order_id: str, cutoff: datetime) -> list[Outcome]:
        """Finish the payments of ``order_id`` in flight since before ``cutoff``."""
        order, since = await self.rt.orders.authorizing_order(order_id)
        if since is None or since >= cutoff:
            return []  # answered meanwhile, or another operation started since
        stuck = [p for p in order.payments
                 if p.in_flight in ("authorize", "void")
                 and self.rt.lifecycle.payment_unanswered(p)]
        if not stuck:  # an estimate of the migration
            await self.rt.orders.clear_authorizing(order)
            return []
        placed_with = await self._placement_payment(order_id)
        return [await self._settle(order, p, one_shot=p.id == placed_with) for p in stuck]

    async def _settle(self, order: Order, payment: Payment, *, one_shot: bool) -> Outcome:
        note = {"job": JOB, "in_flight_since": payment.in_flight_since.isoformat()
                if payment.in_flight_since else None}
        with bound(payment_id=payment.id):
            if payment.in_flight == "authorize":
                found = await self.payments.lookup(order, payment, "authorize")
                if found is not None:
                    result = found.result if found.found and found.result is not None else (
                        GatewayResult(outcome="declined", reason=NEVER_RECEIVED))
                    applied, _ = await self.payments.record_authorization(
                        order.id, payment.id, payment.operations, result, one_shot=one_shot,
                        actor=ACTOR, note={**note, "via": "lookup", "found": found.found})
                    if not applied:
                        return "skipped"
                    log.warning("finished an interrupted authorization", outcome=result.outcome,
                                found=found.found)
                    return "declined" if result.outcome == "declined" else "resumed"
            applied, _ = await self.payments.abandon_authorization(
                order.id, payment.id, payment.operations, one_shot=one_shot, reason=UNKNOWN,
                note={**note, "via": "void"}, actor=ACTOR)
            if applied:
                log.warning("voided an interrupted authorization whose outcome is unknown")
            return "voided" if applied else "skipped"

    async def _placement_payment(self, order_id: str) -> str | None:
        """The payment the order was placed with (its decline cancels the placement), if
        any: the placement records it right after the order, as the timeline's second
        event; a payment started later fails alone."""
        for ev in await self.rt.journal.timeline(order_id):
            if ev.seq == 2:
                return ev.entity_id if ev.kind == "payment.created" else None
        return None

    async def loop(self) -> None:
        """Run a round every ``interval_s`` seconds until cancelled."""
        try:
            while True:
                try:
                    await self.run_once()
                except Exception as exc:  # the database may be away: the next round retries
                    log.warning("reconciliation round failed", error=repr(exc))
                await asyncio.sleep(self.interval_s)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.leases.release(JOB, self.owner))
