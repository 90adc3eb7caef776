"""Placing orders: pricing frozen at placement, atomic stock reservation, clear errors."""

from __future__ import annotations

from typing import Any

import pytest

from ordnung.core import CartLine, Engine, PlaceOrder, hookimpl
from ordnung.core.domain.pricing import Violation
from ordnung.core.errors import (
    IdempotencyMismatch,
    InvalidInput,
    NotFound,
    OutOfStock,
    PaymentDeclined,
    PluginError,
    TaxUnavailable,
    ValidationFailed,
)
from tests.support import BERLIN, builtin_plugins, order_request, seed_shop


async def stock_snapshot(engine: Engine) -> list[tuple[str, str, int, int]]:
    return [(lv.sku, lv.location_id, lv.on_hand, lv.reserved)
            for lv in await engine.inventory.levels()]


async def test_placement_prices_on_the_server_and_reserves_stock(engine: Engine) -> None:
    order = await engine.orders.place(order_request(("SHIRT-M", 2), ("MUG", 1)))
    shirt, mug = order.lines[0], order.lines[1]
    assert (shirt.unit_price, shirt.line_total) == (2500, 5000)
    assert (mug.unit_price, mug.tax_rate) == (1200, "0.07")
    # German VAT, prices include tax: 5000 gross at 19% holds 798 tax; 1200 at 7% holds 79
    assert (shirt.tax, mug.tax) == (798, 79)
    assert order.totals.subtotal == 6200
    assert order.totals.shipping == 495
    assert order.totals.total == 6200 + 495
    assert order.number.startswith("ORD-")
    levels = {(lv.sku, lv.location_id): lv for lv in await engine.inventory.levels()}
    assert levels[("SHIRT-M", "wh1")].reserved == 2
    assert levels[("MUG", "wh1")].reserved == 1
    assert order.lines[0].allocations[0].location_id == "wh1"


async def test_out_of_stock_names_the_sku_and_changes_nothing(engine: Engine) -> None:
    before = await stock_snapshot(engine)
    with pytest.raises(OutOfStock) as err:
        await engine.orders.place(order_request(("MUG", 1), ("POSTER", 21)))
    assert err.value.shortages == [{"sku": "POSTER", "requested": 21, "available": 20}]
    assert err.value.to_dict()["type"] == "out-of-stock"
    assert await stock_snapshot(engine) == before
    assert await engine.orders.list() == []
    assert await engine.inventory.ledger_discrepancies() == []


async def test_a_line_is_split_over_locations_in_priority_order(engine: Engine) -> None:
    order = await engine.orders.place(order_request(("MUG", 70)))
    allocations = {a.location_id: a.quantity for a in order.lines[0].allocations}
    assert allocations == {"wh1": 50, "wh2": 20}
    order = await engine.orders.cancel(order.id)
    assert {lv.location_id: lv.reserved for lv in await engine.inventory.levels(["MUG"])} == {
        "wh1": 0, "wh2": 0}


async def test_unknown_sku_and_bad_quantity_are_clear_errors(engine: Engine) -> None:
    with pytest.raises(NotFound):
        await engine.orders.place(order_request(("NOPE", 1)))
    with pytest.raises(InvalidInput) as err:
        await engine.orders.place(order_request(("MUG", 0)))
    assert err.value.field == "quantity"
    with pytest.raises(InvalidInput):
        await engine.orders.place(PlaceOrder(channel="web", lines=[], email="a@b.de"))
    with pytest.raises(NotFound):
        await engine.orders.place(order_request(("MUG", 1), channel="amazon"))
    assert await engine.orders.list() == []


async def test_shipping_method_must_be_one_offered(engine: Engine) -> None:
    request = PlaceOrder(channel="web", lines=[CartLine(sku="MUG", quantity=1)],
                         shipping_address=BERLIN, shipping_method="teleport:now")
    with pytest.raises(InvalidInput) as err:
        await engine.orders.place(request)
    assert "flat_rate:standard" in err.value.detail


async def test_no_tax_answer_means_no_order(engine: Engine) -> None:
    """Fail closed: a destination without tax rates cannot be ordered to."""
    oslo = BERLIN.__class__(name="Ola", line1="Karl Johans gate 1", city="Oslo", country="NO")
    request = PlaceOrder(channel="web", lines=[CartLine(sku="MUG", quantity=1)],
                         shipping_address=oslo, shipping_method="flat_rate:standard")
    before = await stock_snapshot(engine)
    with pytest.raises(TaxUnavailable):
        await engine.orders.place(request)
    assert await stock_snapshot(engine) == before


