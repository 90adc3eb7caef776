"""Each plugin gets its own typed context at start, instead of the whole engine."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from ordnung.core import Engine, hookimpl
from ordnung.core.domain.coupons import CouponGrant
from ordnung.core.errors import PluginError
from ordnung.core.plugin_context import PluginContext, PluginEngine
from ordnung.plugins.loyalty.coupons import Coupons
from tests.support import builtin_plugins, order_request, seed_shop


class Keeper:
    """Keeps its context; has settings."""

    class Settings(msgspec.Struct, forbid_unknown_fields=True):
        greeting: str = "hello"

    def __init__(self, settings: Keeper.Settings) -> None:
        self.settings = settings
        self.context: PluginContext[Keeper.Settings] | None = None

    @hookimpl
    def ordnung_plugin_started(self, context: PluginContext[Keeper.Settings]) -> None:
        self.context = context


class Bare:
    def __init__(self) -> None:
        self.context: PluginContext[None] | None = None

    @hookimpl
    def ordnung_plugin_started(self, context: PluginContext[None]) -> None:
        self.context = context


async def test_each_plugin_gets_its_own_name_settings_store_and_logger(
        make_engine: Any) -> None:
    engine: Engine = await make_engine(plugins=[
        *builtin_plugins(), (Keeper, "keeper", {"greeting": "moin"}), (Bare, "bare")])
    keeper = engine.host.pm.get_plugin("keeper")
    bare = engine.host.pm.get_plugin("bare")
    assert keeper.context.name == "keeper" and bare.context.name == "bare"
    assert keeper.context.settings is keeper.settings
    assert keeper.context.settings.greeting == "moin"
    assert bare.context.settings is None
    assert not hasattr(bare, "name"), "the host sets no name on a plugin any more"
    await keeper.context.store.put("note", "k", {"v": 1})
    assert await bare.context.store.get("note", "k") is None  # stores are separate
    assert await engine.plugin_store("keeper").get("note", "k") == {"v": 1}
    assert keeper.context.log._context["plugin"] == "keeper"
    assert isinstance(keeper.context.engine, PluginEngine)


async def test_the_engine_facade_acts_in_the_plugins_name(make_engine: Any) -> None:
    engine: Engine = await make_engine(plugins=[*builtin_plugins(), (Bare, "bare")])
    await seed_shop(engine)
    facade = engine.host.pm.get_plugin("bare").context.engine
    anna = await engine.customers.create(email="anna@example.com")
    order = await engine.orders.place(order_request(("SHIRT-M", 1), customer_id=anna.id,
                                                    email=anna.email))
    assert (await facade.customer(anna.id)).email == "anna@example.com"
    assert [o.id for o in await facade.customer_orders(anna.id)] == [order.id]
    assert (await facade.variant("SHIRT-M")).sku == "SHIRT-M"
    assert facade.payment_secured(order) == engine.orders.payment_secured(order)
    await facade.add_note(order.id, "hello")
    [note] = [e for e in await engine.orders.timeline(order.id) if e.kind == "order.note"]
    assert note.actor == "plugin:bare" and note.data["note"] == "hello"


async def test_coupons_are_granted_through_the_hook_not_the_store(make_engine: Any) -> None:
    engine: Engine = await make_engine(plugins=[*builtin_plugins(), (Coupons, "coupons", {}),
                                                (Bare, "bare")])
    facade = engine.host.pm.get_plugin("bare").context.engine
    assert facade.coupon_issuers() == ["coupons"]
    grant = CouponGrant(code="GIFT-1", amount=500, currency="EUR", max_uses=1)
    assert await facade.issue_coupon(grant, issuer="coupons") is True
    assert await facade.issue_coupon(grant, issuer="coupons") is False  # already there
    stored = await engine.plugin_store("coupons").get("coupon", "GIFT-1")
    assert stored is not None and stored["amount"] == 500
    with pytest.raises(PluginError, match="does not issue coupons"):
        await facade.issue_coupon(grant, issuer="bare")
