"""The one catalogue of demo and test data, and the one function that seeds it.

Every product, price, channel, location, stock figure and free-gift tier that a seeded
shop starts with is described here once. Four shops are cut from it:

* ``demo_catalogue()``: the demo shop of ``ordnung serve --demo`` (``ordnung.api.seed``);
* ``demo_flow_catalogue()``: the smaller shop ``ordnung demo`` walks one order through
  (``ordnung.api.demo``);
* ``suite_catalogue()``: the shop of ordnung's own test suite (``tests/support.py``);
* ``kit_catalogue()``: the plugin kit's shop (``ordnung.testing.open_shop``), whose
  ``KIT-*`` products are public: plugin authors' tests name them.

The shops share the products, the channels and the shopper's address but keep their own
warehouses, stock figures and channel currencies, because tests and the API fuzzer rely
on those exact figures.

Nothing here imports pytest: ``ordnung serve --demo`` seeds from this module in
production, where the test extra is not installed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from ordnung.core import Address, Channel, Engine, Location, Product, Variant


class Catalogue(msgspec.Struct, frozen=True, kw_only=True):
    """What a shop starts with: seeded in this order by ``seed_catalogue``."""

    channels: tuple[Channel, ...]
    locations: tuple[Location, ...]
    products: tuple[Product, ...]
    #: units received per (SKU, location id); a zero receives nothing
    stock: Mapping[tuple[str, str], int]
    #: the reason and actor of the receipts, as the stock ledger shows them
    reason: str = ""
    actor: str = "system"

    def skus(self) -> list[str]:
        return [variant.sku for product in self.products for variant in product.variants]


async def seed_catalogue(engine: Engine, catalogue: Catalogue, *,
                         keep_stock: bool = False) -> None:
    """Upsert the channels, locations and products, then receive the stock.

    ``keep_stock`` leaves a SKU's stock at a location alone once it has a level there, so
    seeding a shop that has been trading (``ordnung serve --demo`` on every start) changes
    no real figure.
    """
    for channel in catalogue.channels:
        await engine.channels.upsert(channel)
    for location in catalogue.locations:
        await engine.inventory.upsert_location(location)
    for product in catalogue.products:
        await engine.catalog.upsert_product(product)
    for (sku, location_id), units in catalogue.stock.items():
        if not units or (keep_stock and await engine.inventory.levels([sku], location_id)):
            continue
        await engine.inventory.adjust(sku, location_id, units, kind="receive",
                                      reason=catalogue.reason, actor=catalogue.actor)


# --------------------------------------------------------------------------- shared parts

#: who buys in the demos and in tests
SHOPPER = Address(name="Erika Mustermann", line1="Heidestraße 17", city="Berlin",
                  postal_code="51147", country="DE", email="erika@example.com")

#: the free gift of the demo and test shops: never sold on its own
GIFT_SKU = "GIFT-TOTE"
#: the orders that earn it: EUR 50.00 in the demo shop, EUR 100.00 in the test suite
DEMO_GIFT_THRESHOLD = 5_000
SUITE_GIFT_THRESHOLD = 10_000


def gift_settings(threshold: int) -> dict[str, Any]:
    """The ``free_gift`` plugin's settings: a tote bag for EUR orders from ``threshold``."""
    return {"tiers": [{"threshold": threshold, "currency": "EUR", "sku": GIFT_SKU,
                       "name": "tote bag"}]}


#: the sales channels of the demo and test shops (id, name); each channel's kind is its id
CHANNELS = (("web", "Web shop"), ("etsy", "Etsy"), ("ebay", "eBay"), ("pos", "Point of sale"))


def channels(currencies: Mapping[str, list[str]]) -> tuple[Channel, ...]:
    """``CHANNELS`` with what each sells in besides EUR (a missing id: EUR only)."""
    return tuple(Channel(id=cid, name=name, kind=cid, currencies=currencies.get(cid, []))
                 for cid, name in CHANNELS)


def _shirt(size: str, barcode: str, grams: int) -> Variant:
    return Variant(sku=f"SHIRT-{size}", product_id="shirt", name=f"T-shirt {size}",
                   barcode=barcode, prices={"EUR": 2500, "USD": 2900}, weight_grams=grams)


#: the warehouse of ``ordnung demo`` and of the test suite
MAIN_WAREHOUSE = Location(id="wh1", name="Main warehouse", priority=10)

#: the products of the demo and test shops (prices in minor units)
PRODUCTS: tuple[Product, ...] = (
    Product(id="shirt", name="T-shirt", variants=[
        _shirt("M", "4006381333931", 200), _shirt("L", "4006381333955", 220)]),
    Product(id="mug", name="Mug", variants=[
        Variant(sku="MUG", product_id="mug", name="Mug", barcode="4006381333948",
                prices={"EUR": 1200}, weight_grams=350, tax_class="reduced")]),
    Product(id="poster", name="Poster", variants=[
        Variant(sku="POSTER", product_id="poster", name="Poster", prices={"EUR": 4000},
                weight_grams=100)]),
    Product(id="tote", name="Tote bag", variants=[
        Variant(sku=GIFT_SKU, product_id="tote", name="Tote bag", prices={"EUR": 0},
                weight_grams=80, given_only=True)]),
)