async def test_declined_one_shot_payment_cancels_and_releases(engine: Engine) -> None:
    with pytest.raises(PaymentDeclined) as err:
        await engine.orders.place(order_request(("SHIRT-M", 3), token="tok_decline"))
    assert err.value.reason == "insufficient funds"
    order = await engine.orders.get(err.value.extra["order_id"])
    assert order.status == "cancelled"
    assert order.payments[0].status == "failed"
    level = (await engine.inventory.levels(["SHIRT-M"]))[0]
    assert level.reserved == 0
    assert (await engine.inventory.available(["SHIRT-M"]))["SHIRT-M"] == 500


async def test_idempotent_placement_replays_and_refuses_other_bodies(engine: Engine) -> None:
    request = order_request(("SHIRT-M", 1))
    first = await engine.orders.place(request, idempotency_key="k-1")
    again = await engine.orders.place(request, idempotency_key="k-1")
    assert again.id == first.id
    assert len(await engine.orders.list()) == 1
    assert (await engine.inventory.levels(["SHIRT-M"]))[0].reserved == 1
    with pytest.raises(IdempotencyMismatch):
        await engine.orders.place(order_request(("SHIRT-M", 2)), idempotency_key="k-1")
    assert len(await engine.orders.list()) == 1


async def test_gift_line_added_at_threshold_and_reserved(engine: Engine) -> None:
    order = await engine.orders.place(order_request(("POSTER", 3)))  # 120.00 >= 100.00
    gifts = [line for line in order.lines if line.gift]
    assert [(g.sku, g.unit_price, g.source) for g in gifts] == [("GIFT-TOTE", 0, "free_gift")]
    assert any(a.kind == "gift" and a.source == "free_gift" for a in order.adjustments)
    level = {lv.sku: lv for lv in await engine.inventory.levels(["GIFT-TOTE"])}["GIFT-TOTE"]
    assert level.reserved == 1


class RaisingValidator:
    """A plugin whose in-transaction hook blows up."""

    @hookimpl
    def ordnung_fulfilment_priority(self, order: Any) -> int:
        raise RuntimeError("priority service down")


async def test_a_hook_raising_during_placement_leaves_nothing_behind(make_engine: Any) -> None:
    engine = await make_engine(plugins=[*builtin_plugins(), (RaisingValidator(), "boom")])
    await seed_shop(engine)
    before = await stock_snapshot(engine)
    with pytest.raises(RuntimeError, match="priority service down"):
        await engine.orders.place(order_request(("SHIRT-M", 2)))
    assert await stock_snapshot(engine) == before
    assert await engine.orders.list() == []
    assert await engine.inventory.movements(sku="SHIRT-M") != []  # only the receipt
    assert all(m.kind == "receive" for m in await engine.inventory.movements(sku="SHIRT-M"))


class NoPostersToGermany:
    @hookimpl
    async def ordnung_validate_order(self, ctx: Any) -> list[Violation]:
        return [Violation(code="restricted", message=f"{line.sku} may not ship to "
                          f"{ctx.shipping_address.country}", line_id=line.id, sku=line.sku)
                for line in ctx.lines
                if line.sku == "POSTER" and ctx.shipping_address.country == "DE"]


async def test_validation_violations_name_line_and_rule(make_engine: Any) -> None:
    engine = await make_engine(plugins=[*builtin_plugins(), (NoPostersToGermany(), "regional")])
    await seed_shop(engine)
    with pytest.raises(ValidationFailed) as err:
        await engine.orders.place(order_request(("POSTER", 1), ("MUG", 1)))
    assert err.value.violations == [{"plugin": "regional", "code": "restricted",
                                     "message": "POSTER may not ship to DE", "line_id": "L1",
                                     "sku": "POSTER"}]
    assert await engine.orders.list() == []


class NegativeDiscount:
    @hookimpl
    def ordnung_adjustments(self) -> list[Any]:
        from ordnung.core.domain.pricing import Discount

        return [Discount(amount=-5, reason="sneaky surcharge")]


async def test_a_plugin_breaking_its_contract_is_named(make_engine: Any) -> None:
    engine = await make_engine(plugins=[*builtin_plugins(), (NegativeDiscount(), "sneaky")])
    await seed_shop(engine)
    with pytest.raises(PluginError) as err:
        await engine.orders.place(order_request(("MUG", 1)))
    assert err.value.plugin == "sneaky"


async def test_channels_are_told_the_availability_the_placement_left(engine: Engine) -> None:
    """The push after a placement uses the figure the reserving statement returned (one
    location, or split over two); either way it is what the stock tables say after."""
    channels = engine.host.pm.get_plugin("channel_log")
    stock = engine.runtime.stock
    for lines in ([("MUG", 1), ("SHIRT-M", 2)], [("MUG", 60)], [("MUG", 3), ("POSTER", 1)]):
        await engine.orders.place(order_request(*lines))
        for sku, _ in lines:
            actual = (await stock.available([sku]))[sku]
            assert channels.available["web"][sku] == actual, (lines, sku)
    assert channels.available["web"]["MUG"] == 100 - 1 - 60 - 3
