"""Rule-based fraud screening: a risk score from simple, configurable rules.

Each rule that fires adds its points to the order's score (capped at 100)
and a reason staff can read; at ``hold_at`` points the order goes on hold for
review, so nothing is captured or shipped until staff release it
(``engine.orders.release``) or cancel it.

Rules:

* **amount** — the order total is above a threshold of its currency; of
  several thresholds only the highest one passed counts;
* **velocity** — more than ``max_orders`` orders within ``window_minutes``
  from one customer account, e-mail address, card fingerprint
  (``client["card_fingerprint"]``) or IP address (``client["ip"]``), this
  order included. Placements are counted in this plugin's store, in the
  placement's own transaction (a placement that fails counts nothing), in
  twelve time slots per window. The store keeps only keyed hashes of the
  values, never an address or a fingerprint itself, and forgets them once
  the window has passed (or when the customer's data is erased);
* **country mismatch** — the billing country differs from the shipping country.

Every placement is assessed and the assessment is written to the order's
timeline (``order.risk_assessed``), also when nothing fired.
"""

from __future__ import annotations

import hashlib
import time
from datetime import datetime
from typing import Any, Literal

import msgspec
import structlog

from ordnung.plugin import (
    Customer,
    Event,
    Money,
    PluginStore,
    RiskAssessment,
    RiskContext,
    WithContext,
    hookimpl,
)

log = structlog.get_logger("ordnung.fraud")

Dimension = Literal["customer", "email", "card_fingerprint", "ip"]

#: how each dimension is named in a reason
SUBJECT = {"customer": "this customer account", "email": "this e-mail address",
           "card_fingerprint": "this card", "ip": "this IP address"}
#: time slots per velocity window
SLOTS = 12
MAX_SCORE = 100


