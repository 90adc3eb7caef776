"""The rule-based risk plugin: each rule raises the score and can hold the order.

Scenario 8 end to end: a held order is neither captured nor shipped until released.
Velocity counters live in the plugin's store and join the placement transaction.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
import pytest

from ordnung.core import Address, Engine, PlaceOrder, hookimpl
from ordnung.core.errors import IllegalTransition, PluginError
from ordnung.plugins.fraud.rules import SLOTS, RiskRules, VelocityRule
from tests.support import builtin_plugins, order_request, paid_order, seed_shop, ship_all

NO_RULES: dict[str, Any] = {"amounts": [], "velocity": [], "country_mismatch_score": 0}


async def risk_engine(make_engine: Any, **settings: Any) -> Engine:
    engine: Engine = await make_engine(plugins=[*builtin_plugins(),
                                                (RiskRules, "risk_rules", settings)])
    await seed_shop(engine)
    return engine


def rules(engine: Engine) -> RiskRules:
    plugin = engine.host.pm.get_plugin("risk_rules")
    assert isinstance(plugin, RiskRules)
    return plugin


async def assessments(engine: Engine, order_id: str) -> list[dict[str, Any]]:
    return [e.data for e in await engine.orders.timeline(order_id)
            if e.kind == "order.risk_assessed"]


def with_billing(request: PlaceOrder, country: str) -> PlaceOrder:
    billing = Address(name="Erika Mustermann", line1="1 Main St", city="Springfield",
                      postal_code="12345", region="IL", country=country)
    return msgspec.structs.replace(request, billing_address=billing)


async def test_a_clean_order_scores_zero_and_is_recorded(make_engine: Any) -> None:
    engine = await risk_engine(make_engine)  # the default rules
    order = await engine.orders.place(order_request(("MUG", 1), client={"ip": "192.0.2.1"}))
    assert (order.status, order.risk_score, order.risk_reasons) == ("processing", 0, [])
    assert await assessments(engine, order.id) == [
        {"plugin": "risk_rules", "score": 0, "reasons": [], "hold": False}]


async def test_amount_thresholds_per_currency_raise_the_score(make_engine: Any) -> None:
    engine = await risk_engine(make_engine, **NO_RULES | {"amounts": [
        {"currency": "EUR", "above": 5_000, "score": 20},
        {"currency": "EUR", "above": 10_000, "score": 50},
        {"currency": "USD", "above": 1, "score": 99}]})
    small = await engine.orders.place(order_request(("MUG", 1)))          # EUR 12.00 + shipping
    middle = await engine.orders.place(order_request(("POSTER", 2)))      # EUR 80.00 + shipping
    large = await engine.orders.place(order_request(("POSTER", 3)))       # EUR 120.00 + shipping
    assert (small.risk_score, middle.risk_score, large.risk_score) == (0, 20, 50)
    assert middle.risk_reasons == [
        f"risk_rules: order total EUR {middle.totals.total // 100}."
        f"{middle.totals.total % 100:02d} is above EUR 50.00"]
    assert large.risk_reasons == [
        f"risk_rules: order total EUR {large.totals.total // 100}."
        f"{large.totals.total % 100:02d} is above EUR 100.00"]  # the highest threshold only
    assert {o.status for o in (small, middle, large)} == {"processing"}  # below hold_at


async def test_country_mismatch_raises_the_score(make_engine: Any) -> None:
    engine = await risk_engine(make_engine, **NO_RULES | {"country_mismatch_score": 35})
    same = await engine.orders.place(with_billing(order_request(("MUG", 1)), "DE"))
    other = await engine.orders.place(with_billing(order_request(("MUG", 1)), "US"))
    assert same.risk_score == 0
    assert (other.risk_score, other.status) == (35, "processing")
    assert other.risk_reasons == [
        "risk_rules: billing country US differs from shipping country DE"]


@pytest.mark.parametrize(("rule", "settings"), [
    ("amount", {"amounts": [{"currency": "EUR", "above": 1_000, "score": 75}]}),
    ("country mismatch", {"country_mismatch_score": 75}),
])
async def test_each_rule_alone_can_hold_the_order(make_engine: Any, rule: str,
                                                  settings: dict[str, Any]) -> None:
    engine = await risk_engine(make_engine, hold_at=75, **NO_RULES | settings)
    order = await engine.orders.place(with_billing(order_request(("MUG", 1)), "AT"))
    assert (order.status, order.risk_score) == ("on_hold", 75)
    assert len(order.risk_reasons) == 1
    assert order.hold_reason == order.risk_reasons[0]
    [assessed] = await assessments(engine, order.id)
    assert assessed["hold"] is True and assessed["score"] == 75


async def test_scenario_8_a_suspicious_order_is_held_until_released(make_engine: Any) -> None:
    engine = await risk_engine(make_engine, hold_at=60, **NO_RULES | {
        "amounts": [{"currency": "EUR", "above": 10_000, "score": 40}],
        "country_mismatch_score": 30})
    order = await engine.orders.place(with_billing(order_request(("POSTER", 3)), "US"))
    assert order.status == "on_hold"
    assert order.risk_score == 70
    assert order.hold_reason.startswith("risk_rules: order total EUR")
    assert "billing country US differs" in order.hold_reason
    # the card was authorized, but nothing is captured or shipped during the review
    assert order.payments[0].status == "authorized"
    with pytest.raises(IllegalTransition) as err:
        await engine.payments.capture(order.id)
    assert err.value.current == "on_hold"
    with pytest.raises(IllegalTransition):
        await engine.fulfilment.create_shipment(order.id)
    assert [o.id for o in await engine.fulfilment.queue()] == []
    held = await engine.orders.get(order.id)
    assert (held.totals.paid, held.version) == (0, order.version)

    order = await engine.orders.release(order.id, note="called the customer",
                                        actor="staff:risk-team")
    assert (order.status, order.hold_reason) == ("processing", "")
    order = await engine.payments.capture(order.id)
    order = await ship_all(engine, order)
    assert (order.status, order.totals.paid) == ("fulfilled", order.totals.total)
    kinds = [(e.kind, e.actor) for e in await engine.orders.timeline(order.id)]
    assert kinds.index(("order.on_hold", "system")) < kinds.index(
        ("order.placed", "staff:risk-team")) < kinds.index(("payment.captured", "system"))


async def test_a_held_order_can_be_cancelled_and_its_authorization_voided(
        make_engine: Any) -> None:
    engine = await risk_engine(make_engine, hold_at=10, **NO_RULES | {
        "country_mismatch_score": 10})
    order = await engine.orders.place(with_billing(order_request(("MUG", 2)), "FR"))
    assert order.status == "on_hold"
    order = await engine.orders.cancel(order.id, reason="fraud confirmed")
    assert (order.status, order.payments[0].status) == ("cancelled", "voided")
    assert (await engine.inventory.available(["MUG"]))["MUG"] == 100


@pytest.mark.parametrize("dimension", ["ip", "card_fingerprint", "email", "customer"])
async def test_velocity_per_dimension_raises_the_score_and_holds(
        make_engine: Any, dimension: str) -> None:
    engine = await risk_engine(make_engine, hold_at=50, **NO_RULES | {"velocity": [
        {"by": dimension, "max_orders": 2, "window_minutes": 30, "score": 50}]})
    customer = await engine.customers.create(email="erika@example.com", name="Erika")
    other = await engine.customers.create(email="max@example.com", name="Max")

    def request(same: bool) -> PlaceOrder:
        who = customer if same else other
        client = {"ip": "198.51.100.7" if same else "198.51.100.8",
                  "card_fingerprint": "fp_erika" if same else "fp_max"}
        return order_request(("MUG", 1), email=who.email, client=client,
                             customer_id=who.id if dimension == "customer" else None)

    first = await engine.orders.place(request(True))
    second = await engine.orders.place(request(True))
    elsewhere = await engine.orders.place(request(False))
    third = await engine.orders.place(request(True))
    assert [o.risk_score for o in (first, second, elsewhere)] == [0, 0, 0]
    assert [o.status for o in (first, second, elsewhere)] == ["processing"] * 3
    assert (third.risk_score, third.status) == (50, "on_hold")
    subject = {"ip": "this IP address", "card_fingerprint": "this card",
               "email": "this e-mail address", "customer": "this customer account"}[dimension]
    assert third.risk_reasons == [
        f"risk_rules: 3 orders from {subject} within 30 min (more than 2)"]


async def test_velocity_store_keeps_hashes_not_addresses(make_engine: Any) -> None:
    engine = await risk_engine(make_engine, **NO_RULES | {"velocity": [
        {"by": "ip", "max_orders": 9}, {"by": "email", "max_orders": 9}]})
    await engine.orders.place(order_request(("MUG", 1), client={"ip": "203.0.113.99"}))
    rows = await engine.db.fetch("SELECT kind, key, data FROM plugin_records "
                                 "WHERE plugin = {}", "risk_rules")
    assert len(rows) == 2
    text = repr(rows)
    assert "203.0.113.99" not in text and "erika" not in text


async def test_velocity_counts_only_the_window(make_engine: Any) -> None:
    engine = await risk_engine(make_engine, **NO_RULES | {"velocity": [
        {"by": "ip", "max_orders": 1, "window_minutes": 60, "score": 40}]})
    plugin = rules(engine)
    rule = plugin.settings.velocity[0]
    store = engine.plugin_store("risk_rules")
    digest = plugin._digest("ip", "192.0.2.50")
    now = rule.slot(time.time())
    # five orders long ago (just outside the window), then one within it
    old, recent = f"{digest}|{now - SLOTS:012d}", f"{digest}|{now - SLOTS + 1:012d}"
    await store.claim(rule.kind, old, amount=5)
    await store.claim(rule.kind, recent)
    order = await engine.orders.place(order_request(("MUG", 1), client={"ip": "192.0.2.50"}))
    assert order.risk_reasons == [
        "risk_rules: 2 orders from this IP address within 1 h (more than 1)"]
    # after a placement, housekeeping forgot the counter that left the window
    keys = [key for key, _, _ in await store.records(rule.kind)]
    assert old not in keys and recent in keys
    assert await plugin.sweep() == 0
    assert await plugin.sweep(at=time.time() + 2 * 3600) == len(keys)
    assert await store.records(rule.kind) == []


class FailsAfterAssessment:
    """Aborts the placement after the risk assessment, inside its transaction."""

    @hookimpl
    def ordnung_fulfilment_priority(self, order: Any, customer: Any) -> int:
        if order.metadata.get("explode"):
            raise RuntimeError("boom")
        return 0


async def test_velocity_counters_join_the_placement_transaction(make_engine: Any) -> None:
    engine: Engine = await make_engine(plugins=[
        *builtin_plugins(), (FailsAfterAssessment(), "fails"),
        (RiskRules, "risk_rules", NO_RULES | {"velocity": [
            {"by": "ip", "max_orders": 1, "window_minutes": 60, "score": 80}]})])
    await seed_shop(engine)
    client = {"ip": "192.0.2.77"}
    for _ in range(3):  # each placement counted, then rolled back with it
        with pytest.raises(RuntimeError, match="boom"):
            await engine.orders.place(msgspec.structs.replace(
                order_request(("MUG", 1), client=client), metadata={"explode": "1"}))
    assert await engine.orders.list() == []
    assert await engine.db.fetch(
        "SELECT counter FROM plugin_records WHERE plugin = {} AND counter > 0",
        "risk_rules") == []
    first = await engine.orders.place(order_request(("MUG", 1), client=client))
    second = await engine.orders.place(order_request(("MUG", 1), client=client))
    assert (first.status, second.status) == ("processing", "on_hold")


async def test_concurrent_placements_are_counted_exactly(make_engine: Any) -> None:
    engine = await risk_engine(make_engine, **NO_RULES | {"velocity": [
        {"by": "card_fingerprint", "max_orders": 5, "window_minutes": 60, "score": 90}]})
    client = {"card_fingerprint": "fp_burst"}
    orders = await asyncio.wait_for(asyncio.gather(*(
        engine.orders.place(order_request(("SHIRT-M", 1), client=client))
        for _ in range(8))), 60)
    held = [o for o in orders if o.status == "on_hold"]
    assert len(held) == 3  # the 6th, 7th and 8th
    counts = sorted(int(r.split(" orders")[0].split(": ")[1])
                    for o in held for r in o.risk_reasons)
    assert counts == [6, 7, 8]


async def test_erasure_forgets_the_customers_counters_and_export_shows_them(
        make_engine: Any) -> None:
    engine = await risk_engine(make_engine, **NO_RULES | {"velocity": [
        {"by": "email", "max_orders": 9}, {"by": "customer", "max_orders": 9},
        {"by": "ip", "max_orders": 9}]})
    customer = await engine.customers.create(email="erika@example.com", name="Erika")
    for _ in range(2):
        await engine.orders.place(order_request(("MUG", 1), customer_id=customer.id,
                                                client={"ip": "192.0.2.9"}))
    export = await engine.customers.export(customer.id)
    assert export["plugins"]["risk_rules"] == {"recent_orders_counted": {
        "velocity:email:60": 2, "velocity:customer:60": 2}}
    await engine.customers.erase(customer.id)
    kinds = [r["kind"] for r in await engine.db.fetch(
        "SELECT kind FROM plugin_records WHERE plugin = {}", "risk_rules")]
    assert kinds == ["velocity:ip:60"]  # the IP was never tied to the customer


@pytest.mark.parametrize("settings", [
    {"hold_at": 0}, {"hold_at": 101}, {"velocity": [{"by": "ip", "max_orders": -1}]},
    {"velocity": [{"by": "phone", "max_orders": 1}]},
    {"amounts": [{"currency": "EUR", "above": "lots", "score": 1}]},
])
async def test_invalid_settings_stop_start_up(make_engine: Any,
                                              settings: dict[str, Any]) -> None:
    with pytest.raises(PluginError) as err:
        await make_engine(plugins=[*builtin_plugins(), (RiskRules, "risk_rules", settings)])
    assert err.value.plugin == "risk_rules"


def test_velocity_rules_slot_their_window() -> None:
    rule = VelocityRule(by="ip", max_orders=3, window_minutes=60)
    assert rule.kind == "velocity:ip:60"
    assert rule.slot_seconds == 300
    assert rule.slot(3599) == 11 and rule.slot(3600) == 12


async def test_paid_orders_of_the_built_in_shop_are_not_held(make_engine: Any) -> None:
    engine = await risk_engine(make_engine)
    order = await paid_order(engine, ("SHIRT-M", 2))
    assert (order.status, order.risk_score) == ("processing", 0)
