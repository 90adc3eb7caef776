"""SPEC field scenarios through the Engine (the REST versions come with the API)."""

from __future__ import annotations

from typing import Any

from ordnung.core import Engine, ReturnLineInput
from ordnung.plugins.channels.channel_log import ChannelLog
from tests.support import order_request, paid_order, ship_all


def channel_log(engine: Engine) -> ChannelLog:
    plugin = engine.host.pm.get_plugin("channel_log")
    assert isinstance(plugin, ChannelLog)
    return plugin


async def test_scenario_1_every_channel_is_told_the_one_availability(engine: Engine) -> None:
    for _ in range(6):
        await engine.orders.place(order_request(("SHIRT-M", 1), channel="etsy"))
    for _ in range(2):
        await engine.orders.place(order_request(("SHIRT-M", 5), channel="ebay"))
    assert (await engine.inventory.available(["SHIRT-M"])) == {"SHIRT-M": 484}
    told = channel_log(engine).available
    assert {channel: skus["SHIRT-M"] for channel, skus in told.items()} == {
        "web": 484, "etsy": 484, "ebay": 484, "pos": 484}


async def test_scenario_4_the_order_knows_its_expected_delivery(engine: Engine) -> None:
    order = await paid_order(engine, ("MUG", 1))
    assert order.shipping is not None and order.shipping.expected_delivery is not None
    assert order.shipping.expected_delivery > order.created_at.date()


async def test_scenario_7_returned_items_become_available_again(engine: Engine) -> None:
    order = await ship_all(engine, await paid_order(engine, ("POSTER", 2)))
    assert (await engine.inventory.available(["POSTER"]))["POSTER"] == 18
    order, rma = await engine.returns.request(
        order.id, [ReturnLineInput(line_id="L1", quantity=2)], reason="damaged corner")
    assert rma.status == "requested"
    order = await engine.returns.approve(order.id, rma.id)
    order = await engine.returns.receive(order.id, rma.id)
    assert order.status == "returned"
    assert (await engine.inventory.available(["POSTER"]))["POSTER"] == 20
    order = await engine.returns.refund(order.id, rma.id)
    assert order.return_request(rma.id).status == "refunded"
    assert order.totals.refunded == 8000  # both posters, tax included
    statuses = [(e.kind, e.actor) for e in await engine.orders.timeline(order.id)
                if e.machine == "return"]
    assert [k for k, _ in statuses] == ["return.requested", "return.approved",
                                        "return.received", "return.refunded"]


async def test_a_rejected_return_restocks_nothing(engine: Engine) -> None:
    order = await ship_all(engine, await paid_order(engine, ("MUG", 1)))
    order, rma = await engine.returns.request(order.id,
                                              [ReturnLineInput(line_id="L1", quantity=1)])
    order = await engine.returns.reject(order.id, rma.id, reason="used")
    assert order.return_request(rma.id).status == "rejected"
    assert order.status == "fulfilled"
    levels: dict[str, Any] = {lv.location_id: lv for lv in await engine.inventory.levels(["MUG"])}
    assert levels["wh1"].on_hand == 49
