"""``ordnung demo``: one order's whole life, printed as a human reads it.

The demo seeds a small shop (``demo_flow_catalogue`` of ``ordnung.testing.catalogue``) on
the embedded SQLite database, loads the demo shop's plugins through the ``ordnung``
entry-point group (exactly as a third party's plugins are found), and walks one order
from placement to a refunded return: place with the sandbox gateway, capture, ship
(pick, pack with scans, the carrier creates the tracking number), deliver, return one
unit with restock, refund. Then it prints the order, how it was priced, its timeline and
the stock levels.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any

from ordnung.api.seed import DEMO_PLUGIN_SETTINGS, demo_plugins
from ordnung.core import (
    CartLine,
    Engine,
    EngineConfig,
    Money,
    PaymentInput,
    PlaceOrder,
    ReturnLineInput,
)
from ordnung.core.config import env_json_object
from ordnung.core.domain.events import Event
from ordnung.core.domain.inventory import StockLevel
from ordnung.core.domain.orders import Order
from ordnung.testing.catalogue import SHOPPER, demo_flow_catalogue, seed_catalogue

ENV_PLUGIN_SETTINGS = "ORDNUNG_PLUGIN_SETTINGS"

#: how amounts are shown to the reader (CLDR locale)
LOCALE = "en"
#: the default demo database, relative to the current directory
DEFAULT_DEMO_URL = "sqlite:///ordnung-demo.db"
DEFAULT_DEMO_FILE = "ordnung-demo.db"

#: the shop the order goes through (``ordnung.testing.catalogue``)
SHOP = demo_flow_catalogue()

#: who does what in the demo (the timeline's "actor" column)
CUSTOMER = "customer:erika@example.com"
STAFF = "staff:anna"
WAREHOUSE = "staff:jonas"
CARRIER = "carrier:flat_rate"


def demo_config(database_url: str) -> EngineConfig:
    """The demo's engine: the demo shop's plugins by entry-point name (with ``email`` only
    if ``ORDNUNG_PLUGIN_SETTINGS`` configures a mail server for it), a free-gift tier."""
    settings = env_json_object(ENV_PLUGIN_SETTINGS, os.environ.get(ENV_PLUGIN_SETTINGS) or "{}")
    settings = {name: value for name, value in settings.items() if name == "email"}
    settings.update(DEMO_PLUGIN_SETTINGS)
    return EngineConfig(database_url=database_url, plugins=demo_plugins(settings),
                        plugin_settings=settings, load_entry_points=True)


async def run_order(engine: Engine) -> Order:
    """Place, pay, ship, deliver, return one unit and refund it; return the final order."""
    order = await engine.orders.place(PlaceOrder(
        channel="web",
        lines=[CartLine(sku="SHIRT-M", quantity=2), CartLine(sku="MUG", quantity=1)],
        email=SHOPPER.email, shipping_address=SHOPPER,
        shipping_method="flat_rate:standard",
        payment=PaymentInput(gateway="sandbox", token="tok_success"),
    ), actor=CUSTOMER)
    order = await engine.payments.capture(order.id, actor=STAFF)

    order, shipments = await engine.fulfilment.create_shipment(order.id, actor=WAREHOUSE)
    for shipment in shipments:
        order = await engine.fulfilment.pick(order.id, shipment.id, actor=WAREHOUSE)
        # the packer scans every unit: barcodes where the item has one, else the SKU
        scans = [sl.barcode or sl.sku for sl in shipment.lines for _ in range(sl.quantity)]
        order = await engine.fulfilment.pack(order.id, shipment.id, scans, actor=WAREHOUSE)
        order = await engine.fulfilment.ship(order.id, shipment.id, actor=WAREHOUSE)
    for shipment in order.shipments:
        order = await engine.fulfilment.deliver(order.id, shipment.id, actor=CARRIER)

    shirt_line = next(line for line in order.lines if line.sku == "SHIRT-M")
    order, rma = await engine.returns.request(
        order.id, [ReturnLineInput(line_id=shirt_line.id, quantity=1, restock=True)],
        reason="too small", actor=CUSTOMER)
    order = await engine.returns.approve(order.id, rma.id, actor=STAFF)
    order = await engine.returns.receive(order.id, rma.id, actor=WAREHOUSE)
    order = await engine.returns.refund(order.id, rma.id, actor=STAFF)
    return order


# --------------------------------------------------------------------------- printing


def money(amount: int, currency: str) -> str:
    return Money(amount, currency).localized(LOCALE)


#: event data fields that hold money in minor units of the order's currency
MONEY_FIELDS = frozenset({"amount", "total", "refund_amount"})


def short_data(data: dict[str, Any], currency: str, width: int = 64) -> str:
    """A one-line summary of an event's data, cut at ``width`` characters."""
    if not data:
        return ""
    parts = []
    for key, value in data.items():
        if value is None or value == "" or value == {} or value == []:
            continue
        if key == "currency":
            continue
        if key in MONEY_FIELDS and isinstance(value, int) and not isinstance(value, bool):
            parts.append(f"{key}={money(value, currency)}")
            continue
        text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"),
                                                               ensure_ascii=False, default=str)
        parts.append(f"{key}={text}")
    line = " ".join(parts)
    return line if len(line) <= width else line[: width - 1] + "…"


