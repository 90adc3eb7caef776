"""The demo shop of ``ordnung serve --demo`` and ``ordnung demo``: its plugins and their
settings here, its products, channels, locations and stock in ``ordnung.testing.catalogue``
(``demo_catalogue``). Seeding it twice changes nothing."""

from __future__ import annotations

from typing import Any

from ordnung.core import Engine
from ordnung.testing.catalogue import (
    DEMO_GIFT_THRESHOLD,
    demo_catalogue,
    gift_settings,
    seed_catalogue,
)

#: the plugins of the demo shop (``ordnung demo``, ``ordnung serve --demo``) unless
#: ``ORDNUNG_PLUGINS`` says otherwise: a German shop with one tax plugin, the sandbox card
#: gateway, and no e-mail (it needs a mail server: configure ``email`` in
#: ``ORDNUNG_PLUGIN_SETTINGS`` to add it)
DEMO_PLUGINS = ("sandbox", "manual", "flat_rate", "store_pickup", "table_tax", "free_gift",
                "coupons", "vip_priority", "risk_rules", "channel_log")

#: the demo's plugin settings: a free tote bag for orders from EUR 50.00
DEMO_PLUGIN_SETTINGS: dict[str, dict[str, Any]] = {
    "free_gift": gift_settings(DEMO_GIFT_THRESHOLD)}


def demo_plugins(plugin_settings: dict[str, object]) -> list[str]:
    """The demo's plugin set, with ``email`` when its settings name a mail server."""
    return [*DEMO_PLUGINS, *(["email"] if "email" in plugin_settings else [])]


async def seed_demo_shop(engine: Engine) -> bool:
    """Seed channels, locations, products and stock; False if the shop was already there.

    Stock a SKU already has at a location is left alone: a shop that has been trading
    keeps its real figures."""
    created = "web" not in {c.id for c in await engine.channels.list()}
    await seed_catalogue(engine, demo_catalogue(), keep_stock=True)
    return created
