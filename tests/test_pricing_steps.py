"""The pricing steps: what each hook sees of one pricing, and coupons evaluated once."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from ordnung.core import Engine, hookimpl
from ordnung.core.contexts import PricingContext
from ordnung.core.domain.pricing import Violation
from ordnung.core.errors import ValidationFailed
from ordnung.core.pricing import STEPS
from ordnung.plugins.loyalty.coupons import Coupons, Evaluation
from tests.support import builtin_plugins, order_request, seed_shop


class Spy:
    """Records the context every pricing hook got (answers nothing)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, PricingContext]] = []

    @hookimpl
    def ordnung_adjustments(self, ctx: PricingContext) -> None:
        self.seen.append(("adjustments", ctx))

    @hookimpl
    def ordnung_shipping_quotes(self, ctx: PricingContext) -> None:
        self.seen.append(("shipping", ctx))

    @hookimpl
    def ordnung_tax(self, ctx: PricingContext) -> None:
        self.seen.append(("tax", ctx))

    @hookimpl
    def ordnung_validate_order(self, ctx: PricingContext) -> list[Violation] | None:
        self.seen.append(("validate", ctx))
        return None


def test_the_steps_run_in_the_documented_order() -> None:
    assert [step.__name__ for step in STEPS] == [
        "price_lines", "apply_promotions", "add_gifts", "quote_shipping", "apply_tax",
        "sum_totals"]


async def test_each_hook_sees_the_lines_as_the_steps_before_it_left_them(
        make_engine: Any) -> None:
    spy = Spy()
    engine: Engine = await make_engine(plugins=[*builtin_plugins(), (spy, "spy")])  # asked first
    await seed_shop(engine)
    order = await engine.orders.place(order_request(("SHIRT-M", 4)))  # earns the gift
    seen = dict(spy.seen)
    assert [hook for hook, _ in spy.seen] == ["adjustments", "shipping", "tax", "validate"]
    # promotions see the customer's lines only; shipping and tax one snapshot with the gift
    assert [line.sku for line in seen["adjustments"].lines] == ["SHIRT-M"]
    assert seen["shipping"] is seen["tax"]
    assert [line.sku for line in seen["shipping"].lines] == ["SHIRT-M", "GIFT-TOTE"]
    assert seen["shipping"].weight_grams == 4 * 200 + 80
    assert all(line.tax == 0 for line in seen["tax"].lines)
    # validation sees the priced lines, taxed, as the order has them
    assert [line.tax for line in seen["validate"].lines] == [line.tax for line in order.lines]
    assert seen["validate"].lines[0].tax > 0
    # the request's fields are the same objects throughout
    assert len({id(ctx.codes) for _, ctx in spy.seen}) == 1
    assert msgspec.structs.replace(seen["validate"], lines=[], weight_grams=0) == \
        msgspec.structs.replace(seen["adjustments"], lines=[], weight_grams=0)


class CountingCoupons(Coupons):
    evaluations = 0

    async def evaluate(self, ctx: PricingContext, store: Any = None) -> Evaluation:
        type(self).evaluations += 1
        return await super().evaluate(ctx, store)


async def test_a_placement_evaluates_its_coupon_codes_once(make_engine: Any) -> None:
    CountingCoupons.evaluations = 0
    engine: Engine = await make_engine(plugins=[
        *builtin_plugins(), (CountingCoupons, "coupons", {"coupons": [
            {"code": "LIMITED", "percent": 10, "max_uses": 1}]})])
    await seed_shop(engine)
    request = msgspec.structs.replace(order_request(("SHIRT-M", 2)), codes=["limited"])
    order = await engine.orders.place(request)
    assert [a.code for a in order.adjustments] == ["LIMITED"]
    assert CountingCoupons.evaluations == 1
    # the next placement evaluates afresh: the code is used up now, and validation says so
    with pytest.raises(ValidationFailed) as refused:
        await engine.orders.place(request)
    assert [v["code"] for v in refused.value.violations] == ["coupon-exhausted"]
    assert CountingCoupons.evaluations == 2
