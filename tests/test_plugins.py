"""The plugin manager: discovery, settings, async hooks, guards and after-commit reactions."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from importlib.metadata import entry_points
from typing import Any

import msgspec
import pytest

from ordnung.core import Engine, hookimpl
from ordnung.core.config import DEFAULT_PLUGINS
from ordnung.core.domain.common import utcnow
from ordnung.core.domain.pricing import LineTax, TaxAnswer
from ordnung.core.errors import PluginError, TransitionVetoed
from ordnung.core.persistence.journal import event
from ordnung.core.plugin_host import BUILTIN_PREFIX, ENTRY_POINT_GROUP, PluginHost
from tests.support import builtin_plugins, order_request, paid_order, seed_shop, ship_all


class SlowNotMine:
    """An async tax plugin that answers None after a real await."""

    @hookimpl(tryfirst=True)
    async def ordnung_tax(self, ctx: Any) -> None:
        await asyncio.sleep(0)
        return None


class FlatTenPercent:
    @hookimpl(tryfirst=True)
    async def ordnung_tax(self, ctx: Any) -> TaxAnswer:
        await asyncio.sleep(0)
        return TaxAnswer(lines=[LineTax(line_id=ln.id, rate="0.10") for ln in ctx.lines],
                         shipping_rate="0.10", prices_include_tax=False)


async def test_async_firstresult_hooks_skip_none_and_await_the_answer(make_engine: Any) -> None:
    # registered last = called first: SlowNotMine, then FlatTenPercent, then table_tax
    engine = await make_engine(plugins=[*builtin_plugins(), (FlatTenPercent(), "ten"),
                                        (SlowNotMine(), "slow")])
    await seed_shop(engine)
    order = await engine.orders.place(order_request(("SHIRT-M", 1)))
    assert order.lines[0].tax == 250  # 10% on top, from the async plugin, not German VAT
    assert order.totals.total == 2500 + 250 + 495 + 50
    assert not order.prices_include_tax


async def test_settings_are_validated_naming_plugin_and_field(make_engine: Any) -> None:
    with pytest.raises(PluginError) as err:
        await make_engine(plugin_settings={"flat_rate": {"transit_days": "soon"}})
    assert err.value.plugin == "flat_rate"
    assert err.value.extra["field"] == "transit_days"
    with pytest.raises(PluginError, match="flat_rate"):
        await make_engine(plugin_settings={"flat_rate": {"no_such_setting": 1}})


class Misspelled:
    @hookimpl
    def ordnung_shiping_quotes(self, ctx: Any) -> list[Any]:
        return []


class Wrapper:
    @hookimpl(wrapper=True)
    def ordnung_tax(self, ctx: Any) -> Any:
        return (yield)


async def test_misspelled_hooks_and_wrappers_are_refused_at_start(make_engine: Any) -> None:
    with pytest.raises(PluginError, match="ordnung_shiping_quotes"):
        await make_engine(plugins=[(Misspelled(), "typo")])
    with pytest.raises(PluginError, match="wrappers are not supported"):
        await make_engine(plugins=[(Wrapper(), "wrap")])


def test_entry_points_discover_the_built_in_plugins() -> None:
    host = PluginHost()
    loaded = host.load_entry_points(["sandbox", "flat_rate"],
                                    {"flat_rate": {"transit_days": 5}})
    assert loaded == ["sandbox", "flat_rate"]
    described = {p["name"]: p for p in host.describe()}
    assert "ordnung_authorize" in described["sandbox"]["hooks"]
    assert described["flat_rate"]["settings"]["transit_days"] == 5
    with pytest.raises(PluginError, match="not installed"):
        PluginHost().load_entry_points(["no-such-plugin"])
    with pytest.raises(PluginError, match="not enabled"):
        PluginHost().load_entry_points(["sandbox"], {"manual": {}})


def test_without_a_plugin_list_the_default_set_is_deliberate() -> None:
    """Found: with ORDNUNG_PLUGINS unset every installed plugin was enabled, three
    competing tax plugins and the sandbox test gateway among them."""
    third_party = {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)
                   if not ep.value.startswith(BUILTIN_PREFIX)}
    loaded = PluginHost().load_entry_points(None, defaults=DEFAULT_PLUGINS)
    assert set(loaded) == set(DEFAULT_PLUGINS) | third_party
    assert "sandbox" not in loaded and "email" not in loaded
    assert [p for p in loaded if p in ("table_tax", "eu_vat", "us_sales_tax")] == ["table_tax"]


class NoCancellingShippedLater:
    """Vetoes cancelling orders of the 'b2b' channel."""

    @hookimpl
    def ordnung_guard_transition(self, ctx: Any) -> str | None:
        if ctx.machine == "order" and ctx.event == "cancel" and ctx.order.channel == "pos":
            return "POS orders are final"
        return None


async def test_a_guard_veto_reaches_the_caller_and_changes_nothing(make_engine: Any) -> None:
    engine = await make_engine(plugins=[*builtin_plugins(),
                                        (NoCancellingShippedLater(), "final_sale")])
    await seed_shop(engine)
    order = await engine.orders.place(order_request(("MUG", 1), channel="pos"))
    with pytest.raises(TransitionVetoed) as err:
        await engine.orders.cancel(order.id)
    assert (err.value.plugin, err.value.reason) == ("final_sale", "POS orders are final")
    assert err.value.to_dict()["type"] == "guard-veto"
    after = await engine.orders.get(order.id)
    assert after.status == order.status and after.version == order.version
    assert (await engine.inventory.levels(["MUG"]))[0].reserved == 1


class Flaky:
    """An after-commit reaction that fails twice, then works."""

    def __init__(self) -> None:
        self.failures_left = 2
        self.seen: list[str] = []

    @hookimpl
    async def ordnung_after_transition(self, event: Any, order: Any) -> None:
        if event.kind == "shipment.shipped":
            if self.failures_left:
                self.failures_left -= 1
                raise ConnectionError("mail server unreachable")
            self.seen.append(order.number)


async def make_due(engine: Engine) -> None:
    await engine.db.run("UPDATE reaction_failures SET next_attempt_at = {} "
                        "WHERE resolved_at IS NULL", utcnow() - timedelta(seconds=1))


async def test_a_failed_reaction_is_recorded_and_retried_not_lost(make_engine: Any) -> None:
    flaky = Flaky()
    engine = await make_engine(plugins=[*builtin_plugins(), (flaky, "mailer")])
    await seed_shop(engine)
    order = await ship_all(engine, await paid_order(engine, ("MUG", 1)))
    assert order.status == "fulfilled"  # the commit stands although the reaction failed
    failures = await engine.runtime.journal.open_failures()
    assert [(f["plugin"], f["hook"], f["attempts"]) for f in failures] == [
        ("mailer", "ordnung_after_transition", 1)]
    assert "mail server unreachable" in failures[0]["last_error"]
    assert await engine.run_maintenance() == {"swept": 0, "retried_ok": 0, "retried_failed": 0}
    await make_due(engine)
    assert (await engine.run_maintenance())["retried_failed"] == 1
    await make_due(engine)
    assert (await engine.run_maintenance())["retried_ok"] == 1
    assert flaky.seen == [order.number]
    assert await engine.runtime.journal.open_failures() == []


class Recorder:
    def __init__(self) -> None:
        self.kinds: list[str] = []

    @hookimpl
    def ordnung_on_event(self, event: Any) -> None:
        self.kinds.append(event.kind)


async def test_events_a_crashed_writer_left_are_delivered_by_the_sweeper(
        make_engine: Any) -> None:
    recorder = Recorder()
    engine = await make_engine(plugins=[*builtin_plugins(), (recorder, "recorder")])
    orphan = event("order.note", data={"note": "written just before a crash"})
    async with engine.db.transaction():
        await engine.runtime.journal.append([orphan])  # committed, never delivered
    assert recorder.kinds == []
    assert await engine.runtime.journal.pending_count() == 1
    assert (await engine.run_maintenance())["swept"] == 0  # its lease is still running
    await engine.db.run("UPDATE outbox SET claimed_until = {} WHERE id = {}",
                        utcnow() - timedelta(seconds=1), orphan.id)
    assert (await engine.run_maintenance())["swept"] == 1
    assert recorder.kinds == ["order.note"]
    assert await engine.runtime.journal.pending_count() == 0


def test_settings_structs_are_plain_msgspec() -> None:
    from ordnung.plugins.carriers.flat_rate import FlatRate

    settings = msgspec.convert({"transit_days": 1}, FlatRate.Settings)
    assert settings.prices["EUR"] == 495
