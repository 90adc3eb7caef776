"""Loyalty plugins through the Engine: free gifts, coupons, spending milestones, VIP priority."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import msgspec
import pytest

from ordnung.core import Engine, Product, Variant
from ordnung.core.domain.carts import Cart
from ordnung.core.domain.common import new_id, utcnow
from ordnung.core.domain.events import Event
from ordnung.core.domain.orders import Order
from ordnung.core.errors import PaymentDeclined, PluginError, ValidationFailed
from ordnung.plugins.loyalty.coupons import Coupon, Coupons, issue_coupon
from ordnung.plugins.loyalty.spending_milestones import SpendingMilestones
from ordnung.plugins.loyalty.vip_priority import VipPriority
from tests.support import BERLIN, builtin_plugins, order_request, seed_shop
from tests.test_plugins import make_due

# SHIRT-M 25.00, MUG 12.00, POSTER 40.00 (EUR); flat rate shipping 4.95; VAT included


def gifts(cart: Cart) -> list[tuple[str, int]]:
    assert cart.priced is not None
    return [(ln.sku, ln.quantity) for ln in cart.priced.lines if ln.gift]


def notes(priced: Any, source: str) -> list[str]:
    return [s.message for s in priced.explanation if s.source == source and s.amount is None]


def coupon_discounts(adjustments: Any) -> list[tuple[str | None, int]]:
    return [(a.code, a.amount) for a in adjustments if a.source == "coupons"]


async def add_gift_product(engine: Engine, sku: str, stock: int) -> None:
    await engine.catalog.upsert_product(Product(id=sku.lower(), name=sku, variants=[
        Variant(sku=sku, product_id=sku.lower(), name=f"{sku} (gift)", prices={"EUR": 0},
                weight_grams=20)]))
    if stock:
        await engine.inventory.adjust(sku, "wh1", stock, kind="receive")


# =========================================================================== free gift

TIERS = {"tiers": [
    {"threshold": 5000, "currency": "EUR", "sku": "GIFT-PEN", "name": "pen"},
    {"threshold": 10000, "currency": "EUR", "sku": "GIFT-TOTE", "name": "tote bag"},
]}


async def gift_shop(make_engine: Any, *, pen_stock: int = 5,
                    tiers: dict[str, Any] = TIERS) -> Engine:
    engine: Engine = await make_engine(plugin_settings={"free_gift": tiers})
    await seed_shop(engine)
    await add_gift_product(engine, "GIFT-PEN", pen_stock)
    return engine


async def test_gift_tiers_follow_the_cart_up_and_down(make_engine: Any) -> None:
    engine = await gift_shop(make_engine)
    carts = engine.carts
    cart = await carts.create(channel="web", email="erika@example.com")
    cart = await carts.set_line(cart.id, "SHIRT-M", 1)  # 25.00
    assert gifts(cart) == []
    assert notes(cart.priced, "free_gift") == ["spend EUR 25.00 more for a free pen"]

    cart = await carts.set_line(cart.id, "SHIRT-M", 2)  # 50.00: the first tier
    assert gifts(cart) == [("GIFT-PEN", 1)]
    assert notes(cart.priced, "free_gift") == ["spend EUR 50.00 more for a free tote bag"]

    cart = await carts.set_line(cart.id, "SHIRT-M", 4)  # 100.00: both tiers
    assert gifts(cart) == [("GIFT-PEN", 1), ("GIFT-TOTE", 1)]
    assert notes(cart.priced, "free_gift") == []  # nothing more to earn
    for _ in range(2):  # re-pricing again and again never adds a gift twice
        cart = await carts.add_line(cart.id, "MUG", 1)
        assert gifts(cart) == [("GIFT-PEN", 1), ("GIFT-TOTE", 1)]
    assert cart.priced is not None
    assert [a.kind for a in cart.priced.adjustments if a.source == "free_gift"] == ["gift"] * 2

    cart = await carts.set_line(cart.id, "MUG", 0)
    cart = await carts.set_line(cart.id, "SHIRT-M", 3)  # 75.00: below the second tier
    assert gifts(cart) == [("GIFT-PEN", 1)]
    cart = await carts.set_line(cart.id, "SHIRT-M", 1)  # 25.00: below both
    assert gifts(cart) == []


async def test_gift_lines_are_reserved_like_any_line(make_engine: Any) -> None:
    engine = await gift_shop(make_engine)
    before = await engine.inventory.available(["GIFT-PEN", "GIFT-TOTE"])
    cart = await engine.carts.create(channel="web", email="erika@example.com")
    cart = await engine.carts.set_line(cart.id, "SHIRT-M", 4)
    cart = await engine.carts.set_addresses(cart.id, shipping=BERLIN)
    cart = await engine.carts.set_shipping_method(cart.id, "flat_rate:standard")
    order = await engine.carts.place(cart.id)
    gift_lines = [ln for ln in order.lines if ln.gift]
    assert [(ln.sku, ln.unit_price, ln.source) for ln in gift_lines] == [
        ("GIFT-PEN", 0, "free_gift"), ("GIFT-TOTE", 0, "free_gift")]
    for line in gift_lines:
        assert sum(a.quantity for a in line.allocations) == 1
    after = await engine.inventory.available(["GIFT-PEN", "GIFT-TOTE"])
    assert after == {sku: n - 1 for sku, n in before.items()}
    await engine.orders.cancel(order.id)
    assert await engine.inventory.available(["GIFT-PEN", "GIFT-TOTE"]) == before


async def test_several_gifts_at_one_tier(make_engine: Any) -> None:
    engine = await gift_shop(make_engine, tiers={"tiers": [
        {"threshold": 5000, "currency": "EUR", "sku": "GIFT-PEN", "name": "pen"},
        {"threshold": 5000, "currency": "EUR", "sku": "GIFT-TOTE", "quantity": 2,
         "name": "two tote bags"},
        {"threshold": 5000, "currency": "USD", "sku": "GIFT-TOTE", "name": "not in EUR"},
    ]})
    cart = await engine.carts.create(channel="web")
    cart = await engine.carts.set_line(cart.id, "POSTER", 2)
    assert gifts(cart) == [("GIFT-PEN", 1), ("GIFT-TOTE", 2)]


async def test_an_out_of_stock_gift_is_skipped_with_a_reason(make_engine: Any) -> None:
    engine = await gift_shop(make_engine, pen_stock=0)
    cart = await engine.carts.create(channel="web", email="erika@example.com")
    cart = await engine.carts.set_line(cart.id, "SHIRT-M", 4)
    assert gifts(cart) == [("GIFT-TOTE", 1)]  # the pen is out of stock, the tote is not
    assert cart.priced is not None
    skipped = [m for m in notes(cart.priced, "free_gift") if "skipped" in m]
    assert skipped == ["gift GIFT-PEN skipped: out of stock (free pen for orders from EUR 50.00)"]
    order = await engine.orders.place(order_request(("SHIRT-M", 4)))
    assert [ln.sku for ln in order.lines if ln.gift] == ["GIFT-TOTE"]
    assert any("GIFT-PEN skipped" in s.message for s in order.explanation)


# =========================================================================== coupons

PAST = (utcnow() - timedelta(days=1)).isoformat()
FUTURE = (utcnow() + timedelta(days=30)).isoformat()
COUPONS: dict[str, Any] = {"coupons": [
    {"code": "SAVE10", "percent": 10},
    {"code": "FIVER", "amount": 500, "currency": "EUR", "stackable": True},
    {"code": "STACK5", "percent": 5, "stackable": True},
    {"code": "STACK10", "percent": 10, "stackable": True},
    {"code": "HUGE", "amount": 1_000_000, "currency": "EUR"},
    {"code": "MIN50", "percent": 20, "currency": "EUR", "min_subtotal": 5000},
    {"code": "OLD", "percent": 10, "expires_at": PAST},
    {"code": "SOON", "percent": 10, "starts_at": FUTURE},
    {"code": "LIMITED", "percent": 10, "max_uses": 5},
    {"code": "ONCE", "amount": 300, "currency": "EUR", "max_uses_per_customer": 1},
    {"code": "DOLLARS", "amount": 500, "currency": "USD"},
]}


async def coupon_shop(make_engine: Any, settings: dict[str, Any] = COUPONS) -> Engine:
    engine: Engine = await make_engine(plugins=[*builtin_plugins(),
                                                (Coupons, "coupons", settings)])
    await seed_shop(engine)
    return engine


async def priced(engine: Engine, *codes: str, lines: tuple[tuple[str, int], ...] = (
        ("SHIRT-M", 2),), customer_id: str | None = None,
                 email: str = "erika@example.com") -> Cart:
    cart = await engine.carts.create(channel="web", email=email, customer_id=customer_id)
    for sku, quantity in lines:
        cart = await engine.carts.set_line(cart.id, sku, quantity)
    for code in codes:
        cart = await engine.carts.apply_code(cart.id, code)
    assert cart.priced is not None
    return cart


def with_codes(*codes: str, lines: tuple[tuple[str, int], ...] = (("SHIRT-M", 2),),
               **kw: Any) -> Any:
    return msgspec.structs.replace(order_request(*lines, **kw), codes=list(codes))


def violation_codes(exc: pytest.ExceptionInfo[ValidationFailed]) -> list[str]:
    return [v["code"] for v in exc.value.violations]


async def test_percentage_and_fixed_coupons(make_engine: Any) -> None:
    engine = await coupon_shop(make_engine)
    cart = await priced(engine, "save10")  # codes are case-insensitive
    assert coupon_discounts(cart.priced.adjustments) == [("SAVE10", -500)]
    assert cart.priced.totals.discounts == -500
    assert "coupon SAVE10: 10% off" in [s.message for s in cart.priced.explanation]
    cart = await priced(engine, "FIVER")
    assert coupon_discounts(cart.priced.adjustments) == [("FIVER", -500)]
    order = await engine.orders.place(with_codes("Save10"))
    assert coupon_discounts(order.adjustments) == [("SAVE10", -500)]
    assert order.totals.total == 5000 - 500 + 495
    assert await engine.plugin_store("coupons").count("uses", "SAVE10") == 1


async def test_stacking_percentages_first_then_fixed(make_engine: Any) -> None:
    engine = await coupon_shop(make_engine)
    # 5 % of 50.00 = 2.50, then 5.00 fixed, whichever order the codes came in
    for codes in (("STACK5", "FIVER"), ("FIVER", "STACK5")):
        cart = await priced(engine, *codes)
        assert cart.priced.totals.discounts == -750, codes
        assert sorted(coupon_discounts(cart.priced.adjustments)) == [
            ("FIVER", -500), ("STACK5", -250)]
    # percentages compound in code order: 5 % of 50.00, then 10 % of 47.50
    cart = await priced(engine, "STACK5", "STACK10")
    assert coupon_discounts(cart.priced.adjustments) == [("STACK5", -250), ("STACK10", -475)]
    order = await engine.orders.place(with_codes("STACK5", "STACK10", "FIVER"))
    assert order.totals.discounts == -250 - 475 - 500
    store = engine.plugin_store("coupons")
    assert [await store.count("uses", c) for c in ("STACK5", "STACK10", "FIVER")] == [1, 1, 1]


async def test_a_coupon_that_is_not_stackable_stays_alone(make_engine: Any) -> None:
    engine = await coupon_shop(make_engine)
    cart = await priced(engine, "SAVE10", "FIVER")
    assert coupon_discounts(cart.priced.adjustments) == [("SAVE10", -500)]
    assert notes(cart.priced, "coupons") == [
        "coupon FIVER not applied: cannot be combined with SAVE10"]
    cart = await priced(engine, "FIVER", "SAVE10")  # the first applicable one wins
    assert coupon_discounts(cart.priced.adjustments) == [("FIVER", -500)]
    assert notes(cart.priced, "coupons") == [
        "coupon SAVE10 not applied: cannot be combined with FIVER"]
    with pytest.raises(ValidationFailed) as refused:
        await engine.orders.place(with_codes("SAVE10", "FIVER"))
    assert violation_codes(refused) == ["coupon-not-combinable"]
    assert await engine.orders.list() == []


async def test_a_coupon_never_takes_the_total_below_zero(make_engine: Any) -> None:
    engine = await coupon_shop(make_engine)
    cart = await priced(engine, "HUGE", lines=(("SHIRT-M", 1),))
    totals = cart.priced.totals
    assert totals.subtotal == 2500 and totals.discounts == -2500  # capped by the core
    assert totals.total == 0 and totals.tax == 0
    assert any("capped" in s.message for s in cart.priced.explanation if s.source == "core")
    order = await engine.orders.place(with_codes("HUGE", lines=(("SHIRT-M", 1),)))
    assert order.totals.subtotal + order.totals.discounts == 0
    assert order.totals.total == 495  # only the shipping is left to pay
    assert all(line.line_total + line.discount == 0 for line in order.lines)


@pytest.mark.parametrize(("code", "lines", "why", "violation"), [
    ("NOPE", (("SHIRT-M", 2),), "code NOPE is not a known coupon", "coupon-unknown"),
    ("OLD", (("SHIRT-M", 2),), "coupon OLD not applied: expired on ", "coupon-expired"),
    ("SOON", (("SHIRT-M", 2),), "coupon SOON not applied: valid from ",
     "coupon-not-yet-valid"),
    ("MIN50", (("SHIRT-M", 1),), "coupon MIN50 not applied: needs a subtotal of EUR 50.00 "
                                 "(spend EUR 25.00 more)", "coupon-minimum"),
    ("DOLLARS", (("SHIRT-M", 2),), "coupon DOLLARS not applied: only valid for orders in USD",
     "coupon-currency"),
])
async def test_an_unusable_code_says_why_and_refuses_the_order(
        make_engine: Any, code: str, lines: tuple[tuple[str, int], ...], why: str,
        violation: str) -> None:
    engine = await coupon_shop(make_engine)
    cart = await priced(engine, code, lines=lines)
    assert coupon_discounts(cart.priced.adjustments) == []
    assert cart.priced.totals.discounts == 0
    [note] = notes(cart.priced, "coupons")
    assert note.startswith(why), note
    with pytest.raises(ValidationFailed) as refused:
        await engine.orders.place(with_codes(code, lines=lines))
    assert violation_codes(refused) == [violation]
    assert await engine.orders.list() == []


async def test_unknown_codes_may_be_left_to_other_plugins(make_engine: Any) -> None:
    engine = await coupon_shop(make_engine, {**COUPONS, "refuse_unknown_codes": False})
    order = await engine.orders.place(with_codes("SOMEONE-ELSES", "SAVE10"))
    assert coupon_discounts(order.adjustments) == [("SAVE10", -500)]
    assert "code SOMEONE-ELSES is not a known coupon" in [s.message for s in order.explanation]


async def test_the_minimum_subtotal_is_reached(make_engine: Any) -> None:
    engine = await coupon_shop(make_engine)
    cart = await priced(engine, "MIN50", lines=(("SHIRT-M", 2),))
    assert coupon_discounts(cart.priced.adjustments) == [("MIN50", -1000)]


async def test_coupons_issued_at_run_time(make_engine: Any) -> None:
    engine = await coupon_shop(make_engine)
    store = engine.plugin_store("coupons")
    assert await issue_coupon(store, Coupon(code="Runtime7", amount=700, currency="EUR"))
    assert not await issue_coupon(store, Coupon(code="RUNTIME7", percent=50))  # first wins
    assert (await store.get("coupon", "RUNTIME7") or {})["amount"] == 700
    cart = await priced(engine, "runtime7")
    assert coupon_discounts(cart.priced.adjustments) == [("RUNTIME7", -700)]

    anna = await engine.customers.create(email="anna@example.com")
    ben = await engine.customers.create(email="ben@example.com")
    assert await issue_coupon(store, Coupon(code="ANNA-ONLY", percent=20, customer_id=anna.id,
                                            max_uses=1))
    cart = await priced(engine, "ANNA-ONLY", customer_id=ben.id, email=ben.email)
    assert notes(cart.priced, "coupons") == [
        "coupon ANNA-ONLY not applied: issued to another customer"]
    with pytest.raises(ValidationFailed):
        await engine.orders.place(with_codes("ANNA-ONLY", customer_id=ben.id,
                                             email=ben.email))
    order = await engine.orders.place(with_codes("ANNA-ONLY", customer_id=anna.id,
                                                 email=anna.email))
    assert coupon_discounts(order.adjustments) == [("ANNA-ONLY", -1000)]
    export = await engine.customers.export(anna.id)
    assert [c["code"] for c in export["plugins"]["coupons"]["coupons"]] == ["ANNA-ONLY"]


async def test_a_used_up_coupon_is_explained_and_refused(make_engine: Any) -> None:
    engine = await coupon_shop(make_engine)
    placed = [await engine.orders.place(with_codes("LIMITED")) for _ in range(5)]
    assert all(coupon_discounts(o.adjustments) == [("LIMITED", -500)] for o in placed)
    cart = await priced(engine, "LIMITED")
    assert coupon_discounts(cart.priced.adjustments) == []
    assert notes(cart.priced, "coupons") == ["coupon LIMITED not applied: has been used up"]
    with pytest.raises(ValidationFailed) as refused:
        await engine.orders.place(with_codes("LIMITED"))
    assert violation_codes(refused) == ["coupon-exhausted"]
    assert "LIMITED" in refused.value.detail
    # cancelling an order gives its use back
    await engine.orders.cancel(placed[0].id)
    assert await engine.plugin_store("coupons").count("uses", "LIMITED") == 4
    order = await engine.orders.place(with_codes("LIMITED"))
    assert coupon_discounts(order.adjustments) == [("LIMITED", -500)]


async def test_a_declined_payment_gives_the_use_back(make_engine: Any) -> None:
    engine = await coupon_shop(make_engine)
    with pytest.raises(PaymentDeclined):
        await engine.orders.place(with_codes("LIMITED", token="tok_decline"))
    assert await engine.plugin_store("coupons").count("uses", "LIMITED") == 0


async def test_the_limit_per_customer_counts_the_customer_and_the_email(
        make_engine: Any) -> None:
    engine = await coupon_shop(make_engine)
    anna = await engine.customers.create(email="anna@example.com")
    first = await engine.orders.place(with_codes("ONCE", customer_id=anna.id,
                                                 email=anna.email))
    assert coupon_discounts(first.adjustments) == [("ONCE", -300)]
    # the same e-mail as a guest, and the same customer: both count as anna
    for kw in ({"email": anna.email}, {"customer_id": anna.id, "email": "other@example.com"}):
        cart = await priced(engine, "ONCE", **kw)
        assert notes(cart.priced, "coupons") == [
            "coupon ONCE not applied: already used as often as allowed by this customer"]
        with pytest.raises(ValidationFailed) as refused:
            await engine.orders.place(with_codes("ONCE", **kw))
        assert violation_codes(refused) == ["coupon-exhausted-for-customer"]
    other = await engine.orders.place(with_codes("ONCE", email="ben@example.com"))
    assert coupon_discounts(other.adjustments) == [("ONCE", -300)]
    await engine.orders.cancel(first.id)
    again = await engine.orders.place(with_codes("ONCE", email=anna.email))
    assert coupon_discounts(again.adjustments) == [("ONCE", -300)]


async def test_twenty_concurrent_placements_on_five_uses(make_engine: Any) -> None:
    """20 placements at once on a coupon with 5 uses left: 5 orders, 15 refusals."""
    settings = {"coupons": [{"code": "FLASH", "percent": 10, "max_uses": 5}]}
    first = await coupon_shop(make_engine, settings)
    before = (await first.inventory.available(["SHIRT-M"]))["SHIRT-M"]

    async def place(engine: Engine, n: int) -> Order | ValidationFailed:
        try:
            return await engine.orders.place(with_codes("FLASH", lines=(("SHIRT-M", 1),),
                                                        email=f"buyer{n}@example.com"))
        except ValidationFailed as exc:
            return exc

    results = await asyncio.wait_for(asyncio.gather(
        *(place(first, n) for n in range(20))), timeout=120)
    orders = [r for r in results if isinstance(r, Order)]
    refused = [r for r in results if isinstance(r, ValidationFailed)]
    assert len(orders) == 5 and len(refused) == 15
    assert all(coupon_discounts(o.adjustments) == [("FLASH", -250)] for o in orders)
    assert {v["code"] for r in refused for v in r.violations} == {"coupon-exhausted"}
    assert await first.plugin_store("coupons").count("uses", "FLASH") == 5
    assert sorted(o.id for o in await first.orders.list()) == sorted(o.id for o in orders)
    assert (await first.inventory.available(["SHIRT-M"]))["SHIRT-M"] == before - 5


@pytest.mark.parametrize(("coupon", "message"), [
    ({"code": "BOTH", "percent": 10, "amount": 100, "currency": "EUR"}, "exactly one"),
    ({"code": "NOCUR", "amount": 100}, "currency"),
    ({"code": "NAIVE", "percent": 10, "expires_at": "2030-01-01T00:00:00"}, "timezone"),
])
async def test_bad_coupon_settings_stop_the_start(make_engine: Any, coupon: dict[str, Any],
                                                  message: str) -> None:
    with pytest.raises(PluginError, match=message):
        await make_engine(plugins=[(Coupons, "coupons", {"coupons": [coupon]})])
    with pytest.raises(PluginError, match="configured twice"):
        await make_engine(plugins=[(Coupons, "coupons", {"coupons": [
            {"code": "A", "percent": 1}, {"code": "a", "percent": 2}]})])


# =========================================================================== milestones

MILESTONES = {"milestones": [
    {"threshold": 10_000, "currency": "EUR", "amount": 1000, "name": "EUR 100 club"},
    {"threshold": 20_000, "currency": "EUR", "percent": 15},
]}


async def milestone_shop(make_engine: Any) -> tuple[Engine, SpendingMilestones]:
    plugin = SpendingMilestones(msgspec.convert(MILESTONES, SpendingMilestones.Settings))
    engine: Engine = await make_engine(plugins=[
        *builtin_plugins(), (Coupons, "coupons", {}), (plugin, "spending_milestones")])
    await seed_shop(engine)
    return engine, plugin


async def paid(engine: Engine, customer_id: str, *lines: tuple[str, int]) -> Order:
    customer = await engine.customers.get(customer_id)
    order = await engine.orders.place(order_request(*lines, customer_id=customer_id,
                                                    email=customer.email))
    return await engine.payments.capture(order.id)


async def milestone_notes(engine: Engine, order_id: str) -> list[str]:
    return [str(e.data["note"]) for e in await engine.orders.timeline(order_id)
            if e.kind == "order.note"]


async def test_a_milestone_issues_one_coupon_for_a_future_order(make_engine: Any) -> None:
    engine, plugin = await milestone_shop(make_engine)
    anna = await engine.customers.create(email="anna@example.com")
    first = await paid(engine, anna.id, ("SHIRT-M", 2))  # 54.95 spent
    assert await plugin.issued(anna.id) == []
    assert await milestone_notes(engine, first.id) == []

    second = await paid(engine, anna.id, ("POSTER", 2))  # 84.95 more: 139.90
    assert (await engine.customers.get(anna.id)).lifetime_spend == {"EUR": 13_990}
    [issued] = await plugin.issued(anna.id)
    assert issued["milestone"] == "EUR:10000" and issued["order_id"] == second.id
    code = issued["code"]
    assert code.startswith("THANKS-")
    [note] = await milestone_notes(engine, second.id)
    assert note == (f"lifetime spend reached EUR 100 club: coupon {code} (EUR 10.00 off) "
                    "issued for a future order")
    stored = await engine.plugin_store("coupons").get("coupon", code)
    assert stored is not None
    assert (stored["customer_id"], stored["max_uses"], stored["amount"]) == (anna.id, 1, 1000)

    third = await paid(engine, anna.id, ("SHIRT-M", 1))  # 169.85: no new milestone
    assert len(await plugin.issued(anna.id)) == 1
    assert await milestone_notes(engine, third.id) == []

    # the coupon is anna's, for one future order
    ben = await engine.customers.create(email="ben@example.com")
    with pytest.raises(ValidationFailed):
        await engine.orders.place(with_codes(code, customer_id=ben.id, email=ben.email))
    order = await engine.orders.place(with_codes(code, customer_id=anna.id, email=anna.email))
    assert coupon_discounts(order.adjustments) == [(code, -1000)]
    with pytest.raises(ValidationFailed) as refused:
        await engine.orders.place(with_codes(code, customer_id=anna.id, email=anna.email))
    assert violation_codes(refused) == ["coupon-exhausted"]


async def test_each_milestone_is_rewarded_once_per_customer(make_engine: Any) -> None:
    engine, plugin = await milestone_shop(make_engine)
    anna = await engine.customers.create(email="anna@example.com")
    order = await paid(engine, anna.id, ("POSTER", 5))  # 204.95: both milestones at once
    assert sorted(m["milestone"] for m in await plugin.issued(anna.id)) == [
        "EUR:10000", "EUR:20000"]
    assert len(await milestone_notes(engine, order.id)) == 2
    codes = sorted(m["code"] for m in await plugin.issued(anna.id))

    # the reaction delivered again (at least once) and concurrently changes nothing
    [captured] = [e for e in await engine.orders.timeline(order.id)
                  if e.kind == "payment.captured"]
    await asyncio.gather(*(plugin.ordnung_after_transition(captured, order) for _ in range(4)))
    assert sorted(m["code"] for m in await plugin.issued(anna.id)) == codes
    assert len(await milestone_notes(engine, order.id)) == 2
    coupons = [k for k, _, _ in await engine.plugin_store("coupons").records("coupon")]
    assert sorted(coupons) == codes

    # a refund lowers the spend; the milestones stay rewarded, and are not rewarded again
    await engine.payments.refund(order.id, amount=15_000)
    await paid(engine, anna.id, ("POSTER", 1))
    assert len(await plugin.issued(anna.id)) == 2


async def test_a_failed_note_is_written_by_the_retry(make_engine: Any) -> None:
    engine, plugin = await milestone_shop(make_engine)
    anna = await engine.customers.create(email="anna@example.com")
    order = await engine.orders.place(order_request(("POSTER", 3), customer_id=anna.id,
                                                    email=anna.email))
    real_add_note = engine.orders.add_note
    calls = 0

    async def flaky(order_id: str, note: str, *, actor: str = "system") -> Order:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("database went away")
        return await real_add_note(order_id, note, actor=actor)

    engine.orders.add_note = flaky  # type: ignore[method-assign]
    await engine.payments.capture(order.id)
    assert await milestone_notes(engine, order.id) == []
    assert len(await plugin.issued(anna.id)) == 1  # the coupon is there already
    failures = await engine.runtime.journal.open_failures()
    assert [(f["plugin"], f["hook"]) for f in failures] == [
        ("spending_milestones", "ordnung_after_transition")]
    await make_due(engine)
    assert (await engine.run_maintenance())["retried_ok"] == 1
    assert len(await milestone_notes(engine, order.id)) == 1
    assert len(await plugin.issued(anna.id)) == 1


async def test_guests_and_other_currencies_earn_nothing(make_engine: Any) -> None:
    engine, plugin = await milestone_shop(make_engine)
    order = await engine.orders.place(order_request(("POSTER", 5)))
    await engine.payments.capture(order.id)
    assert await engine.plugin_store("spending_milestones").records("issued") == []
    event = Event(id=new_id("evt"), kind="payment.captured", machine="payment",
                  to_state="captured", order_id=order.id, at=utcnow())
    await plugin.ordnung_after_transition(event, msgspec.structs.replace(order, currency="USD",
                                                                         customer_id=None))
    assert await engine.plugin_store("spending_milestones").records("issued") == []


async def test_milestones_need_the_coupons_plugin(make_engine: Any) -> None:
    with pytest.raises(PluginError, match="needs the 'coupons' plugin"):
        await make_engine(plugins=[*builtin_plugins(),
                                   (SpendingMilestones, "spending_milestones", MILESTONES)])


# =========================================================================== VIP priority


async def test_vip_high_value_and_frequent_customers_come_first(make_engine: Any) -> None:
    engine: Engine = await make_engine(plugins=[*builtin_plugins(), (VipPriority, "vip_priority", {
        "vip_tags": ["VIP"], "high_value": {"EUR": 20_000}, "frequent_after": 2})])
    await seed_shop(engine)
    vip = await engine.customers.create(email="vip@example.com", tags=["vip"])
    regular = await engine.customers.create(email="reg@example.com")

    async def place(*lines: tuple[str, int], customer: Any = None) -> Order:
        return await engine.orders.place(order_request(
            *lines, customer_id=customer.id if customer else None,
            email=customer.email if customer else "guest@example.com"))

    guest = await place(("SHIRT-M", 1))
    earlier = [await place(("MUG", 1), customer=regular) for _ in range(3)]
    frequent = await place(("MUG", 1), customer=regular)  # 3 earlier orders > 2
    big = await place(("POSTER", 5))  # 204.95 >= 200.00
    vip_order = await place(("SHIRT-M", 1), customer=vip)
    vip_big = await place(("POSTER", 5), customer=vip)
    assert [o.priority for o in (guest, *earlier, frequent, big, vip_order, vip_big)] == [
        0, 0, 0, 0, 20, 50, 100, 150]
    queue = [o.id for o in await engine.fulfilment.queue()]
    assert queue == [vip_big.id, vip_order.id, big.id, frequent.id, guest.id,
                     *(o.id for o in earlier)]
