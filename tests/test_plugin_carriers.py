"""Carrier plugins: weight bands by zone, free shipping over a threshold, store pickup,
PDF labels with a Code 128 barcode, tracking pushes that deliver."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime
from typing import Any

import msgspec
import pypdfium2
import pytest
import zxingcpp
from pypdf import PdfReader

from ordnung.core import (
    Address,
    CartLine,
    Engine,
    PaymentInput,
    PlaceOrder,
    Product,
    Variant,
    hookimpl,
)
from ordnung.core.contexts import PricingContext
from ordnung.core.domain.orders import Order, OrderLine
from ordnung.core.domain.pricing import Discount
from ordnung.core.errors import InvalidInput, PluginError
from ordnung.plugins.carriers.free_shipping import FreeShipping
from ordnung.plugins.carriers.labels import (
    barcode_drawing,
    render_label_pdf,
    unicode_fonts,
)
from ordnung.plugins.carriers.store_pickup import StorePickup, next_business_day
from ordnung.plugins.carriers.transit import add_business_days
from ordnung.plugins.carriers.weight_bands import WeightBands
from ordnung.plugins.payments.sandbox import SandboxGateway
from ordnung.plugins.tax.table_tax import TableTax
from tests.support import BERLIN, seed_shop, ship_all

PARIS = Address(name="Jean Dupont", line1="12 Rue de Rivoli", city="Paris",
                postal_code="75001", country="FR", email="jean@example.com",
                phone="+33 1 23 45 67 89")
OSLO = Address(name="Kari Nordmann", line1="Karl Johans gate 1", city="Oslo",
               postal_code="0154", country="NO")
ZONES: dict[str, Any] = {"zones": [
    {"name": "home", "countries": ["DE"], "transit_days": 1, "bands": [
        {"up_to_grams": 1000, "prices": {"EUR": 400}},
        {"up_to_grams": 10000, "prices": {"EUR": 900}}]},
    {"name": "eu", "countries": ["FR", "AT"], "transit_days": 4, "bands": [
        {"up_to_grams": 1000, "prices": {"EUR": 1100}},
        {"up_to_grams": 10000, "prices": {"EUR": 2500}}]},
]}


def today() -> date:
    return datetime.now(UTC).date()


async def shop(make_engine: Any, *carriers: Any) -> Engine:
    engine: Engine = await make_engine(plugins=[
        (SandboxGateway, "sandbox", {}), (TableTax, "table_tax", {}), *carriers])
    await seed_shop(engine)
    await engine.catalog.upsert_product(Product(id="anvil", name="Anvil", variants=[
        Variant(sku="ANVIL", product_id="anvil", name="Anvil", prices={"EUR": 3000},
                weight_grams=4_000)]))
    await engine.inventory.adjust("ANVIL", "wh1", 20, kind="receive")
    return engine


async def quotes(engine: Engine, address: Address, *lines: tuple[str, int],
                 currency: str = "EUR") -> dict[str, tuple[int, str, date | None]]:
    cart = await engine.carts.create(channel="web", currency=currency)
    await engine.carts.set_addresses(cart.id, shipping=address)
    for sku, qty in lines:
        await engine.carts.add_line(cart.id, sku, qty)
    return {method: (q.price, q.name, q.expected_delivery)
            for method, q in await engine.carts.quotes(cart.id)}


def place(method: str, *lines: tuple[str, int], address: Address = BERLIN) -> PlaceOrder:
    return PlaceOrder(channel="web", lines=[CartLine(sku=s, quantity=q) for s, q in lines],
                      email="erika@example.com", shipping_address=address,
                      shipping_method=method,
                      payment=PaymentInput(gateway="sandbox", token="tok_success"))


def pdf_text(pdf: bytes) -> str:
    reader = PdfReader(io.BytesIO(pdf))
    assert len(reader.pages) == 1
    return reader.pages[0].extract_text()


def decode_barcodes(pdf: bytes) -> list[tuple[Any, str]]:
    """Render the label at 300 dpi and read every barcode on it: (format, text)."""
    document = pypdfium2.PdfDocument(pdf)
    try:
        image = document[0].render(scale=300 / 72).to_pil()
    finally:
        document.close()
    return [(b.format, b.text) for b in zxingcpp.read_barcodes(image)]


# --------------------------------------------------------------------------- weight bands


async def test_weight_bands_price_by_zone_and_weight(make_engine: Any) -> None:
    engine = await shop(make_engine, (WeightBands, "weight_bands", ZONES))
    light = await quotes(engine, BERLIN, ("SHIRT-M", 2))  # 400 g
    assert light["weight_bands:parcel"][:2] == (400, "Parcel (home, up to 1 kg)")
    assert light["weight_bands:parcel"][2] == add_business_days(today(), 1)
    heavy = await quotes(engine, BERLIN, ("ANVIL", 2))  # 8 kg
    assert heavy["weight_bands:parcel"][0] == 900
    # the band limit is inclusive: 5 × 200 g = 1000 g is still the first band
    assert (await quotes(engine, BERLIN, ("SHIRT-M", 5)))["weight_bands:parcel"][0] == 400
    assert (await quotes(engine, BERLIN, ("SHIRT-M", 6)))["weight_bands:parcel"][0] == 900
    paris = await quotes(engine, PARIS, ("ANVIL", 1), ("MUG", 1))  # 4350 g
    assert paris["weight_bands:parcel"][:2] == (2500, "Parcel (eu, up to 10 kg)")
    # heavier than the heaviest band, a country in no zone, a currency without price
    assert "weight_bands:parcel" not in await quotes(engine, BERLIN, ("ANVIL", 3))
    assert "weight_bands:parcel" not in await quotes(engine, OSLO, ("SHIRT-M", 1))
    assert "weight_bands:parcel" not in await quotes(engine, BERLIN, ("SHIRT-M", 1),
                                                     currency="USD")


async def test_weight_bands_wildcard_zone_packaging_and_defaults(make_engine: Any) -> None:
    settings = {"packaging_grams": 150, "zones": [
        *ZONES["zones"],
        {"name": "world", "countries": ["*"], "transit_days": 9, "bands": [
            {"up_to_grams": 2000, "prices": {"EUR": 3000, "USD": 3300}}]}]}
    engine = await shop(make_engine, (WeightBands, "weight_bands", settings))
    # 5 shirts = 1000 g + 150 g packaging: the second band now
    assert (await quotes(engine, BERLIN, ("SHIRT-M", 5)))["weight_bands:parcel"][0] == 900
    assert (await quotes(engine, OSLO, ("SHIRT-M", 1)))["weight_bands:parcel"][0] == 3000
    defaults = msgspec.convert({}, WeightBands.Settings)
    assert [z.name for z in defaults.zones] == ["domestic", "eu", "world"]


@pytest.mark.parametrize("zones, problem", [
    ([{"name": "z", "countries": ["DE"], "bands": [
        {"up_to_grams": 5000, "prices": {"EUR": 1}}, {"up_to_grams": 1000, "prices": {"EUR": 2}}]}],
     "ascending"),
    ([{"name": "z", "countries": ["DE"], "bands": []}], "at least one band"),
    ([{"name": "a", "countries": ["*"], "bands": [{"up_to_grams": 1, "prices": {}}]},
      {"name": "b", "countries": ["*"], "bands": [{"up_to_grams": 1, "prices": {}}]}],
     "only one zone"),
])
async def test_weight_band_settings_are_validated(make_engine: Any, zones: Any,
                                                  problem: str) -> None:
    with pytest.raises(PluginError, match=problem) as err:
        await make_engine(plugins=[(WeightBands, "weight_bands", {"zones": zones})])
    assert err.value.plugin == "weight_bands"


# --------------------------------------------------------------------------- free shipping


class TenEuroOff:
    """A coupon-like plugin: EUR 10.00 off the order."""

    @hookimpl
    def ordnung_adjustments(self, ctx: PricingContext) -> list[Discount]:
        return [Discount(amount=1000, reason="ten off")] if "TEN" in ctx.codes else []


async def test_free_shipping_from_the_threshold_after_discounts(make_engine: Any) -> None:
    engine = await shop(make_engine, (FreeShipping, "free_shipping", {}), (TenEuroOff(), "ten"))
    assert (await quotes(engine, BERLIN, ("SHIRT-M", 2)))["free_shipping:free"][:2] == (
        0, "Free shipping")  # exactly EUR 50.00
    assert "free_shipping:free" not in await quotes(engine, BERLIN, ("SHIRT-M", 1))
    # EUR 60.00 of goods less a EUR 10.00 coupon is 50.00: still free; 49.00 is not
    cart = await engine.carts.create(channel="web")
    await engine.carts.set_addresses(cart.id, shipping=BERLIN)
    await engine.carts.add_line(cart.id, "SHIRT-M", 2)
    await engine.carts.add_line(cart.id, "MUG", 1)
    cart = await engine.carts.apply_code(cart.id, "TEN")
    assert cart.priced is not None and cart.priced.totals.discounts == -1000
    assert [m for m, q in await engine.carts.quotes(cart.id) if q.price == 0] == [
        "free_shipping:free"]
    await engine.carts.set_line(cart.id, "MUG", 0)
    await engine.carts.add_line(cart.id, "POSTER", 1)
    await engine.carts.set_line(cart.id, "SHIRT-M", 1)  # 25 + 40 - 10 = 55
    assert "free_shipping:free" in dict(await engine.carts.quotes(cart.id))
    await engine.carts.set_line(cart.id, "POSTER", 0)
    await engine.carts.add_line(cart.id, "MUG", 2)  # 25 + 24 - 10 = 39
    assert "free_shipping:free" not in dict(await engine.carts.quotes(cart.id))


async def test_free_shipping_fallback_price_below_the_threshold(make_engine: Any) -> None:
    engine = await shop(make_engine, (FreeShipping, "free_shipping", {
        "thresholds": {"EUR": 5000}, "fallback_prices": {"EUR": 390}, "countries": ["DE"],
        "transit_days": 2}))
    below = (await quotes(engine, BERLIN, ("MUG", 1)))["free_shipping:free"]
    assert below[:2] == (390, "Free shipping from EUR 50.00 (spend EUR 38.00 more)")
    assert below[2] == add_business_days(today(), 2)
    assert (await quotes(engine, BERLIN, ("POSTER", 2)))["free_shipping:free"][0] == 0
    assert "free_shipping:free" not in await quotes(engine, PARIS, ("POSTER", 2))
    assert "free_shipping:free" not in await quotes(engine, BERLIN, ("SHIRT-M", 2),
                                                    currency="USD")


# --------------------------------------------------------------------------- store pickup


def pricing_context(now: datetime, currency: str = "EUR") -> PricingContext:
    line = OrderLine(id="L1", sku="MUG", name="Mug", quantity=1, unit_price=1200,
                     line_total=1200)
    return PricingContext(currency=currency, channel="web", customer=None, email="",
                          lines=[line], subtotal=1200, weight_grams=350,
                          shipping_address=BERLIN, billing_address=None, codes=[],
                          shipping_method=None, now=now)


def test_pickup_is_free_and_ready_the_next_business_day() -> None:
    plugin = StorePickup(msgspec.convert({"points": [
        {"id": "mitte", "name": "Shop Mitte", "line1": "Torstraße 1", "city": "Berlin",
         "country": "DE", "closed_dates": ["2025-12-25", "2025-12-26"]},
        {"id": "hh", "name": "Shop Hamburg", "line1": "Jungfernstieg 2", "city": "Hamburg",
         "country": "DE"}]}, StorePickup.Settings))
    friday = datetime(2025, 12, 19, 16, 0, tzinfo=UTC)
    answer = plugin.ordnung_shipping_quotes(pricing_context(friday))
    assert answer is not None
    assert [(q.service, q.name, q.price, q.expected_delivery) for q in answer] == [
        ("pickup-mitte", "Pick up at Shop Mitte", 0, date(2025, 12, 22)),
        ("pickup-hh", "Pick up at Shop Hamburg", 0, date(2025, 12, 22))]
    wednesday = datetime(2025, 12, 24, 9, 0, tzinfo=UTC)
    mitte, hamburg = plugin.ordnung_shipping_quotes(pricing_context(wednesday)) or []
    assert mitte.expected_delivery == date(2025, 12, 29)  # closed 25th and 26th, weekend
    assert hamburg.expected_delivery == date(2025, 12, 25)
    assert plugin.ordnung_shipping_quotes(pricing_context(friday, "USD")) is None
    assert next_business_day(date(2025, 12, 20), []) == date(2025, 12, 22)  # Saturday


# --------------------------------------------------------------------------- labels, tracking


async def test_shipping_makes_a_pdf_label_with_a_scannable_barcode(make_engine: Any) -> None:
    engine = await shop(make_engine, (WeightBands, "weight_bands", ZONES))
    order = await engine.orders.place(place("weight_bands:parcel", ("SHIRT-M", 2), ("MUG", 1),
                                            address=PARIS))
    order = await engine.payments.capture(order.id)
    order = await ship_all(engine, order)
    assert order.status == "fulfilled"
    shipment = order.shipments[0]
    tracking = shipment.tracking_number
    assert tracking.startswith("WB") and len(tracking) == 14
    assert shipment.label_url == f"/labels/weight_bands/{tracking}"

    pdf = await engine.fulfilment.label("weight_bands", tracking)
    assert pdf is not None and pdf.startswith(b"%PDF-")
    text = pdf_text(pdf)
    for expected in ("SHIP TO", "Jean Dupont", "12 Rue de Rivoli", "75001 Paris", "FR",
                     "+33 1 23 45 67 89", f"Order: {order.number}", tracking,
                     "Parcel (eu, up to 1 kg)", "Weight: 0.750 kg"):
        assert expected in text, f"{expected!r} not on the label:\n{text}"
    assert order.shipping is not None and order.shipping.expected_delivery is not None
    assert f"Expected delivery: {order.shipping.expected_delivery.isoformat()}" in text
    assert decode_barcodes(pdf) == [(zxingcpp.BarcodeFormat.Code128, tracking)]
    widget = barcode_drawing(tracking).contents[0]
    assert (type(widget).__name__, widget.value) == ("BarcodeCode128", tracking)
    assert await engine.fulfilment.label("weight_bands", "WB000000000000") is None


async def test_tracking_pushes_move_the_shipment_to_delivered(make_engine: Any) -> None:
    engine = await shop(make_engine, (WeightBands, "weight_bands", ZONES))
    order = await engine.payments.capture(
        (await engine.orders.place(place("weight_bands:parcel", ("MUG", 1)))).id)
    order = await ship_all(engine, order)
    shipment = order.shipments[0]
    number = shipment.tracking_number

    with pytest.raises(InvalidInput, match="unknown tracking status"):
        await engine.fulfilment.tracking("weight_bands",
                                         {"tracking_number": number, "status": "lost-ish"})
    assert (await engine.orders.get(order.id)).shipment(shipment.id).tracking == []

    assert await engine.fulfilment.tracking("weight_bands", {
        "tracking_number": number, "status": "in_transit", "description": "hub Leipzig",
        "at": "2025-06-02T08:00:00+00:00"}) == [shipment.id]
    order = await engine.orders.get(order.id)
    assert order.shipment(shipment.id).status == "shipped"
    assert order.status == "fulfilled"
    assert await engine.fulfilment.tracking("weight_bands", {"events": [
        {"tracking_number": number, "status": "out_for_delivery"},
        {"tracking_number": number, "status": "delivered", "description": "front door"}]}) \
        == [shipment.id, shipment.id]
    order = await engine.orders.get(order.id)
    delivered = order.shipment(shipment.id)
    assert delivered.status == "delivered" and delivered.delivered_at is not None
    assert [e.status for e in delivered.tracking] == ["in_transit", "out_for_delivery",
                                                      "delivered"]
    assert delivered.tracking[0].at == datetime(2025, 6, 2, 8, 0, tzinfo=UTC)
    assert order.status == "delivered"


async def test_store_pickup_prints_a_slip_and_collection_delivers(make_engine: Any) -> None:
    engine = await shop(make_engine, (StorePickup, "store_pickup", {}))
    offered = await quotes(engine, BERLIN, ("MUG", 1))
    assert offered["store_pickup:pickup-main"][:2] == (0, "Pick up at Shop")
    assert offered["store_pickup:pickup-main"][2] == next_business_day(today(), [])
    order = await engine.orders.place(place("store_pickup:pickup-main", ("MUG", 2)))
    assert order.totals.shipping == 0
    order = await ship_all(engine, await engine.payments.capture(order.id))
    shipment = order.shipments[0]
    assert shipment.tracking_number.startswith("PU")
    assert shipment.label_url == f"/labels/store_pickup/{shipment.tracking_number}"
    pdf = await engine.fulfilment.label("store_pickup", shipment.tracking_number)
    assert pdf is not None
    text = pdf_text(pdf)
    for expected in ("PICK-UP AT", "Hauptstraße 1", "10115 Berlin", "For: Erika Mustermann",
                     order.number, shipment.tracking_number):
        assert expected in text, f"{expected!r} not on the slip:\n{text}"
    assert decode_barcodes(pdf) == [(zxingcpp.BarcodeFormat.Code128, shipment.tracking_number)]
    await engine.fulfilment.tracking("store_pickup", {
        "tracking_number": shipment.tracking_number, "status": "picked_up",
        "description": "collected at the counter"})
    order = await engine.orders.get(order.id)
    assert order.status == "delivered"
    assert order.shipment(shipment.id).tracking[-1].status == "delivered"


async def test_a_refused_label_leaves_the_shipment_packed(make_engine: Any) -> None:
    engine = await shop(make_engine, (WeightBands, "weight_bands", ZONES))
    order: Order = await engine.orders.place(place("weight_bands:parcel", ("MUG", 1)))
    order = await engine.payments.capture(order.id)
    order, [shipment] = await engine.fulfilment.create_shipment(order.id)
    await engine.fulfilment.pick(order.id, shipment.id)
    await engine.fulfilment.pack(order.id, shipment.id, ["MUG"])
    carrier = engine.host.pm.get_plugin("weight_bands")
    carrier.context, saved = None, carrier.context
    with pytest.raises(PluginError, match="has not started"):
        await engine.fulfilment.ship(order.id, shipment.id)
    carrier.context = saved
    assert (await engine.orders.get(order.id)).shipment(shipment.id).status == "packed"
    order = await engine.fulfilment.ship(order.id, shipment.id)
    assert order.shipment(shipment.id).status == "shipped"


def test_labels_print_central_european_addresses() -> None:
    recipient = ["Łukasz Żółć", "ul. Piotrkowska 1", "90-001 Łódź", "PL"]
    western = render_label_pdf(carrier="Parcel", service="parcel", heading="SHIP TO",
                               recipient=["Jörg Weiß", "Heidestraße 17"], order_number="O-1",
                               tracking_number="WB1")
    assert "Jörg Weiß" in pdf_text(western)
    assert len(western) < 5_000  # standard fonts: nothing embedded
    if unicode_fonts() is None:
        pytest.skip("DejaVu Sans is not on reportlab's font search path")
    pdf = render_label_pdf(carrier="Parcel", service="parcel", heading="SHIP TO",
                           recipient=recipient, order_number="O-1", tracking_number="WB1")
    text = pdf_text(pdf)
    for line in recipient:
        assert line in text