def products_with(*skus: str) -> tuple[Product, ...]:
    """The ``PRODUCTS`` that hold these SKUs, each with only those of its variants."""
    out = []
    for product in PRODUCTS:
        variants = [v for v in product.variants if v.sku in skus]
        if variants:
            out.append(msgspec.structs.replace(product, variants=variants))
    return tuple(out)


# --------------------------------------------------------------------------- the demo shop


def demo_catalogue() -> Catalogue:
    """Two warehouses, four channels (the web shop sells in US dollars too), every
    product; ``ordnung serve --demo`` seeds it on every start."""
    return Catalogue(
        channels=channels({"web": ["EUR", "USD"]}),
        locations=(Location(id="wh-berlin", name="Berlin warehouse", priority=10),
                   Location(id="wh-leipzig", name="Leipzig overflow", priority=20)),
        products=PRODUCTS,
        stock={("SHIRT-M", "wh-berlin"): 500, ("SHIRT-L", "wh-berlin"): 300,
               ("MUG", "wh-berlin"): 100, ("MUG", "wh-leipzig"): 100,
               ("POSTER", "wh-berlin"): 50, (GIFT_SKU, "wh-berlin"): 200},
        reason="demo seed", actor="system:demo")


def demo_flow_catalogue() -> Catalogue:
    """``ordnung demo``'s shop: the web shop and Etsy, the main warehouse, one shirt size;
    it prints the stock after the order's life (100 shirts received, 2 sold, 1 back)."""
    return Catalogue(
        channels=tuple(c for c in channels({}) if c.id in ("web", "etsy")),
        locations=(MAIN_WAREHOUSE,),
        products=products_with("SHIRT-M", "MUG", "POSTER", GIFT_SKU),
        stock={("SHIRT-M", "wh1"): 100, ("MUG", "wh1"): 40, ("POSTER", "wh1"): 15,
               (GIFT_SKU, "wh1"): 10},
        reason="opening stock", actor="staff:anna")


# --------------------------------------------------------------------------- the test shop


def suite_catalogue(*, shirts: int = 500) -> Catalogue:
    """The test suite's shop: four channels selling in EUR and USD, a main warehouse and
    an overflow (``wh1``, ``wh2``), one shirt size, and ``shirts`` of them in stock."""
    return Catalogue(
        channels=channels({cid: ["EUR", "USD"] for cid, _ in CHANNELS}),
        locations=(MAIN_WAREHOUSE, Location(id="wh2", name="Overflow", priority=20)),
        products=products_with("SHIRT-M", "MUG", "POSTER", GIFT_SKU),
        stock={("SHIRT-M", "wh1"): shirts, ("MUG", "wh1"): 50, ("MUG", "wh2"): 50,
               ("POSTER", "wh1"): 20, (GIFT_SKU, "wh1"): 10})


# --------------------------------------------------------------------------- the kit's shop


def _kit_variant(sku: str, name: str, eur: int, usd: int, gbp: int, grams: int,
                 tax_class: str = "standard", barcode: str = "",
                 given_only: bool = False) -> Variant:
    return Variant(sku=sku, product_id=sku.lower(), name=name, barcode=barcode,
                   prices={"EUR": eur, "USD": usd, "GBP": gbp, "CHF": eur},
                   weight_grams=grams, tax_class=tax_class, given_only=given_only)


#: the kit catalogue (prices in minor units)
KIT_PRODUCTS: tuple[Product, ...] = tuple(
    Product(id=v.product_id, name=v.name, variants=[v]) for v in (
        _kit_variant("KIT-SHIRT", "T-shirt", 2500, 2900, 2200, 200, barcode="4006381333931"),
        _kit_variant("KIT-MUG", "Mug", 1200, 1400, 1000, 350, tax_class="reduced"),
        _kit_variant("KIT-POSTER", "Poster", 4000, 4500, 3500, 100),
        _kit_variant("KIT-HEAVY", "Cast-iron pan", 9900, 10900, 8900, 12_000),
        # never sold on its own: a loyalty plugin gives it (free_gift tiers, KitGift)
        _kit_variant("KIT-GIFT", "Tote bag (gift)", 0, 0, 0, 80, given_only=True),
    ))
#: stock in the kit's one warehouse ``kit-wh``
KIT_STOCK: Mapping[str, int] = {"KIT-SHIRT": 1000, "KIT-MUG": 1000, "KIT-POSTER": 1000,
                                "KIT-HEAVY": 100, "KIT-GIFT": 100}
KIT_LOCATION = "kit-wh"
KIT_CHANNEL = "web"


def kit_catalogue(*, currency: str = "EUR", products: Iterable[Product] = KIT_PRODUCTS,
                  stock: Mapping[str, int] = KIT_STOCK) -> Catalogue:
    """The kit's shop: one web channel whose default currency is ``currency``, one
    warehouse holding ``stock``."""
    return Catalogue(
        channels=(Channel(id=KIT_CHANNEL, name="Kit web shop", kind="web", currency=currency,
                          currencies=["EUR", "USD", "GBP", "CHF"]),),
        locations=(Location(id=KIT_LOCATION, name="Kit warehouse"),),
        products=tuple(products),
        stock={(sku, KIT_LOCATION): units for sku, units in stock.items()},
        reason="kit stock")
