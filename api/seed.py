"""Demo data for ``ordnung serve --demo``: written so that running it twice changes nothing."""

from __future__ import annotations

from ordnung.core import Channel, Engine, Location, Product, Variant

#: the plugins of the demo shop (``ordnung demo``, ``ordnung serve --demo``) unless
#: ``ORDNUNG_PLUGINS`` says otherwise: a German shop with one tax plugin, the sandbox card
#: gateway, and no e-mail (it needs a mail server: configure ``email`` in
#: ``ORDNUNG_PLUGIN_SETTINGS`` to add it)
DEMO_PLUGINS = ("sandbox", "manual", "flat_rate", "store_pickup", "table_tax", "free_gift",
                "coupons", "vip_priority", "risk_rules", "channel_log")


def demo_plugins(plugin_settings: dict[str, object]) -> list[str]:
    """The demo's plugin set, with ``email`` when its settings name a mail server."""
    return [*DEMO_PLUGINS, *(["email"] if "email" in plugin_settings else [])]

CHANNELS = [("web", "Web shop"), ("etsy", "Etsy"), ("ebay", "eBay"), ("pos", "Point of sale")]
#: what each demo channel sells in: euros, and the web shop US dollars too (the shirts
#: have dollar prices); a cart or order in another currency is refused
CURRENCIES = {"web": ["EUR", "USD"]}
LOCATIONS = [Location(id="wh-berlin", name="Berlin warehouse", priority=10),
             Location(id="wh-leipzig", name="Leipzig overflow", priority=20)]
PRODUCTS = [
    Product(id="shirt", name="Organic T-shirt", variants=[
        Variant(sku="SHIRT-M", product_id="shirt", name="Organic T-shirt M",
                barcode="4006381333931", prices={"EUR": 2500, "USD": 2900}, weight_grams=200),
        Variant(sku="SHIRT-L", product_id="shirt", name="Organic T-shirt L",
                barcode="4006381333955", prices={"EUR": 2500, "USD": 2900}, weight_grams=220)]),
    Product(id="mug", name="Stoneware mug", variants=[
        Variant(sku="MUG", product_id="mug", name="Stoneware mug", barcode="4006381333948",
                prices={"EUR": 1200}, weight_grams=350, tax_class="reduced")]),
    Product(id="poster", name="Poster A2", variants=[
        Variant(sku="POSTER", product_id="poster", name="Poster A2", prices={"EUR": 4000},
                weight_grams=100)]),
    Product(id="tote", name="Tote bag", variants=[
        Variant(sku="GIFT-TOTE", product_id="tote", name="Tote bag (gift)", prices={"EUR": 0},
                weight_grams=80, given_only=True)]),
]
STOCK = {("SHIRT-M", "wh-berlin"): 500, ("SHIRT-L", "wh-berlin"): 300,
         ("MUG", "wh-berlin"): 100, ("MUG", "wh-leipzig"): 100, ("POSTER", "wh-berlin"): 50,
         ("GIFT-TOTE", "wh-berlin"): 200}


async def seed_demo_shop(engine: Engine) -> bool:
    """Seed channels, locations, products and stock; False if the shop was already there."""
    existing = {c.id for c in await engine.channels.list()}
    created = "web" not in existing
    for cid, name in CHANNELS:
        await engine.channels.upsert(Channel(id=cid, name=name, kind=cid,
                                             currencies=CURRENCIES.get(cid, [])))
    for location in LOCATIONS:
        await engine.inventory.upsert_location(location)
    for product in PRODUCTS:
        await engine.catalog.upsert_product(product)
    for (sku, location_id), units in STOCK.items():
        if await engine.inventory.levels([sku], location_id):
            continue  # stocked by an earlier run: leave the real figures alone
        await engine.inventory.adjust(sku, location_id, units, kind="receive",
                                      reason="demo seed", actor="system:demo")
    return created
