"""A gift a worker saw plenty of a moment ago is priced in without reading its stock;
the placement's reservation has the last word.

Every basket that earns the free gift used to read the gift's stock (one statement on
every cart step and every placement). A worker now keeps the availability its
reservations and reads return (``ordnung.core.persistence.stock_hints``) and trusts a
recent figure that leaves plenty. When the figure was wrong (the gift was counted out
on another worker meanwhile), the reservation finds no gift: the placement is rolled
back and priced again with the stock read, so the order goes without the gift and
without its weight in the shipping price. Two apps on one database stand for two
workers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from ordnung.core.persistence import stock_hints
from ordnung.core.persistence.stock_hints import StockHints
from ordnung.plugins.carriers.weight_bands import WeightBands
from tests.api_support import Api, api_client, expect, order_body
from tests.support import builtin_plugins

GIFT = "GIFT-TOTE"  # 80 g, earned from EUR 100.00
#: four shirts and a poster: EUR 140.00 and 900 g; with the tote 980 g, a dearer band
EARNS_GIFT = (("SHIRT-M", 4), ("POSTER", 1))
LIGHT, HEAVY = 500, 900
BANDS: dict[str, Any] = {"zones": [{"name": "home", "countries": ["DE"], "bands": [
    {"up_to_grams": 950, "prices": {"EUR": LIGHT}},
    {"up_to_grams": 5_000, "prices": {"EUR": HEAVY}}]}]}
PLUGINS = [*builtin_plugins(), (WeightBands, "weight_bands", BANDS)]


def parcel(*lines: tuple[str, int]) -> dict[str, Any]:
    return order_body(*lines, shipping_method="weight_bands:parcel")


#: EUR 90.00: earns no gift; on the levels the gift's placement teaches the worker to be
#: their SKU's only ones, so both are placed alike (``sole_levels``)
PLAIN = parcel(("SHIRT-M", 2), ("POSTER", 1))


def gift_lines(order: dict[str, Any]) -> list[dict[str, Any]]:
    return [line for line in order["lines"] if line["gift"]]


@asynccontextmanager
async def two_workers(database_url: str) -> AsyncIterator[tuple[Api, Api]]:
    async with api_client(database_url, plugins=PLUGINS) as first, \
            api_client(database_url, plugins=PLUGINS, seed=False) as second:
        yield first, second


async def placed(api: Api, body: dict[str, Any], shop: dict[str, str]
                 ) -> tuple[int, dict[str, Any]]:
    """The statements of one placement through the app (its events' delivered marks,
    written later with other orders', left out), and the order."""
    await api.engine.runtime.journal.flush_marks()
    with api.engine.db.tally() as spent:
        order = expect(await api.client.post("/orders", json=body, headers=shop), 201)
    return spent.statements, order


async def receive(api: Api, sku: str, delta: int) -> None:
    expect(await api.client.post("/inventory/adjustments", json={
        "sku": sku, "location_id": "wh1", "delta": delta, "kind": "receive"},
        headers=api.admin), 201)


async def test_a_gift_in_plenty_costs_a_placement_and_a_cart_step_no_stock_read(
        database_url: str) -> None:
    async with api_client(database_url, plugins=PLUGINS) as api:
        await api.engine.db.run("UPDATE stock_levels SET on_hand = 1000")
        shop = await api.storefront("web")
        expect(await api.client.post("/orders", json=parcel(*EARNS_GIFT), headers=shop), 201)
        without_gift, _ = await placed(api, PLAIN, shop)
        with_gift, order = await placed(api, parcel(*EARNS_GIFT), shop)
        assert [line["sku"] for line in gift_lines(order)] == [GIFT]
        assert order["shipping"]["price"] == HEAVY  # the tote's weight is shipped
        assert with_gift == without_gift

        cart = await api.new_cart(shop)
        holding = api.holding(shop, cart["id"])
        lines = f"/carts/{cart['id']}/lines"
        expect(await api.client.post(lines, json={"sku": "SHIRT-M", "quantity": 4},
                                     headers=holding), 200)
        with api.engine.db.tally() as step:
            priced = expect(await api.client.post(lines, json={"sku": "POSTER", "quantity": 1},
                                                  headers=holding), 200)
        assert GIFT in [line["sku"] for line in priced["priced"]["lines"]]
        assert step.statements == 1  # the save of the kept cart


async def test_a_scarce_gift_is_read_on_every_placement(database_url: str) -> None:
    async with api_client(database_url, plugins=PLUGINS) as api:  # ten totes in stock
        shop = await api.storefront("web")
        expect(await api.client.post("/orders", json=parcel(*EARNS_GIFT), headers=shop), 201)
        without_gift, _ = await placed(api, PLAIN, shop)
        with_gift, order = await placed(api, parcel(*EARNS_GIFT), shop)
        assert [line["sku"] for line in gift_lines(order)] == [GIFT]
        assert with_gift == without_gift + 1


@pytest.mark.parametrize("how", ["count", "adjustment"])
async def test_a_gift_gone_on_another_worker_is_priced_out_of_the_order(
        database_url: str, how: str) -> None:
    """The first worker last saw 199 totes available; the second counts them to none, or writes
    them all off. The first worker's next order that earns the tote is placed without
    it, priced without it (the lighter band), and nothing of the tote is held."""
    async with two_workers(database_url) as (first, second):
        await receive(first, GIFT, 190)  # 200 totes
        shop = await first.storefront("web")
        placed = expect(await first.client.post("/orders", json=parcel(*EARNS_GIFT),
                                                headers=shop), 201)
        assert gift_lines(placed) and placed["shipping"]["price"] == HEAVY
        if how == "count":
            expect(await second.client.post("/inventory/counts", json={
                "sku": GIFT, "location_id": "wh1", "counted": 1}, headers=second.admin), 201)
        else:
            expect(await second.client.post("/inventory/adjustments", json={
                "sku": GIFT, "location_id": "wh1", "delta": -199, "reason": "damaged"},
                headers=second.admin), 201)
        levels = await second.levels()
        orders, charges = await first.order_count(), len(first.plugin("sandbox").calls)

        order = expect(await first.client.post("/orders", json=parcel(*EARNS_GIFT),
                                               headers=shop), 201)

        assert gift_lines(order) == []
        assert order["shipping"]["price"] == LIGHT  # 900 g: the tote is not shipped
        assert order["totals"]["total"] == 14_000 + LIGHT  # prices include the tax
        assert any("GIFT-TOTE skipped: out of stock" in step["message"]
                   for step in order["explanation"])
        assert await first.order_count() == orders + 1
        assert len(first.plugin("sandbox").calls) == charges + 1
        after = await second.levels()
        assert after[(GIFT, "wh1")] == levels[(GIFT, "wh1")]  # no tote held or taken


async def test_a_worker_that_counts_a_gift_down_reads_it_again(database_url: str) -> None:
    """A count that lowers the gift's stock on this worker forgets its figure: the next
    order reads the stock once and is priced without the gift at the first try."""
    async with api_client(database_url, plugins=PLUGINS) as api:
        await api.engine.db.run("UPDATE stock_levels SET on_hand = 1000")
        shop = await api.storefront("web")
        expect(await api.client.post("/orders", json=parcel(*EARNS_GIFT), headers=shop), 201)
        without_gift, _ = await placed(api, PLAIN, shop)
        expect(await api.client.post("/inventory/counts", json={
            "sku": GIFT, "location_id": "wh1", "counted": 1}, headers=api.admin), 201)
        counted_down, order = await placed(api, parcel(*EARNS_GIFT), shop)
        assert gift_lines(order) == [] and order["shipping"]["price"] == LIGHT
        assert counted_down == without_gift + 1


def test_a_hint_is_plenty_only_with_the_margin_and_only_while_it_is_fresh(
        monkeypatch: pytest.MonkeyPatch) -> None:
    now = [1000.0]
    monkeypatch.setattr(stock_hints.time, "monotonic", lambda: now[0])
    hints = StockHints()
    assert not hints.plenty("GIFT", 1)  # never learned
    hints.learn({"GIFT": stock_hints.MARGIN, "MUG": stock_hints.MARGIN + 3})
    assert not hints.plenty("GIFT", 1)
    assert hints.plenty("MUG", 3) and not hints.plenty("MUG", 4)
    now[0] += stock_hints.MAX_AGE_S
    assert hints.plenty("MUG", 1)
    now[0] += 0.001
    assert not hints.plenty("MUG", 1)
    hints.learn({"MUG": 500})
    hints.forget(["MUG"])
    assert not hints.plenty("MUG", 1)


def test_a_worker_keeps_figures_for_a_bounded_number_of_skus(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stock_hints, "MAX_SKUS", 3)
    hints = StockHints()
    hints.learn({"A": 100, "B": 100, "C": 100})
    assert hints.plenty("A", 1)
    hints.learn({"D": 100})
    assert not hints.plenty("A", 1) and hints.plenty("D", 1)


def test_the_readme_states_the_margin_and_the_age_the_code_uses() -> None:
    readme = " ".join((Path(__file__).parent.parent / "README.md").read_text().split())
    assert f"at least {stock_hints.MARGIN} units beyond the gift's quantity" in readme
    assert f"in the last {stock_hints.MAX_AGE_S:g} seconds" in readme
