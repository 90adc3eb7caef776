"""Regional rules: shipping restrictions by SKU, tax class, product attribute and region."""

from __future__ import annotations

from typing import Any

import pytest

from ordnung.core import Address, CartLine, Engine, PaymentInput, PlaceOrder, Product, Variant
from ordnung.core.errors import PluginError, ValidationFailed
from ordnung.plugins.carriers.flat_rate import FlatRate
from ordnung.plugins.payments.sandbox import SandboxGateway
from ordnung.plugins.regional.shipping_restrictions import ShippingRestrictions
from ordnung.plugins.tax.table_tax import TableTax
from ordnung.plugins.tax.us_sales_tax import UsSalesTax
from tests.support import BERLIN, seed_shop

RULES: dict[str, Any] = {"rules": [
    {"id": "lithium-by-road", "attributes": {"hazmat": "lithium"}, "allow": ["DE", "AT"],
     "reason": "lithium batteries go by road only"},
    {"id": "no-ceramics-to-at", "tax_classes": ["reduced"], "deny": ["AT"],
     "reason": "our Austrian importer licence excludes ceramics"},
    {"id": "poster-licence", "skus": ["POSTER"], "deny": ["FR", "US-CA"],
     "reason": "the artwork is not licensed there"},
]}


def address(country: str, region: str = "") -> Address:
    return Address(name="Buyer", line1="Street 1", city="City", postal_code="12345",
                   country=country, region=region)


async def shop(make_engine: Any, rules: dict[str, Any] = RULES) -> Engine:
    engine: Engine = await make_engine(plugins=[
        (SandboxGateway, "sandbox", {}), (FlatRate, "flat_rate", {}),
        (TableTax, "table_tax", {}), (UsSalesTax, "us_sales_tax", {}),
        (ShippingRestrictions, "shipping_restrictions", rules)])
    await seed_shop(engine)
    await engine.catalog.upsert_product(Product(id="bank", name="Power bank", variants=[
        Variant(sku="POWERBANK", product_id="bank", name="Power bank",
                prices={"EUR": 3000, "USD": 3500}, weight_grams=300,
                attributes={"hazmat": "lithium"})]))
    await engine.catalog.upsert_product(Product(id="poster-us", name="Poster", variants=[
        Variant(sku="POSTER-US", product_id="poster-us", name="Poster", prices={"USD": 4000},
                attributes={"hazmat": "none"})]))
    await engine.inventory.adjust("POWERBANK", "wh1", 10, kind="receive")
    await engine.inventory.adjust("POSTER-US", "wh1", 10, kind="receive")
    return engine


def request(*lines: tuple[str, int], to: Address, currency: str = "EUR") -> PlaceOrder:
    return PlaceOrder(channel="web", currency=currency,
                      lines=[CartLine(sku=s, quantity=q) for s, q in lines],
                      email="buyer@example.com", shipping_address=to,
                      shipping_method="flat_rate:standard",
                      payment=PaymentInput(gateway="sandbox", token="tok_success"))


async def reserved(engine: Engine) -> dict[str, int]:
    return {f"{lv.sku}@{lv.location_id}": lv.reserved for lv in await engine.inventory.levels()}


async def test_restricted_lines_refuse_the_order_naming_line_and_rule(make_engine: Any) -> None:
    engine = await shop(make_engine)
    before = await reserved(engine)
    with pytest.raises(ValidationFailed) as err:
        await engine.orders.place(request(("SHIRT-M", 1), ("POWERBANK", 1), ("POSTER", 2),
                                          to=address("FR")))
    assert err.value.violations == [
        {"plugin": "shipping_restrictions", "code": "shipping-restricted:lithium-by-road",
         "message": "line L2 (POWERBANK) may not ship to FR: lithium batteries go by road "
                    "only (rule lithium-by-road)", "line_id": "L2", "sku": "POWERBANK"},
        {"plugin": "shipping_restrictions", "code": "shipping-restricted:poster-licence",
         "message": "line L3 (POSTER) may not ship to FR: the artwork is not licensed there "
                    "(rule poster-licence)", "line_id": "L3", "sku": "POSTER"},
    ]
    assert err.value.to_dict()["type"] == "validation"
    # nothing was reserved or written
    assert await reserved(engine) == before
    assert await engine.orders.list() == []

    with pytest.raises(ValidationFailed) as err:
        await engine.orders.place(request(("MUG", 1), ("POWERBANK", 1), to=address("AT")))
    assert [(v["line_id"], v["code"]) for v in err.value.violations] == [
        ("L1", "shipping-restricted:no-ceramics-to-at")]

    # the same goods to a permitted destination
    order = await engine.orders.place(request(("MUG", 1), ("POWERBANK", 1), ("POSTER", 1),
                                              to=BERLIN))
    assert order.status == "processing"
    ok_fr = await engine.orders.place(request(("SHIRT-M", 1), ("MUG", 1), to=address("FR")))
    assert ok_fr.status == "processing"


async def test_region_entries_match_only_that_region(make_engine: Any) -> None:
    engine = await shop(make_engine, {"rules": [
        {"id": "prop65", "skus": ["POSTER-US"], "deny": ["US-CA"],
         "reason": "no Proposition 65 warning label"}]})
    with pytest.raises(ValidationFailed) as err:
        await engine.orders.place(request(("POSTER-US", 1), to=address("US", "CA"),
                                          currency="USD"))
    assert err.value.violations[0]["message"].startswith(
        "line L1 (POSTER-US) may not ship to US-CA")
    order = await engine.orders.place(request(("POSTER-US", 1), to=address("US", "NY"),
                                              currency="USD"))
    assert order.status == "processing"


async def test_a_rule_without_selector_covers_every_line(make_engine: Any) -> None:
    engine = await shop(make_engine, {"rules": [
        {"id": "dach-only", "allow": ["DE", "AT", "CH"], "reason": "we ship to DACH only"}]})
    with pytest.raises(ValidationFailed) as err:
        await engine.orders.place(request(("SHIRT-M", 1), ("MUG", 1), to=address("FR")))
    assert [v["line_id"] for v in err.value.violations] == ["L1", "L2"]
    assert (await engine.orders.place(request(("SHIRT-M", 1), to=address("AT")))).status \
        == "processing"


@pytest.mark.parametrize("rules, problem", [
    ([{"id": "r", "reason": "x"}], "either deny or allow"),
    ([{"id": "r", "reason": "x", "deny": ["FR"], "allow": ["DE"]}], "either deny or allow"),
    ([{"id": "r", "reason": "x", "deny": ["FR"]}, {"id": "r", "reason": "y", "deny": ["AT"]}],
     "unique"),
])
async def test_rules_are_validated(make_engine: Any, rules: list[Any], problem: str) -> None:
    with pytest.raises(PluginError, match=problem):
        await make_engine(plugins=[(ShippingRestrictions, "shipping_restrictions",
                                    {"rules": rules})])
