"""Shared test helpers: the built-in plugins and the test shop of ``ordnung.testing.catalogue``."""

from __future__ import annotations

from typing import Any

from ordnung.core import CartLine, Engine, PaymentInput, PlaceOrder
from ordnung.core.domain.orders import Order
from ordnung.plugins.carriers.flat_rate import FlatRate
from ordnung.plugins.channels.channel_log import ChannelLog
from ordnung.plugins.loyalty.free_gift import FreeGift
from ordnung.plugins.payments.manual import ManualPayments
from ordnung.plugins.payments.sandbox import SandboxGateway
from ordnung.plugins.tax.table_tax import TableTax
from ordnung.testing.catalogue import (
    SHOPPER,
    SUITE_GIFT_THRESHOLD,
    gift_settings,
    seed_catalogue,
    suite_catalogue,
)

GIFT_THRESHOLD = SUITE_GIFT_THRESHOLD  # EUR 100.00

BERLIN = SHOPPER


def builtin_plugins(settings: dict[str, dict[str, Any]] | None = None) -> list[Any]:
    settings = settings or {}
    gift = settings.get("free_gift", gift_settings(GIFT_THRESHOLD))
    return [
        (SandboxGateway, "sandbox", settings.get("sandbox", {})),
        (ManualPayments, "manual", settings.get("manual", {})),
        (FlatRate, "flat_rate", settings.get("flat_rate", {})),
        (TableTax, "table_tax", settings.get("table_tax", {})),
        (FreeGift, "free_gift", gift),
        (ChannelLog(), "channel_log"),
    ]


async def seed_shop(engine: Engine, *, shirts: int = 500) -> None:
    """The test suite's shop (``suite_catalogue``): channels web/etsy/ebay/pos, warehouses
    wh1 and wh2, SHIRT-M (``shirts`` in stock), MUG, POSTER and the GIFT-TOTE."""
    await seed_catalogue(engine, suite_catalogue(shirts=shirts))


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
