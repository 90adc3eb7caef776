"""Carts re-priced on every change; customers, their data export and erasure."""

from __future__ import annotations

import pytest

from ordnung.core import Engine, PaymentInput
from ordnung.core.errors import Conflict, InvalidInput, NotFound, PaymentDeclined
from tests.support import BERLIN, GIFT_THRESHOLD, order_request, paid_order


async def test_gift_appears_at_the_threshold_and_leaves_below_it(engine: Engine) -> None:
    """Scenario 2."""
    cart = await engine.carts.create(channel="web", email="erika@example.com")
    cart = await engine.carts.add_line(cart.id, "POSTER", 2)  # 80.00
    assert cart.priced is not None
    assert not [ln for ln in cart.priced.lines if ln.gift]
    note = [s.message for s in cart.priced.explanation if s.source == "free_gift"]
    assert note == ["spend EUR 20.00 more for a free tote bag"]
    cart = await engine.carts.add_line(cart.id, "MUG", 2)  # 104.00
    assert cart.priced is not None and cart.priced.totals.subtotal >= GIFT_THRESHOLD
    assert [(ln.sku, ln.unit_price) for ln in cart.priced.lines if ln.gift] == [("GIFT-TOTE", 0)]
    cart = await engine.carts.set_line(cart.id, "MUG", 0)  # back to 80.00
    assert cart.priced is not None
    assert not [ln for ln in cart.priced.lines if ln.gift]
    cart = await engine.carts.add_line(cart.id, "MUG", 2)
    assert cart.priced is not None
    assert len([ln for ln in cart.priced.lines if ln.gift]) == 1  # never twice


async def test_cart_flow_to_an_order(engine: Engine) -> None:
    cart = await engine.carts.create(channel="web", email="erika@example.com")
    cart = await engine.carts.add_line(cart.id, "SHIRT-M", 1)
    cart = await engine.carts.set_addresses(cart.id, shipping=BERLIN)
    quotes = await engine.carts.quotes(cart.id)
    assert [m for m, _ in quotes] == ["flat_rate:standard"]
    assert quotes[0][1].expected_delivery is not None
    with pytest.raises(InvalidInput):
        await engine.carts.set_shipping_method(cart.id, "drone:now")
    cart = await engine.carts.set_shipping_method(cart.id, "flat_rate:standard")
    explanation = await engine.carts.explain(cart.id)
    assert [s.step for s in explanation] == ["lines", "promotions", "shipping", "tax", "tax",
                                            "totals"]
    order = await engine.carts.place(cart.id, payment=PaymentInput(gateway="sandbox",
                                                                     token="tok_success"))
    assert order.status == "processing"
    assert order.totals == (await engine.orders.get(order.id)).totals
    again = await engine.carts.place(cart.id)
    assert again.id == order.id
    with pytest.raises(Conflict):
        await engine.carts.add_line(cart.id, "MUG", 1)


async def test_a_declined_cart_can_be_paid_again(engine: Engine) -> None:
    cart = await engine.carts.create(channel="web", email="erika@example.com")
    cart = await engine.carts.add_line(cart.id, "SHIRT-M", 1)
    cart = await engine.carts.set_addresses(cart.id, shipping=BERLIN)
    cart = await engine.carts.set_shipping_method(cart.id, "flat_rate:standard")
    with pytest.raises(PaymentDeclined):
        await engine.carts.place(cart.id, payment=PaymentInput(gateway="sandbox",
                                                               token="tok_decline"))
    assert (await engine.inventory.levels(["SHIRT-M"]))[0].reserved == 0
    order = await engine.carts.place(cart.id, payment=PaymentInput(gateway="sandbox",
                                                                     token="tok_success"))
    assert order.status == "processing"


async def test_bad_cart_changes_change_nothing(engine: Engine) -> None:
    cart = await engine.carts.create(channel="web")
    cart = await engine.carts.add_line(cart.id, "MUG", 1)
    with pytest.raises(NotFound):
        await engine.carts.add_line(cart.id, "NOPE", 1)
    with pytest.raises(InvalidInput):
        await engine.carts.set_line(cart.id, "MUG", -1)
    assert [ln.sku for ln in (await engine.carts.get(cart.id)).lines] == ["MUG"]


async def test_customers_see_their_own_orders_and_loyalty_figures(engine: Engine) -> None:
    ada = await engine.customers.create(email="Ada@Example.com", name="Ada")
    bob = await engine.customers.create(email="bob@example.com", name="Bob")
    with pytest.raises(Conflict):
        await engine.customers.create(email="ada@example.com")
    mine = await engine.orders.place(order_request(("MUG", 1), customer_id=ada.id, email=""))
    await engine.payments.capture(mine.id)
    await engine.orders.place(order_request(("MUG", 1), customer_id=bob.id, email=""))
    assert [o.id for o in await engine.orders.list(customer_id=ada.id)] == [mine.id]
    assert mine.email == "ada@example.com"
    ada = await engine.customers.get(ada.id)
    assert ada.order_count == 1
    assert ada.lifetime_spend == {"EUR": mine.totals.total}


async def test_export_then_erase_keeps_the_accounts(engine: Engine) -> None:
    """Scenario 11."""
    ada = await engine.customers.create(email="ada@example.com", name="Ada Lovelace",
                                        addresses=[BERLIN])
    order = await paid_order(engine, ("MUG", 2))
    order = await engine.orders.place(order_request(("MUG", 1), customer_id=ada.id, email=""))
    order = await engine.payments.capture(order.id)
    export = await engine.customers.export(ada.id)
    assert export["customer"]["name"] == "Ada Lovelace"
    assert [o["number"] for o in export["orders"]] == [order.number]
    assert export["orders"][0]["shipping_address"]["line1"] == BERLIN.line1
    erased = await engine.customers.erase(ada.id)
    assert erased.erased and erased.name == "" and erased.addresses == []
    kept = await engine.orders.get(order.id)
    assert kept.totals == order.totals  # the financial record stays
    assert kept.email == ""
    assert kept.shipping_address is not None
    assert kept.shipping_address.name == "erased" and kept.shipping_address.country == "DE"
    assert BERLIN.line1 not in str(await engine.customers.export(ada.id))
    assert await engine.customers.by_email("ada@example.com") is None
