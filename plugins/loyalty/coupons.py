"""Coupon codes: percentage or fixed amount, minimum subtotal, validity window, usage limits.

Where coupons come from
    Coupons are configured in ``Settings.coupons`` and/or issued at run time into
    the plugin's store (``issue_coupon(engine.plugin_store("coupons"), Coupon(...))``;
    the ``spending_milestones`` plugin does this). A configured coupon wins over a
    stored one with the same code. Codes are compared case-insensitively
    (``summer10`` is ``SUMMER10``).

Store record format (plugin ``coupons``; other plugins may write ``coupon`` records)
    ``kind="coupon"``, ``key=<CODE upper-cased>``, ``data=msgspec.to_builtins(Coupon)``:
    a JSON object with the fields of :class:`Coupon` (datetimes as ISO 8601 strings
    with a time zone). Usage counters, written by this plugin only:
    ``kind="uses", key=<CODE>`` (every use) and ``kind="uses_by",
    key="<CODE>|customer:<id>"`` / ``"<CODE>|email:<sha256 of the e-mail>"`` (only for
    coupons with ``max_uses_per_customer``); ``kind="claim", key=<order id>``
    lists the counters an order claimed, so that cancelling it gives exactly those back.

Stacking rule (applied to the order's codes in the order they were entered,
duplicates ignored)
    1. A code that is unknown, not yet valid, expired, for another currency or
       customer, below its minimum subtotal or used up is not applied; the price
       explanation says why.
    2. The first applicable coupon is applied. A further coupon is applied only if
       it *and every coupon applied before it* are ``stackable``; so a coupon that
       is not stackable is always alone on an order. A coupon left out by this
       rule is explained ("cannot be combined").
    3. Percentage coupons are computed first, in code order, each on what is left
       of the subtotal after the previous ones (10 % and 10 % take 19 %), rounded
       half-up to the minor unit; fixed-amount coupons are subtracted after them.
       All are order-level discounts. The core caps discounts so that no line and
       no order goes below zero, and says so in the explanation.

Placement
    Pricing only *reads* usage. At placement every code on the order must be
    applied (otherwise ``ValidationFailed`` names the code and why; with
    ``refuse_unknown_codes=False`` unknown codes are left to other plugins), and
    each applied coupon's uses are *claimed* in the placement transaction with a
    guarded counter: when 5 uses are left and 20 customers place at once, exactly
    5 orders get the coupon and the others are refused with ``ValidationFailed``
    (``coupon-exhausted``). Cancelling an order gives its uses back.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime
from fractions import Fraction
from typing import Any

import msgspec

from ordnung.plugin import (
    CouponGrant,
    Customer,
    Discount,
    Money,
    Note,
    Order,
    PluginContext,
    PluginError,
    PluginStore,
    PricingContext,
    ValidationFailed,
    Violation,
    hookimpl,
    is_valid_currency,
    round_ratio,
)

COUPON = "coupon"
USES = "uses"
USES_BY = "uses_by"
CLAIM = "claim"
#: evaluations kept for the validation of the pricing that made them (see ``_evaluation``)
RECENT_EVALUATIONS = 64

def normalize(code: str) -> str:
    """The form a code is stored and compared in: trimmed, upper case."""
    return code.strip().upper()


class Coupon(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    """One coupon code. Exactly one of ``percent`` and ``amount`` is set."""

    code: str
    #: whole percent off the subtotal, 1..100
    percent: int = 0
    #: a fixed amount off, in minor units of ``currency``
    amount: int = 0
    #: required for ``amount`` and ``min_subtotal``; empty = any currency
    currency: str = ""
    #: the subtotal (customer's lines, before discounts) must reach this
    min_subtotal: int = 0
    #: valid from / until (ISO 8601 with a time zone, e.g. "2025-12-31T23:00:00Z")
    starts_at: datetime | None = None
    expires_at: datetime | None = None
    #: total uses over all orders; None = unlimited
    max_uses: int | None = None
    #: uses per customer id and per e-mail address; None = unlimited
    max_uses_per_customer: int | None = None
    #: only this customer may use it (e.g. a coupon issued to them)
    customer_id: str | None = None
    #: may be combined with other stackable coupons (see the stacking rule)
    stackable: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        if not normalize(self.code) or "|" in self.code:
            raise ValueError("a coupon needs a code (without '|')")
        if (self.percent > 0) == (self.amount > 0):
            raise ValueError(f"coupon {self.code}: set exactly one of percent and amount")
        if not 0 <= self.percent <= 100 or self.amount < 0 or self.min_subtotal < 0:
            raise ValueError(f"coupon {self.code}: percent must be 0..100, amounts >= 0")
        if (self.amount or self.min_subtotal) and not is_valid_currency(self.currency):
            raise ValueError(f"coupon {self.code}: a fixed amount or a minimum subtotal "
                             "needs an ISO 4217 currency")
        for moment in (self.starts_at, self.expires_at):
            if moment is not None and moment.tzinfo is None:
                raise ValueError(f"coupon {self.code}: starts_at/expires_at need a timezone")
        for limit in (self.max_uses, self.max_uses_per_customer):
            if limit is not None and limit < 0:
                raise ValueError(f"coupon {self.code}: usage limits must be >= 0")

    @property
    def key(self) -> str:
        return normalize(self.code)

    def describe(self) -> str:
        if self.percent:
            return f"{self.percent}% off"
        return f"{Money(self.amount, self.currency).format()} off"


async def issue_coupon(store: PluginStore, coupon: Coupon) -> bool:
    """Store a coupon for run-time use; False if a coupon with that code exists already."""
    return await store.add(COUPON, coupon.key, msgspec.to_builtins(coupon))


async def stored_coupon(store: PluginStore, code: str) -> Coupon | None:
    data = await store.get(COUPON, normalize(code))
    if data is None:
        return None
    return msgspec.convert(data, Coupon, strict=False)


def identities(customer_id: str | None, email: str) -> list[str]:
    """Whom per-customer limits count: the customer id and the e-mail (hashed)."""
    out = []
    if customer_id:
        out.append(f"customer:{customer_id}")
    if email:
        digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
        out.append(f"email:{digest}")
    return out


class Rejection(msgspec.Struct, frozen=True):
    code: str
    violation: str
    reason: str


class Evaluation(msgspec.Struct):
    applied: list[Coupon]
    discounts: list[Discount]
    rejected: list[Rejection]
    unknown: list[str]


class Coupons:
    """Coupon codes: percentage or fixed, minimum subtotal, expiry, usage limits, stacking."""

    class Settings(msgspec.Struct, forbid_unknown_fields=True):
        #: coupons configured here; more can be issued at run time into the store
        coupons: list[Coupon] = []
        #: at placement, refuse a code no coupon has (False: leave it to other plugins)
        refuse_unknown_codes: bool = True

        def __post_init__(self) -> None:
            keys = [c.key for c in self.coupons]
            dupes = sorted({k for k in keys if keys.count(k) > 1})
            if dupes:
                raise ValueError(f"coupon codes configured twice: {', '.join(dupes)}")

    def __init__(self, settings: Coupons.Settings) -> None:
        self.settings = settings
        self.name = ""
        self.configured = {c.key: c for c in settings.coupons}
        self._store: PluginStore | None = None
        self._recent: OrderedDict[int, tuple[list[str], tuple[Any, ...], Evaluation]] = \
            OrderedDict()

    # -- wiring ---------------------------------------------------------------------
    @hookimpl
    def ordnung_plugin_started(self, context: PluginContext[Coupons.Settings]) -> None:
        self.name = context.name
        self._store = context.store

    @property
    def store(self) -> PluginStore:
        if self._store is None:
            raise PluginError(self.name or "coupons", "used before the engine started")
        return self._store

    @hookimpl
    async def ordnung_issue_coupon(self, grant: CouponGrant) -> bool:
        """Coupons other plugins grant (loyalty rewards) are issued here, into this
        plugin's own store."""
        return await self.issue(Coupon(**msgspec.structs.asdict(grant)))

    async def issue(self, coupon: Coupon) -> bool:
        """Issue a coupon at run time (False if the code exists, configured or stored)."""
        if coupon.key in self.configured:
            return False
        return await issue_coupon(self.store, coupon)

    async def lookup(self, code: str, store: PluginStore | None = None) -> Coupon | None:
        key = normalize(code)
        if key in self.configured:
            return self.configured[key]
        return await stored_coupon(store or self.store, key)

    async def uses(self, code: str) -> int:
        return await self.store.count(USES, normalize(code))

    # -- evaluation (pricing and validation share it) ----------------------------------
    async def _problem(self, coupon: Coupon, ctx: PricingContext,
                       store: PluginStore) -> tuple[str, str] | None:
        """Why ``coupon`` cannot apply to this cart, as (violation code, reason); else None."""
        if coupon.starts_at is not None and ctx.now < coupon.starts_at:
            return "coupon-not-yet-valid", f"valid from {coupon.starts_at.isoformat()}"
        if coupon.expires_at is not None and ctx.now >= coupon.expires_at:
            return "coupon-expired", f"expired on {coupon.expires_at.isoformat()}"
        if coupon.currency and coupon.currency != ctx.currency:
            return "coupon-currency", f"only valid for orders in {coupon.currency}"
        if coupon.customer_id is not None and (
                ctx.customer is None or ctx.customer.id != coupon.customer_id):
            return "coupon-customer", "issued to another customer"
        if coupon.min_subtotal and ctx.subtotal < coupon.min_subtotal:
            missing = Money(coupon.min_subtotal - ctx.subtotal, ctx.currency)
            return ("coupon-minimum",
                    f"needs a subtotal of {Money(coupon.min_subtotal, ctx.currency).format()} "
                    f"(spend {missing.format()} more)")
        if coupon.max_uses is not None and await store.count(USES, coupon.key) \
                >= coupon.max_uses:
            return "coupon-exhausted", "has been used up"
        if coupon.max_uses_per_customer is not None:
            customer_id = ctx.customer.id if ctx.customer else None
            for ident in identities(customer_id, ctx.email):
                if await store.count(USES_BY, f"{coupon.key}|{ident}") \
                        >= coupon.max_uses_per_customer:
                    return "coupon-exhausted-for-customer", \
                        "already used as often as allowed by this customer"
        return None

    async def evaluate(self, ctx: PricingContext,
                       store: PluginStore | None = None) -> Evaluation:
        """Apply the stacking rule to ``ctx.codes``; see the module docstring."""
        store = store or self.store
        result = Evaluation(applied=[], discounts=[], rejected=[], unknown=[])
        seen: set[str] = set()
        for raw in ctx.codes:
            key = normalize(raw)
            if not key or key in seen:
                continue
            seen.add(key)
            coupon = await self.lookup(key, store)
            if coupon is None:
                result.unknown.append(key)
                continue
            problem = await self._problem(coupon, ctx, store)
            if problem is not None:
                result.rejected.append(Rejection(key, *problem))
                continue
            if result.applied and not (
                    coupon.stackable and all(c.stackable for c in result.applied)):
                result.rejected.append(Rejection(
                    key, "coupon-not-combinable",
                    f"cannot be combined with {result.applied[0].key}"))
                continue
            result.applied.append(coupon)
        remaining = ctx.subtotal
        for coupon in result.applied:
            if coupon.percent:
                off = round_ratio(Fraction(remaining * coupon.percent, 100))
                remaining -= off
                result.discounts.append(self._discount(coupon, off))
        for coupon in result.applied:
            if coupon.amount:
                result.discounts.append(self._discount(coupon, coupon.amount))
        return result

    async def _evaluation(self, ctx: PricingContext, *, validating: bool) -> Evaluation:
        """Evaluate the codes once per placement: its validation reuses what its pricing
        found moments before, instead of reading every usage counter again.

        The core hands every hook of one pricing contexts that share its ``codes`` list,
        so that list (with the inputs of the evaluation, compared too) tells a pricing
        apart from any other in flight; the claim at commit stays the guard against
        uses taken in between. An evaluation no validation asks for (a cart's
        re-pricing) is dropped once ``RECENT_EVALUATIONS`` newer ones are kept.
        """
        inputs = (ctx.currency, ctx.customer.id if ctx.customer else None, ctx.email,
                  ctx.subtotal, ctx.now)
        kept = (self._recent.pop(id(ctx.codes), None) if validating
                else self._recent.get(id(ctx.codes)))
        if kept is not None and kept[0] is ctx.codes and kept[1] == inputs:
            return kept[2]
        result = await self.evaluate(ctx)
        if not validating:
            self._recent[id(ctx.codes)] = (ctx.codes, inputs, result)
            while len(self._recent) > RECENT_EVALUATIONS:
                self._recent.popitem(last=False)
        return result

    @staticmethod
    def _discount(coupon: Coupon, amount: int) -> Discount:
        reason = f"coupon {coupon.key}: {coupon.describe()}"
        if coupon.description:
            reason += f" ({coupon.description})"
        return Discount(amount=amount, reason=reason, code=coupon.key)

    # -- hooks ----------------------------------------------------------------------
    @hookimpl
    async def ordnung_adjustments(self, ctx: PricingContext) -> list[Discount | Note] | None:
        if not ctx.codes:
            return None
        result = await self._evaluation(ctx, validating=False)
        out: list[Discount | Note] = list(result.discounts)
        for rejection in result.rejected:
            out.append(Note(message=f"coupon {rejection.code} not applied: "
                                    f"{rejection.reason}"))
        for key in result.unknown:
            out.append(Note(message=f"code {key} is not a known coupon"))
        return out

    @hookimpl
    async def ordnung_validate_order(self, ctx: PricingContext) -> list[Violation] | None:
        if not ctx.codes:
            return None
        result = await self._evaluation(ctx, validating=True)
        violations = [Violation(code=r.violation, message=f"coupon {r.code}: {r.reason}")
                      for r in result.rejected]
        if self.settings.refuse_unknown_codes:
            violations += [Violation(code="coupon-unknown",
                                     message=f"code {key} is not a known coupon")
                           for key in result.unknown]
        return violations or None

    @hookimpl
    async def ordnung_claim_resources(self, order: Order, store: PluginStore) -> None:
        codes = sorted({a.code for a in order.adjustments
                        if a.source == self.name and a.kind == "discount" and a.code})
        if not codes:
            return
        claimed: list[list[str]] = []
        for key in codes:
            coupon = await self.lookup(key, store)
            if coupon is None:
                raise ValidationFailed([{"plugin": self.name, "code": "coupon-unknown",
                                         "message": f"coupon {key} no longer exists"}])
            if not await store.claim(USES, key, limit=coupon.max_uses):
                raise ValidationFailed([{
                    "plugin": self.name, "code": "coupon-exhausted",
                    "message": f"coupon {key} has been used up "
                               f"({coupon.max_uses} use(s)); the order was not placed"}])
            claimed.append([USES, key])
            if coupon.max_uses_per_customer is not None:
                for ident in sorted(identities(order.customer_id, order.email)):
                    counter = f"{key}|{ident}"
                    if not await store.claim(USES_BY, counter,
                                             limit=coupon.max_uses_per_customer):
                        raise ValidationFailed([{
                            "plugin": self.name, "code": "coupon-exhausted-for-customer",
                            "message": f"coupon {key} was already used as often as allowed "
                                       "by this customer; the order was not placed"}])
                    claimed.append([USES_BY, counter])
        await store.put(CLAIM, order.id, {"counters": claimed})

    @hookimpl
    async def ordnung_release_resources(self, order: Order, store: PluginStore) -> None:
        claim = await store.get(CLAIM, order.id)
        if claim is None:
            return
        for kind, key in claim.get("counters", []):
            await store.release(kind, key)
        await store.delete(CLAIM, order.id)

    # -- customer data ----------------------------------------------------------------
    async def _customer_coupons(self, customer: Customer) -> list[Coupon]:
        out = []
        for _, data, _ in await self.store.records(COUPON):
            if data.get("customer_id") == customer.id:
                out.append(msgspec.convert(data, Coupon, strict=False))
        return out

    @hookimpl
    async def ordnung_export_customer_data(self, customer: Customer) -> dict[str, Any] | None:
        coupons = await self._customer_coupons(customer)
        if not coupons:
            return None
        return {"coupons": [{**msgspec.to_builtins(c), "uses": await self.uses(c.key)}
                            for c in coupons]}

    @hookimpl
    async def ordnung_erase_customer_data(self, customer: Customer) -> None:
        """Coupons issued to the customer go; anonymous usage counters stay."""
        for coupon in await self._customer_coupons(customer):
            await self.store.delete(COUPON, coupon.key)


def coupon_codes(order: Order, plugin: str = "coupons") -> Sequence[str]:
    """The coupon codes ``plugin`` applied to ``order``."""
    return sorted({a.code for a in order.adjustments if a.source == plugin and a.code})