def format_order(order: Order) -> list[str]:
    c = order.currency
    t = order.totals
    out = [f"Order {order.number}  ({order.status}, channel {order.channel})", ""]
    out.append("Lines")
    for line in order.lines:
        gift = "  (gift)" if line.gift else ""
        out.append(f"  {line.id:<4} {line.quantity} × {line.sku:<10} {line.name:<12} "
                   f"{money(line.line_total, c):>12}  VAT {line.tax_rate}{gift}")
    if order.shipping:
        when = order.shipping.expected_delivery
        out.append(f"  shipping: {order.shipping.name} ({order.shipping.method}) "
                   f"{money(order.shipping.price, c)}"
                   + (f", expected delivery {when.isoformat()}" if when else ""))
    out += ["", "How it was priced"]
    for step in order.explanation:
        shown = f"  [{money(step.amount, c)}]" if step.amount is not None else ""
        out.append(f"  {step.step:<10} {step.source:<10} {step.message}{shown}")
    prices = "prices include tax" if order.prices_include_tax else "prices exclude tax"
    out += ["", f"Totals ({prices})"]
    for label, amount in (("subtotal", t.subtotal), ("discounts", t.discounts),
                          ("shipping", t.shipping), ("tax", t.tax), ("total", t.total),
                          ("paid", t.paid), ("refunded", t.refunded), ("balance", t.balance)):
        out.append(f"  {label:<10} {money(amount, c):>12}")
    return out


def format_timeline(events: Sequence[Event], currency: str) -> list[str]:
    day = events[0].at.strftime("%Y-%m-%d") if events else ""
    out = [f"Timeline ({len(events)} events, {day}, times in UTC)",
           f"  {'seq':>3}  {'time':<12}  {'event':<30}  {'actor':<26}  details"]
    for e in events:
        out.append(f"  {e.seq:>3}  {e.at.strftime('%H:%M:%S.%f')[:12]}  {e.kind:<30}  "
                   f"{e.actor:<26}  {short_data(e.data, currency)}".rstrip())
    return out


def format_stock(levels: Sequence[StockLevel]) -> list[str]:
    out = ["Stock", f"  {'sku':<10} {'location':<9} {'on hand':>8} {'reserved':>9} "
                    f"{'available':>10}"]
    for lv in sorted(levels, key=lambda x: (x.sku, x.location_id)):
        out.append(f"  {lv.sku:<10} {lv.location_id:<9} {lv.on_hand:>8} {lv.reserved:>9} "
                   f"{lv.available:>10}")
    return out


def format_channels(engine: Engine) -> list[str]:
    """What the channel_log plugin told each sales channel (if it is loaded)."""
    recorder = next((p for _, p in engine.host.pm.list_name_plugin()
                     if hasattr(p, "available") and hasattr(p, "notifications")), None)
    if recorder is None or not recorder.available:
        return []
    out = ["Availability the sales channels were told"]
    for channel, skus in sorted(recorder.available.items()):
        out.append(f"  {channel:<5} " + ", ".join(f"{sku} {n}" for sku, n in sorted(skus.items())))
    return out


async def run_demo(database_url: str, echo: Callable[[str], None] = print) -> Order:
    """Run the whole demo against ``database_url`` (a fresh database) and print it."""
    engine = Engine(demo_config(database_url))
    async with engine:
        echo(f"ordnung demo — database {engine.db.kind}, plugins loaded through entry "
             f"points: {', '.join(engine.host.names())}")
        echo("")
        await seed_catalogue(engine, SHOP)
        order = await run_order(engine)
        timeline = await engine.orders.timeline(order.id)
        levels = await engine.inventory.levels(SHOP.skus())
        sections = [format_order(order), format_timeline(timeline, order.currency),
                    format_stock(levels), format_channels(engine)]
        for section in sections:
            if section:
                for line in section:
                    echo(line)
                echo("")
    return order
