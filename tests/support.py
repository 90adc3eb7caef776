"""Shared test helpers: the built-in plugins and a small seeded shop."""

from __future__ import annotations

from typing import Any

from ordnung.core import (
    Address,
    CartLine,
    Channel,
    Engine,
    Location,
    PaymentInput,
    PlaceOrder,
    Product,
    Variant,
)
from ordnung.core.domain.orders import Order
from ordnung.plugins.carriers.flat_rate import FlatRate
from ordnung.plugins.channels.channel_log import ChannelLog
from ordnung.plugins.loyalty.free_gift import FreeGift
from ordnung.plugins.payments.manual import ManualPayments
from ordnung.plugins.payments.sandbox import SandboxGateway
from ordnung.plugins.tax.table_tax import TableTax

GIFT_THRESHOLD = 10_000  # EUR 100.00

BERLIN = Address(name="Erika Mustermann", line1="Heidestraße 17", city="Berlin",
                 postal_code="51147", country="DE", email="erika@example.com")


def builtin_plugins(settings: dict[str, dict[str, Any]] | None = None) -> list[Any]:
    settings = settings or {}
    gift = settings.get("free_gift", {"tiers": [
        {"threshold": GIFT_THRESHOLD, "currency": "EUR", "sku": "GIFT-TOTE", "name": "tote bag"}]})
    return [
        (SandboxGateway, "sandbox", settings.get("sandbox", {})),
        (ManualPayments, "manual", settings.get("manual", {})),
        (FlatRate, "flat_rate", settings.get("flat_rate", {})),
        (TableTax, "table_tax", settings.get("table_tax", {})),
        (FreeGift, "free_gift", gift),
        (ChannelLog(), "channel_log"),
    ]


async def seed_shop(engine: Engine, *, shirts: int = 500) -> None:
    """Channels web/etsy/ebay/pos, two warehouses, a few products with stock."""
    for cid, name in (("web", "Web shop"), ("etsy", "Etsy"), ("ebay", "eBay"), ("pos", "POS")):
        await engine.channels.upsert(Channel(id=cid, name=name, kind=cid,
                                             currencies=["EUR", "USD"]))
    await engine.inventory.upsert_location(Location(id="wh1", name="Main warehouse", priority=10))
    await engine.inventory.upsert_location(Location(id="wh2", name="Overflow", priority=20))
    products = [
        Product(id="shirt", name="T-shirt", variants=[
            Variant(sku="SHIRT-M", product_id="shirt", name="T-shirt M", barcode="4006381333931",
                    prices={"EUR": 2500, "USD": 2900}, weight_grams=200)]),
        Product(id="mug", name="Mug", variants=[
            Variant(sku="MUG", product_id="mug", name="Mug", barcode="4006381333948",
                    prices={"EUR": 1200}, weight_grams=350, tax_class="reduced")]),
        Product(id="poster", name="Poster", variants=[
            Variant(sku="POSTER", product_id="poster", name="Poster", prices={"EUR": 4000},
                    weight_grams=100)]),
        Product(id="tote", name="Tote bag", variants=[
            Variant(sku="GIFT-TOTE", product_id="tote", name="Tote bag", prices={"EUR": 0},
                    weight_grams=80, given_only=True)]),
    ]
    for product in products:
        await engine.catalog.upsert_product(product)
    await engine.inventory.adjust("SHIRT-M", "wh1", shirts, kind="receive")
    await engine.inventory.adjust("MUG", "wh1", 50, kind="receive")
    await engine.inventory.adjust("MUG", "wh2", 50, kind="receive")
    await engine.inventory.adjust("POSTER", "wh1", 20, kind="receive")
    await engine.inventory.adjust("GIFT-TOTE", "wh1", 10, kind="receive")


def order_request(*lines: tuple[str, int], token: str | None = "tok_success",
                  gateway: str = "sandbox", method: str = "", channel: str = "web",
                  email: str = "erika@example.com", customer_id: str | None = None,
                  client: dict[str, str] | None = None) -> PlaceOrder:
    return PlaceOrder(
        channel=channel, lines=[CartLine(sku=s, quantity=q) for s, q in lines],
        email=email, customer_id=customer_id, shipping_address=BERLIN,
        shipping_method="flat_rate:standard",
        payment=PaymentInput(gateway=gateway, method=method, token=token or "")
        if token is not None or gateway != "sandbox" else None,
        client=client or {})


async def paid_order(engine: Engine, *lines: tuple[str, int]) -> Order:
    order = await engine.orders.place(order_request(*(lines or (("SHIRT-M", 1),))))
    return await engine.payments.capture(order.id)


async def ship_all(engine: Engine, order: Order) -> Order:
    order, shipments = await engine.fulfilment.create_shipment(order.id)
    for shipment in shipments:
        order = await engine.fulfilment.pick(order.id, shipment.id)
        scans = [sl.sku for sl in shipment.lines for _ in range(sl.quantity)]
        order = await engine.fulfilment.pack(order.id, shipment.id, scans)
        order = await engine.fulfilment.ship(order.id, shipment.id)
    return order
