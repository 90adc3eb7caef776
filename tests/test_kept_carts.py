"""A worker keeps the carts it last wrote or read, and a copy is only ever tried.

A change to a kept cart costs its save alone (``ordnung.core.persistence.kept_carts``);
the save is guarded by the copy's version, its token hash and the generations the
request's kept credential and variants wait on. Two apps on one database stand for two
workers: whatever one changes, the other's copy must never write over it, let a token
in that no longer opens the cart, or charge a price that is gone.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ordnung.core.domain.carts import Cart
from ordnung.core.domain.common import utcnow
from ordnung.core.persistence.codec import encode
from ordnung.core.persistence.kept_carts import KeptCarts
from tests.api_support import BERLIN, Api, api_client, expect, expect_problem
from tests.test_kept_credentials import two_workers


async def lines_of(api: Api, cart_id: str) -> list[tuple[str, int]]:
    return [(ln.sku, ln.quantity) for ln in (await api.engine.carts.get(cart_id)).lines]


async def guest_cart(api: Api) -> tuple[dict[str, Any], str, dict[str, str]]:
    """A new guest cart through ``api`` (which so keeps it): the cart, its id, and the
    headers of a storefront key holding its token."""
    shop = await api.storefront("web")
    cart = await api.new_cart(shop)
    return cart, cart["id"], api.holding(shop, cart["id"])


async def add(api: Api, holding: dict[str, str], cart_id: str, sku: str) -> Any:
    return await api.client.post(f"/carts/{cart_id}/lines", json={"sku": sku, "quantity": 1},
                                 headers=holding)


async def test_a_cart_changed_on_another_worker_is_changed_as_stored(
        database_url: str) -> None:
    async with two_workers(database_url) as (first, second):
        cart, cid, holding = await guest_cart(first)
        expect(await add(first, holding, cid, "MUG"), 200)  # the first worker keeps it
        expect(await add(second, holding, cid, "POSTER"), 200)
        expect(await second.client.put(f"/carts/{cid}/addresses", json={"shipping": BERLIN},
                                       headers=holding), 200)
        with first.engine.db.tally() as spent:
            body = expect(await add(first, holding, cid, "SHIRT-M"), 200)
        # its copy matched nothing; on PostgreSQL that statement brought the cart back
        assert spent.statements == (2 if first.engine.db.is_postgres else 3)
        assert [(ln["sku"], ln["quantity"]) for ln in body["lines"]] == [
            ("MUG", 1), ("POSTER", 1), ("SHIRT-M", 1)]
        assert body["shipping_address"]["city"] == BERLIN["city"]
        assert await lines_of(first, cid) == [("MUG", 1), ("POSTER", 1), ("SHIRT-M", 1)]
        assert (await first.engine.carts.get(cid)).version == body["version"] \
            == cart["version"] + 4
        # and now it keeps the cart as it saved it: the next change is one statement
        with first.engine.db.tally() as spent:
            expect(await add(first, holding, cid, "MUG"), 200)
        assert spent.statements == 1
        assert await lines_of(second, cid) == [("MUG", 2), ("POSTER", 1), ("SHIRT-M", 1)]


PAY = {"payment": {"gateway": "sandbox", "token": "tok_success"}}


async def test_a_cart_changed_on_another_worker_is_placed_as_stored(
        database_url: str) -> None:
    async with two_workers(database_url) as (first, second):
        shop = await first.storefront("web")
        cid, holding = await first.ready_cart(shop, "MUG")  # the first worker keeps it
        expect(await add(second, holding, cid, "POSTER"), 200)
        order = expect(await first.client.post(f"/carts/{cid}/order", json=PAY,
                                               headers=holding), 201)
        assert sorted(line["sku"] for line in order["lines"]) == ["MUG", "POSTER"]
        cart = await second.engine.carts.get(cid)
        assert cart.status == "placed" and cart.order_id == order["id"]
        assert await first.order_count() == 1


async def test_a_guest_token_cleared_elsewhere_places_no_kept_copy(
        database_url: str) -> None:
    async with two_workers(database_url) as (first, second):
        shop = await first.storefront("web")
        cid, holding = await first.ready_cart(shop, "MUG")
        levels = await first.levels()
        await second.engine.carts.rt.carts.clear_token(cid)
        expect_problem(await first.client.post(f"/carts/{cid}/order", json=PAY,
                                               headers=holding), 404, "not-found")
        assert await first.order_count() == 0 and await first.levels() == levels
        assert (await second.engine.carts.get(cid)).status == "open"


async def test_a_change_made_between_the_copy_and_its_save_is_not_written_over(
        database_url: str) -> None:
    async with api_client(database_url) as api:
        _cart, cid, holding = await guest_cart(api)
        store = api.engine.carts.rt.carts
        save_kept = store._save_kept

        async def changed_meanwhile(*args: Any) -> None:
            await api.engine.carts.add_line(cid, "POSTER", 1)  # another request, in between
            await save_kept(*args)

        store._save_kept = changed_meanwhile  # type: ignore[method-assign]
        try:
            body = expect(await add(api, holding, cid, "MUG"), 200)
        finally:
            del store._save_kept
        assert [(ln["sku"], ln["quantity"]) for ln in body["lines"]] == [
            ("POSTER", 1), ("MUG", 1)]
        assert await lines_of(api, cid) == [("POSTER", 1), ("MUG", 1)]


async def test_a_guest_token_that_no_longer_opens_the_cart_opens_no_kept_copy(
        database_url: str) -> None:
    """The token is cleared (the cart became a customer's) on another worker without a
    change to the cart's document: only the token hash in the save's guard stops the
    first worker's copy, which still holds the old hash."""
    async with two_workers(database_url) as (first, second):
        _cart, cid, holding = await guest_cart(first)
        expect(await add(first, holding, cid, "MUG"), 200)
        await second.engine.carts.rt.carts.clear_token(cid)
        version = (await second.engine.carts.get(cid)).version
        for attempt in ("POSTER", "SHIRT-M"):
            expect_problem(await add(first, holding, cid, attempt), 404, "not-found")
        assert await lines_of(second, cid) == [("MUG", 1)]
        assert (await second.engine.carts.get(cid)).version == version


async def test_a_price_changed_on_another_worker_reprices_a_kept_cart(
        database_url: str) -> None:
    """The first worker kept the cart, the storefront key and the variants; the second
    changes the mug's price. The first worker's next change prices with the new price:
    the save of its copy was guarded by the catalog generation it had priced at."""
    async with two_workers(database_url) as (first, second):
        _cart, cid, holding = await guest_cart(first)
        body = expect(await add(first, holding, cid, "MUG"), 200)
        assert [ln["unit_price"] for ln in body["priced"]["lines"]] == [1200]
        mug = expect(await second.client.get("/catalogue/products/mug",
                                             headers=second.admin), 200)
        mug["variants"][0]["prices"] = {"EUR": 1500}
        expect(await second.client.put("/catalogue/products/mug", json=mug,
                                       headers=second.admin), 200)
        version = (await second.engine.carts.get(cid)).version
        body = expect(await add(first, holding, cid, "MUG"), 200)
        assert [(ln["sku"], ln["quantity"], ln["unit_price"])
                for ln in body["priced"]["lines"]] == [("MUG", 2, 1500)]
        stored = await second.engine.carts.get(cid)
        assert stored.priced is not None and stored.version == version + 1  # added once
        assert [(ln.quantity, ln.unit_price) for ln in stored.priced.lines] == [(2, 1500)]


async def test_changes_at_once_on_one_worker_lose_none_of_those_answered_200(
        database_url: str) -> None:
    async with api_client(database_url) as api:
        cart, cid, holding = await guest_cart(api)
        skus = ["MUG", "POSTER", "SHIRT-M", "MUG", "POSTER"]
        answers = await asyncio.gather(*(add(api, holding, cid, sku) for sku in skus))
        assert {r.status_code for r in answers} <= {200, 409}, [r.text for r in answers]
        done = [sku for sku, r in zip(skus, answers, strict=True) if r.status_code == 200]
        assert done, [r.text for r in answers]
        # every change answered 200 is in the cart, once: none wrote over another
        assert sorted(await lines_of(api, cid)) == sorted(
            (sku, done.count(sku)) for sku in set(done))
        assert (await api.engine.carts.get(cid)).version == cart["version"] + len(done)


def test_a_worker_keeps_carts_up_to_its_limit_dropping_the_least_recently_used() -> None:
    kept = KeptCarts(limit=10_000)
    cart = Cart(id="cart_a", channel="web", currency="EUR",
                created_at=utcnow(), updated_at=utcnow())
    data = encode(cart)
    for i in range(10_000 // len(data) + 5):
        kept.keep(f"cart_{i}", data, None)
        kept.lend("cart_0")  # used again: kept while the others come and go
    assert len(kept) == 10_000 // len(data)
    assert kept.lend("cart_0") is not None and kept.lend("cart_1") is None
    kept.renew("cart_0", data + " " * 10_001)  # too large to keep at all
    assert kept.lend("cart_0") is None and len(kept) == 10_000 // len(data) - 1