class AmountRule(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Points for an order total above ``above`` (minor units of ``currency``)."""

    currency: str
    above: int
    score: int


class VelocityRule(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Points when more than ``max_orders`` orders share a ``by`` value within the window."""

    by: Dimension
    max_orders: int
    window_minutes: int = 60
    score: int = 40

    @property
    def kind(self) -> str:
        """The store kind holding this rule's counters."""
        return f"velocity:{self.by}:{self.window_minutes}"

    @property
    def slot_seconds(self) -> int:
        return max(self.window_minutes * 60 // SLOTS, 1)

    def slot(self, at: float) -> int:
        return int(at) // self.slot_seconds


def _default_amounts() -> list[AmountRule]:
    return [AmountRule(currency=c, above=above, score=score)
            for c in ("EUR", "USD", "GBP")
            for above, score in ((100_000, 30), (500_000, 70))]


def _default_velocity() -> list[VelocityRule]:
    return [VelocityRule(by="ip", max_orders=5, window_minutes=60, score=40),
            VelocityRule(by="card_fingerprint", max_orders=3, window_minutes=60, score=50),
            VelocityRule(by="email", max_orders=5, window_minutes=24 * 60, score=30),
            VelocityRule(by="customer", max_orders=5, window_minutes=24 * 60, score=30)]


class RiskRules(WithContext["RiskRules.Settings"]):
    """Rule-based risk score (amount, velocity, country mismatch); holds risky orders."""

    class Settings(msgspec.Struct, forbid_unknown_fields=True):
        #: score (0-100) from which an order is held for review
        hold_at: int = 70
        amounts: list[AmountRule] = msgspec.field(default_factory=_default_amounts)
        velocity: list[VelocityRule] = msgspec.field(default_factory=_default_velocity)
        #: points when billing and shipping country differ; 0 disables the rule
        country_mismatch_score: int = 30
        #: key of the hash under which e-mail addresses, IPs and fingerprints are counted
        hash_key: str = "ordnung-risk-rules"

        def __post_init__(self) -> None:
            if not 0 < self.hold_at <= MAX_SCORE:
                raise ValueError(f"hold_at must be between 1 and {MAX_SCORE}")
            for rule in self.velocity:
                if rule.max_orders < 0 or rule.window_minutes <= 0:
                    raise ValueError("velocity rules need max_orders >= 0 and a positive window")

    def __init__(self, settings: RiskRules.Settings) -> None:
        self.settings = settings
        self._last_sweep = 0.0

    def _store(self) -> PluginStore:
        return self.started.store

    def _digest(self, by: str, value: str) -> str:
        return hashlib.blake2b(f"{by}:{value.strip().lower()}".encode(), digest_size=16,
                               key=self.settings.hash_key.encode()[:64]).hexdigest()

    # -- the rules ------------------------------------------------------------------------
    def _amount(self, total: int, currency: str) -> tuple[int, str] | None:
        passed = [r for r in self.settings.amounts if r.currency == currency and total > r.above]
        if not passed:
            return None
        rule = max(passed, key=lambda r: r.above)
        return rule.score, (f"order total {Money(total, currency).format()} is above "
                            f"{Money(rule.above, currency).format()}")

    @staticmethod
    def _values(ctx: RiskContext) -> dict[str, str]:
        order = ctx.order
        values = {"customer": order.customer_id or "", "email": order.email,
                  "card_fingerprint": ctx.client.get("card_fingerprint", ""),
                  "ip": ctx.client.get("ip", "")}
        return {k: v.strip() for k, v in values.items() if v and v.strip()}

    async def _velocity(self, rule: VelocityRule, value: str, at: datetime) -> int:
        """Count this placement and return how many fell within the rule's window."""
        store = self._store()
        digest = self._digest(rule.by, value)
        now = rule.slot(at.timestamp())
        # claim first: on PostgreSQL the slot's row lock then orders concurrent placements
        await store.claim(rule.kind, f"{digest}|{now:012d}")
        count = 0
        for key, _, counter in await store.records(rule.kind, prefix=f"{digest}|"):
            slot = int(key.rsplit("|", 1)[1])
            if slot > now - SLOTS:
                count += counter
        return count

    @hookimpl
    async def ordnung_assess_risk(self, ctx: RiskContext) -> RiskAssessment:
        order = ctx.order
        score = 0
        reasons: list[str] = []
        amount = self._amount(order.totals.total, order.currency)
        if amount is not None:
            score += amount[0]
            reasons.append(amount[1])
        values = self._values(ctx)
        counts: dict[str, int] = {}  # rules sharing a dimension and window share a counter
        for rule in self.settings.velocity:
            value = values.get(rule.by)
            if value is None:
                continue
            if rule.kind not in counts:
                counts[rule.kind] = await self._velocity(rule, value, order.created_at)
            count = counts[rule.kind]
            if count > rule.max_orders:
                score += rule.score
                reasons.append(f"{count} orders from {SUBJECT[rule.by]} within "
                               f"{_duration(rule.window_minutes)} (more than {rule.max_orders})")
        shipping, billing = order.shipping_address, order.billing_address
        if (self.settings.country_mismatch_score and shipping is not None and billing is not None
                and shipping.country != billing.country):
            score += self.settings.country_mismatch_score
            reasons.append(f"billing country {billing.country} differs from shipping "
                           f"country {shipping.country}")
        score = min(score, MAX_SCORE)
        hold = score >= self.settings.hold_at
        if hold:
            log.info("order held for review", order_number=order.number, score=score)
        return RiskAssessment(score=score, reasons=reasons, hold=hold)

    # -- housekeeping ---------------------------------------------------------------------
    @hookimpl
    async def ordnung_on_event(self, event: Event) -> None:
        """After placements, now and then: forget counters whose window has passed."""
        if event.kind != "order.placed" or self.context is None:
            return
        slot = min((r.slot_seconds for r in self.settings.velocity), default=0)
        if not slot or time.time() - self._last_sweep < slot:
            return
        self._last_sweep = time.time()
        await self.sweep()

    async def sweep(self, at: float | None = None) -> int:
        """Delete counters older than their rule's window; returns how many went."""
        store = self._store()
        now = time.time() if at is None else at
        removed = 0
        for kind in sorted({r.kind for r in self.settings.velocity}):
            rule = next(r for r in self.settings.velocity if r.kind == kind)
            oldest = rule.slot(now) - SLOTS
            for key, _, _ in await store.records(kind):
                if int(key.rsplit("|", 1)[1]) <= oldest:
                    await store.delete(kind, key)
                    removed += 1
        return removed

    async def _customer_keys(self, customer: Customer) -> list[tuple[VelocityRule, str]]:
        values = {"customer": customer.id, "email": customer.email}
        return [(rule, self._digest(rule.by, values[rule.by]))
                for rule in self.settings.velocity if values.get(rule.by)]

    @hookimpl
    async def ordnung_export_customer_data(self, customer: Customer) -> dict[str, Any]:
        store = self._store()
        counted: dict[str, int] = {}
        for rule, digest in await self._customer_keys(customer):
            rows = await store.records(rule.kind, prefix=f"{digest}|")
            counted[rule.kind] = sum(counter for _, _, counter in rows)
        return {"recent_orders_counted": counted}

    @hookimpl
    async def ordnung_erase_customer_data(self, customer: Customer) -> None:
        store = self._store()
        for rule, digest in await self._customer_keys(customer):
            for key, _, _ in await store.records(rule.kind, prefix=f"{digest}|"):
                await store.delete(rule.kind, key)


def _duration(minutes: int) -> str:
    if minutes % (24 * 60) == 0:
        days = minutes // (24 * 60)
        return f"{days} day" + ("s" if days > 1 else "")
    if minutes % 60 == 0:
        hours = minutes // 60
        return f"{hours} h"
    return f"{minutes} min"
