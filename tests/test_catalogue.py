"""The demo shops, the test suite's shop and the plugin kit's shop all come from the one
catalogue (``ordnung.testing.catalogue``): what each seeds is what the catalogue lists."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import msgspec

from ordnung.api.demo import run_demo
from ordnung.api.seed import seed_demo_shop
from ordnung.core import Channel, Engine, Location, Product
from ordnung.testing import open_shop
from ordnung.testing.catalogue import (
    KIT_PRODUCTS,
    Catalogue,
    demo_catalogue,
    demo_flow_catalogue,
    kit_catalogue,
    suite_catalogue,
)

Shape = tuple[list[Channel], list[Location], list[Product], dict[tuple[str, str], int]]
MakeEngine = Callable[..., Awaitable[Engine]]


def products(items: list[Product] | tuple[Product, ...]) -> list[Product]:
    """By id, each one's variants by SKU (as the store lists them)."""
    return [msgspec.structs.replace(p, variants=sorted(p.variants, key=lambda v: v.sku))
            for p in sorted(items, key=lambda p: p.id)]


def listed(catalogue: Catalogue) -> Shape:
    """What a shop seeded from ``catalogue`` should hold."""
    return (sorted(catalogue.channels, key=lambda c: c.id),
            sorted(catalogue.locations, key=lambda loc: loc.id),
            products(catalogue.products),
            {key: units for key, units in catalogue.stock.items() if units})


async def seeded(engine: Engine) -> Shape:
    """What a shop holds: its channels, locations, products and stock on hand."""
    return (sorted(await engine.channels.list(), key=lambda c: c.id),
            sorted(await engine.inventory.locations(), key=lambda loc: loc.id),
            products(await engine.catalog.products(limit=200)),
            {(lv.sku, lv.location_id): lv.on_hand for lv in await engine.inventory.levels()})


async def test_the_demo_shop_is_the_catalogues_and_seeding_it_again_changes_nothing(
        make_engine: MakeEngine) -> None:
    engine = await make_engine(plugins=[])
    assert await seed_demo_shop(engine) is True
    assert await seeded(engine) == listed(demo_catalogue())
    await engine.inventory.adjust("MUG", "wh-berlin", -3, reason="broken")
    assert await seed_demo_shop(engine) is False
    channels, locations, products, stock = listed(demo_catalogue())
    stock[("MUG", "wh-berlin")] -= 3  # a trading shop keeps its real figures
    assert await seeded(engine) == (channels, locations, products, stock)


async def test_the_test_suites_shop_is_the_catalogues(engine: Engine) -> None:
    assert await seeded(engine) == listed(suite_catalogue())


async def test_the_test_suites_shop_takes_its_shirt_stock(make_engine: MakeEngine) -> None:
    from tests.support import seed_shop

    engine = await make_engine()
    await seed_shop(engine, shirts=3)
    assert await seeded(engine) == listed(suite_catalogue(shirts=3))
    assert (await seeded(engine))[3][("SHIRT-M", "wh1")] == 3


async def test_the_kits_shop_is_the_catalogues(database_url: str) -> None:
    async with open_shop(database_url=database_url) as shop:
        assert await seeded(shop.engine) == listed(kit_catalogue())


async def test_the_kits_shop_takes_its_own_products_stock_and_currency(
        database_url: str) -> None:
    two = KIT_PRODUCTS[:2]
    stock = {"KIT-SHIRT": 5, "KIT-MUG": 0}
    async with open_shop(database_url=database_url, products=two, stock=stock,
                         currency="GBP") as shop:
        assert await seeded(shop.engine) == listed(
            kit_catalogue(currency="GBP", products=two, stock=stock))


async def test_ordnung_demo_runs_on_its_catalogue(database_url: str) -> None:
    lines: list[str] = []
    await run_demo(database_url, echo=lines.append)
    rows = lines[lines.index("Stock") + 2:]
    on_hand = {(sku, location): int(units) for sku, location, units, *_ in
               (row.split() for row in rows[:rows.index("")])}
    listed_stock = demo_flow_catalogue().stock
    assert on_hand.keys() == listed_stock.keys()
    assert on_hand[("POSTER", "wh1")] == listed_stock[("POSTER", "wh1")]  # not in the order
    assert on_hand[("SHIRT-M", "wh1")] == listed_stock[("SHIRT-M", "wh1")] - 2 + 1


def test_the_demo_shop_seeds_without_the_test_extra() -> None:
    """``ordnung serve --demo`` imports the catalogue in production, without pytest."""
    code = ("import sys, ordnung.api.seed, ordnung.api.demo, ordnung.testing.catalogue; "
            "sys.exit('pytest' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_the_kits_suites_still_import_from_the_package() -> None:
    import ordnung.testing as kit

    suite: Any = kit.PaymentGatewayConformance
    assert suite.__module__ == "ordnung.testing.conformance"
