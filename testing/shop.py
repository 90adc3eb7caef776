"""A small shop on a real Engine for plugin tests: catalogue, stock, helper plugins.

``open_shop`` starts an Engine on a temporary SQLite database (or the URL you
give), seeds the kit catalogue and registers your plugins next to the kit's
helpers — a payment gateway, a carrier and a tax plugin that approve, quote and
tax predictably — so a test of one kind of plugin needs no plugin of another
kind::

    async with open_shop([(MyDiscount, "my_discount", {"percent": 10})]) as shop:
        order = await shop.place(("KIT-SHIRT", 2))

Leave a helper out (``helpers=("payment", "tax")``) when your plugin plays its role.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import AsyncIterator, Awaitable, Coroutine, Iterable, Mapping, Sequence
from datetime import date, timedelta
from pathlib import Path
from typing import Any, TypeVar

from ordnung.core import (
    Address,
    CartLine,
    Engine,
    EngineConfig,
    PaymentInput,
    PlaceOrder,
    Product,
    hookimpl,
)
from ordnung.core.contexts import PricingContext
from ordnung.core.domain.carts import Cart
from ordnung.core.domain.common import utcnow
from ordnung.core.domain.orders import Order
from ordnung.core.domain.payments import GatewayResult, PaymentMethod, PaymentRequest
from ordnung.core.domain.pricing import GiftLine, LineTax, ShippingQuote, TaxAnswer
from ordnung.testing.catalogue import (
    KIT_CHANNEL,
    KIT_PRODUCTS,
    KIT_STOCK,
    SHOPPER,
    kit_catalogue,
    seed_catalogue,
)

T = TypeVar("T")

#: the kit's helper plugins' names (prefixed so they never clash with yours)
KIT_GATEWAY = "kit_gateway"
KIT_CARRIER = "kit_carrier"
KIT_TAX = "kit_tax"
KIT_SHIPPING_METHOD = f"{KIT_CARRIER}:standard"
KIT_SHIPPING_PRICE = 500
KIT_TAX_RATE = "0.1"
HELPERS = ("payment", "carrier", "tax")

KIT_ADDRESS = SHOPPER
KIT_EMAIL = SHOPPER.email


# --------------------------------------------------------------------------- helper plugins


class KitGateway:
    """A payment gateway that approves everything, idempotently (the kit's helper)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, int]] = []

    @hookimpl
    def ordnung_payment_methods(self) -> list[PaymentMethod]:
        return [PaymentMethod(method="card", name="Card (kit)")]

    def _approve(self, operation: str, request: PaymentRequest) -> GatewayResult:
        self.calls.append((operation, request.idempotency_key, request.amount))
        return GatewayResult(outcome="approved",
                             reference=request.reference or f"kit_{request.payment_id}")

    @hookimpl
    def ordnung_authorize(self, request: PaymentRequest) -> GatewayResult:
        return self._approve("authorize", request)

    @hookimpl
    def ordnung_capture(self, request: PaymentRequest) -> GatewayResult:
        return self._approve("capture", request)

    @hookimpl
    def ordnung_refund(self, request: PaymentRequest) -> GatewayResult:
        return self._approve("refund", request)

    @hookimpl
    def ordnung_void(self, request: PaymentRequest) -> GatewayResult:
        return self._approve("void", request)


class KitCarrier:
    """One shipping service everywhere, EUR/USD/GBP 5.00, three days (the kit's helper)."""

    @hookimpl
    def ordnung_shipping_quotes(self, ctx: PricingContext) -> list[ShippingQuote]:
        return [ShippingQuote(service="standard", name="Kit standard", price=KIT_SHIPPING_PRICE,
                              expected_delivery=ctx.now.date() + timedelta(days=3))]


class KitGift:
    """One complimentary ``KIT-GIFT`` in every cart that buys something: a gift line for
    suites whose plugin must handle one (the tax suite adds it as ``KIT_GIFT_PLUGIN``)."""

    @hookimpl
    def ordnung_adjustments(self, ctx: PricingContext) -> list[GiftLine]:
        return [GiftLine(sku="KIT-GIFT", quantity=1, reason="kit gift")] if ctx.lines else []


#: ``KitGift`` as ``Engine(plugins=...)`` takes it
KIT_GIFT_PLUGIN = (KitGift(), "kit_gift")


class KitTax:
    """10 % on every line and on shipping, prices without tax (the kit's helper)."""

    @hookimpl(trylast=True)
    def ordnung_tax(self, ctx: PricingContext) -> TaxAnswer:
        return TaxAnswer(lines=[LineTax(line_id=line.id, rate=KIT_TAX_RATE, label="kit tax")
                                for line in ctx.lines],
                         shipping_rate=KIT_TAX_RATE, shipping_label="kit tax")


def helper_plugins(helpers: Iterable[str] = HELPERS) -> list[Any]:
    wanted = set(helpers)
    unknown = wanted - set(HELPERS)
    if unknown:
        raise ValueError(f"unknown kit helpers {sorted(unknown)}; choose from {HELPERS}")
    out: list[Any] = []
    if "payment" in wanted:
        out.append((KitGateway(), KIT_GATEWAY))
    if "carrier" in wanted:
        out.append((KitCarrier(), KIT_CARRIER))
    if "tax" in wanted:
        out.append((KitTax(), KIT_TAX))
    return out


# --------------------------------------------------------------------------- the shop


class Shop:
    """An Engine with the kit catalogue, and short ways to price and place carts."""

    def __init__(self, engine: Engine, *, address: Address = KIT_ADDRESS,
                 currency: str = "EUR", gateway: str | None = KIT_GATEWAY,
                 shipping_method: str | None = KIT_SHIPPING_METHOD) -> None:
        self.engine = engine
        self.address = address
        self.currency = currency
        self.gateway = gateway
        self.shipping_method = shipping_method

    async def seed(self, products: Iterable[Product] = KIT_PRODUCTS,
                   stock: Mapping[str, int] = KIT_STOCK) -> None:
        await seed_catalogue(self.engine, kit_catalogue(currency=self.currency,
                                                        products=products, stock=stock))

    def request(self, *lines: tuple[str, int], codes: Sequence[str] = (),
                customer_id: str | None = None, email: str = KIT_EMAIL,
                address: Address | None = None, shipping_method: str | None = "",
                token: str = "", method: str = "", gateway: str | None = "",
                pay: bool = True) -> PlaceOrder:
        """A placement request; empty strings mean "the shop's default"."""
        chosen_gateway = self.gateway if gateway == "" else gateway
        payment = PaymentInput(gateway=chosen_gateway, method=method, token=token) \
            if pay and chosen_gateway else None
        return PlaceOrder(
            channel=KIT_CHANNEL, currency=self.currency,
            lines=[CartLine(sku=sku, quantity=qty) for sku, qty in lines],
            email=email, customer_id=customer_id, shipping_address=address or self.address,
            shipping_method=self.shipping_method if shipping_method == "" else shipping_method,
            codes=list(codes), payment=payment)

    async def place(self, *lines: tuple[str, int], **options: Any) -> Order:
        """Place an order (paid through the kit gateway unless told otherwise)."""
        return await self.engine.orders.place(self.request(*lines, **options))

    async def cart(self, *lines: tuple[str, int], codes: Sequence[str] = (),
                   customer_id: str | None = None, email: str = KIT_EMAIL,
                   address: Address | None = None) -> Cart:
        """A priced cart (re-priced after every change, as a storefront's would be)."""
        carts = self.engine.carts
        cart = await carts.create(channel=KIT_CHANNEL, currency=self.currency,
                                  customer_id=customer_id, email=email)
        for sku, qty in lines:
            cart = await carts.add_line(cart.id, sku, qty)
        cart = await carts.set_addresses(cart.id, shipping=address or self.address)
        for code in codes:
            cart = await carts.apply_code(cart.id, code)
        return cart

    async def context(self, *lines: tuple[str, int], codes: Sequence[str] = (),
                      address: Address | None = None, customer_id: str | None = None,
                      email: str = KIT_EMAIL) -> PricingContext:
        """The ``PricingContext`` a plugin sees for these lines (priced, gifts included)."""
        cart = await self.cart(*lines, codes=codes, customer_id=customer_id, email=email,
                               address=address)
        assert cart.priced is not None
        customer = await self.engine.customers.get(customer_id) if customer_id else None
        return PricingContext(
            currency=cart.currency, channel=cart.channel, customer=customer, email=cart.email,
            lines=list(cart.priced.lines), subtotal=cart.priced.totals.subtotal,
            weight_grams=sum(line.weight_grams for line in cart.priced.lines),
            shipping_address=cart.shipping_address, billing_address=cart.billing_address,
            codes=list(cart.codes), shipping_method=self.shipping_method, now=utcnow())

    async def available(self, *skus: str) -> dict[str, int]:
        return await self.engine.inventory.available(list(skus))

    async def pay_and_ship(self, order: Order, tracking_number: str = "") -> Order:
        """Capture what is authorized, then pick, pack (scanning every unit) and ship."""
        engine = self.engine
        if not engine.orders.payment_secured(order) and order.payments:
            order = await engine.payments.capture(order.id)
        order, shipments = await engine.fulfilment.create_shipment(order.id)
        for shipment in shipments:
            order = await engine.fulfilment.pick(order.id, shipment.id)
            scans = [sl.barcode or sl.sku for sl in shipment.lines for _ in range(sl.quantity)]
            order = await engine.fulfilment.pack(order.id, shipment.id, scans)
            order = await engine.fulfilment.ship(order.id, shipment.id,
                                                 tracking_number=tracking_number)
        return order


def today() -> date:
    return utcnow().date()


@contextlib.asynccontextmanager
async def open_shop(plugins: Iterable[Any] = (), *, database_url: str | None = None,
                    helpers: Iterable[str] = HELPERS, products: Iterable[Product] = KIT_PRODUCTS,
                    stock: Mapping[str, int] = KIT_STOCK, address: Address = KIT_ADDRESS,
                    currency: str = "EUR", gateway: str | None = None,
                    shipping_method: str | None = None,
                    **config: Any) -> AsyncIterator[Shop]:
    """A started, seeded Engine with ``plugins`` (as ``Engine(plugins=...)`` takes them).

    Without ``database_url`` the database is a SQLite file in a temporary directory
    removed afterwards; with one, it should be empty (see ``reset_database``).
    ``gateway``/``shipping_method`` default to the kit helpers' when they are enabled.
    """
    wanted = tuple(helpers)
    with contextlib.ExitStack() as stack:
        if database_url is None:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="ordnung-kit-"))
            database_url = f"sqlite:///{Path(folder) / 'shop.db'}"
        engine = Engine(EngineConfig(database_url=database_url, load_entry_points=False,
                                     **config),
                        plugins=[*plugins, *helper_plugins(wanted)])
        await engine.start()
        try:
            shop = Shop(engine, address=address, currency=currency,
                        gateway=gateway or (KIT_GATEWAY if "payment" in wanted else None),
                        shipping_method=shipping_method or (
                            KIT_SHIPPING_METHOD if "carrier" in wanted else None))
            await shop.seed(products, stock)
            yield shop
        finally:
            await engine.stop()


async def reset_database(url: str) -> None:
    """Empty every table of a PostgreSQL database (SQLite: delete the file instead)."""
    if not url.startswith(("postgres://", "postgresql://")):
        return
    import asyncpg

    conn = await asyncpg.connect(url)
    try:
        tables = [r["tablename"] for r in await conn.fetch(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public' "
            "AND tablename <> 'migration'")]
        if tables:
            await conn.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " CASCADE")
    finally:
        await conn.close()


def run(awaitable: Coroutine[Any, Any, T] | Awaitable[T]) -> T:
    """Run a coroutine to completion from a plain (synchronous) test."""
    async def main() -> T:
        return await awaitable

    return asyncio.run(main())
