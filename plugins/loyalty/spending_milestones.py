"""A one-time coupon for a future order when a customer's lifetime spend passes a milestone.

Lifetime spend is the core's figure (``context.engine.customer(id).lifetime_spend``:
captured minus refunded, per currency, over the customer's orders that are not
cancelled). After every committed capture of a registered customer's order
(``ordnung_after_transition`` on a payment reaching ``captured`` or
``partially_captured``) the plugin compares it with the milestones in that
currency; for each milestone reached and not yet rewarded it

1. records the milestone for the customer in its own store (``kind="issued"``,
   ``key="<customer id>/<CUR>:<threshold>"``, ``data={"code", "order_id", "spend",
   "issued_at"}``), first writer wins (``store.add``): **at most one coupon per
   milestone per customer**, even when reactions run twice or concurrently;
2. has the coupon plugin named by ``coupons_plugin`` issue the coupon
   (``context.engine.issue_coupon``, which calls its ``ordnung_issue_coupon``: this
   plugin never touches that plugin's store): one use, only for that customer, in
   the milestone's currency, valid ``valid_days`` days;
3. writes a note into the order's timeline (``order.note``: "lifetime spend reached
   ... coupon THANKS-... issued"), guarded by a counter so it is written once.

Each step is idempotent, so the at-least-once retry of a failed reaction completes
what a crash left half done. A milestone stays rewarded when a later refund
lowers the spend again. A coupon plugin must be enabled (start-up fails
otherwise, when milestones are configured).
"""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

import msgspec

from ordnung.plugin import (
    CouponGrant,
    Customer,
    Event,
    Money,
    Order,
    PluginContext,
    PluginError,
    PluginStore,
    WithContext,
    hookimpl,
    is_valid_currency,
    utcnow,
)

ISSUED = "issued"
NOTED = "noted"
CAPTURED_STATES = frozenset({"captured", "partially_captured"})


class Milestone(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    #: lifetime spend (minor units of ``currency``) that earns the coupon
    threshold: int
    currency: str
    #: the reward: whole percent off, or a fixed amount in ``currency`` (exactly one)
    percent: int = 0
    amount: int = 0
    #: days the coupon stays valid; 0 = no expiry
    valid_days: int = 90
    #: minimum subtotal of the order the coupon is used on
    min_subtotal: int = 0
    name: str = ""

    def __post_init__(self) -> None:
        if self.threshold <= 0 or not is_valid_currency(self.currency):
            raise ValueError("a milestone needs a positive threshold and an ISO 4217 currency")
        if (self.percent > 0) == (self.amount > 0):
            raise ValueError("a milestone rewards exactly one of percent and amount")
        if self.valid_days < 0:
            raise ValueError("valid_days must be >= 0")

    @property
    def key(self) -> str:
        return f"{self.currency}:{self.threshold}"

    @property
    def label(self) -> str:
        return self.name or Money(self.threshold, self.currency).format()

    @property
    def reward(self) -> str:
        if self.percent:
            return f"{self.percent}% off"
        return f"{Money(self.amount, self.currency).format()} off"


class SpendingMilestones(WithContext["SpendingMilestones.Settings"]):
    """A one-time coupon when a customer's lifetime spend passes a milestone."""

    class Settings(msgspec.Struct, forbid_unknown_fields=True):
        milestones: list[Milestone] = []
        #: the plugin whose store the coupons are issued into
        coupons_plugin: str = "coupons"
        code_prefix: str = "THANKS"

    def __init__(self, settings: SpendingMilestones.Settings) -> None:
        self.settings = settings

    @hookimpl
    def ordnung_plugin_started(self, context: PluginContext[SpendingMilestones.Settings]) -> None:
        issuer = self.settings.coupons_plugin
        if self.settings.milestones and issuer not in context.engine.coupon_issuers():
            raise PluginError(context.name, f"needs the {issuer!r} plugin enabled to issue "
                                            "its coupons")
        self.context = context

    @property
    def store(self) -> PluginStore:
        return self.started.store

    @hookimpl
    async def ordnung_after_transition(self, event: Event, order: Order | None) -> None:
        if (event.machine != "payment" or event.to_state not in CAPTURED_STATES
                or order is None or not order.customer_id or not self.settings.milestones):
            return
        customer = await self.started.engine.customer(order.customer_id)
        if customer.erased:
            return
        spend = customer.lifetime_spend.get(order.currency, 0)
        for milestone in sorted(self.settings.milestones, key=lambda m: m.threshold):
            if milestone.currency == order.currency and spend >= milestone.threshold:
                await self._reward(customer, milestone, order, spend)

    async def _reward(self, customer: Customer, milestone: Milestone, order: Order,
                      spend: int) -> None:
        key = f"{customer.id}/{milestone.key}"
        code = f"{self.settings.code_prefix}-{secrets.token_hex(4).upper()}"
        now = utcnow()
        await self.store.add(ISSUED, key, {"code": code, "order_id": order.id, "spend": spend,
                                           "issued_at": now.isoformat()})
        record = await self.store.get(ISSUED, key)
        assert record is not None
        code = str(record["code"])  # the first writer's code, if another one won
        coupon = CouponGrant(
            code=code, percent=milestone.percent, amount=milestone.amount,
            currency=milestone.currency, min_subtotal=milestone.min_subtotal,
            expires_at=now + timedelta(days=milestone.valid_days)
            if milestone.valid_days else None,
            max_uses=1, max_uses_per_customer=1, customer_id=customer.id,
            description=f"thank you for passing {milestone.label}")
        await self.started.engine.issue_coupon(coupon, issuer=self.settings.coupons_plugin)
        if await self.store.claim(NOTED, key, limit=1):
            try:
                await self.started.engine.add_note(
                    str(record["order_id"]),
                    f"lifetime spend reached {milestone.label}: coupon {code} "
                    f"({milestone.reward}) issued for a future order")
            except Exception:
                await self.store.release(NOTED, key)  # the retry writes it
                raise

    async def issued(self, customer_id: str) -> list[dict[str, Any]]:
        """The milestones rewarded for a customer, with their coupon codes."""
        prefix = f"{customer_id}/"
        return [{"milestone": key[len(prefix):], **data}
                for key, data, _ in await self.store.records(ISSUED, prefix)
                if key.startswith(prefix)]  # records() matches with LIKE: '_' is a wildcard

    @hookimpl
    async def ordnung_export_customer_data(self, customer: Customer) -> dict[str, Any] | None:
        rewarded = await self.issued(customer.id)
        return {"milestones": rewarded} if rewarded else None
