"""Tax plugins: EU VAT (inclusive prices, tax classes, B2B reverse charge) and US sales tax
(by state, exclusive prices), with the core's per-line half-up rounding, failing closed."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from ordnung.core import Address, CartLine, Engine, PaymentInput, PlaceOrder, Product, Variant
from ordnung.core.domain.orders import Order
from ordnung.core.errors import PluginError, TaxUnavailable
from ordnung.plugins.carriers.flat_rate import FlatRate
from ordnung.plugins.payments.sandbox import SandboxGateway
from ordnung.plugins.tax.eu_vat import EuVat
from ordnung.plugins.tax.us_sales_tax import UsSalesTax
from tests.support import BERLIN, seed_shop

VALID_FR_VAT = "FR 40 303 265 045"  # format and check digits valid
INVALID_FR_VAT = "FR 40 303 265 046"  # one digit off: the check fails
VALID_DE_VAT = "DE 136,695 976"


def addr(country: str, *, region: str = "", postal_code: str = "12345",
         vat_id: str = "") -> Address:
    return Address(name="Buyer", line1="Street 1", city="City", country=country,
                   region=region, postal_code=postal_code, vat_id=vat_id,
                   company="ACME" if vat_id else "")


async def shop(make_engine: Any, *tax: Any, shipping: dict[str, int] | None = None) -> Engine:
    engine: Engine = await make_engine(plugins=[
        (SandboxGateway, "sandbox", {}),
        (FlatRate, "flat_rate", {"prices": shipping if shipping is not None
                                 else {"EUR": 495, "USD": 595}}),
        *tax])
    await seed_shop(engine)
    extra = [
        Variant(sku=f"PIN-{i}", product_id="pins", name=f"Pin {i}", prices={"EUR": 4})
        for i in (1, 2, 3)]
    await engine.catalog.upsert_product(Product(id="pins", name="Pins", variants=extra))
    await engine.catalog.upsert_product(Product(id="book", name="Book", variants=[
        Variant(sku="BOOK", product_id="book", name="Book", prices={"EUR": 2000},
                tax_class="books")]))
    await engine.catalog.upsert_product(Product(id="socks", name="Socks", variants=[
        Variant(sku="SOCKS", product_id="socks", name="Socks", prices={"USD": 1000},
                tax_class="clothing")]))
    for sku in ("PIN-1", "PIN-2", "PIN-3", "BOOK", "SOCKS"):
        await engine.inventory.adjust(sku, "wh1", 100, kind="receive")
    return engine


def request(*lines: tuple[str, int], shipping: Address, billing: Address | None = None,
            currency: str = "EUR") -> PlaceOrder:
    return PlaceOrder(channel="web", currency=currency,
                      lines=[CartLine(sku=s, quantity=q) for s, q in lines],
                      email="buyer@example.com", shipping_address=shipping,
                      billing_address=billing, shipping_method="flat_rate:standard",
                      payment=PaymentInput(gateway="sandbox", token="tok_success"))


def taxes(order: Order) -> dict[str, tuple[str, int]]:
    out = {line.sku: (line.tax_rate, line.tax) for line in order.lines}
    if order.shipping:
        out["shipping"] = (order.shipping.tax_rate, order.shipping.tax)
    return out


def notes(order: Order) -> str:
    return "\n".join(step.message for step in order.explanation if step.step == "tax")


# --------------------------------------------------------------------------- rounding


@pytest.mark.parametrize("inclusive, total", [(True, 12), (False, 15)])
async def test_tax_is_rounded_per_line_half_up(make_engine: Any, inclusive: bool,
                                               total: int) -> None:
    engine = await shop(make_engine, (EuVat, "eu_vat", {"prices_include_tax": inclusive}),
                        shipping={"EUR": 0})
    order = await engine.orders.place(request(("PIN-1", 1), ("PIN-2", 1), ("PIN-3", 1),
                                              shipping=BERLIN))
    # 19% of 4 cents is 0.76 (exclusive) or 4 - 4/1.19 = 0.64 (inclusive): 1 cent per line,
    # so 3 cents in all, where one rounding of the 12-cent total would give 2
    assert [line.tax for line in order.lines] == [1, 1, 1]
    assert order.totals.tax == 3
    assert order.totals.total == total
    assert order.prices_include_tax is inclusive


async def test_german_order_has_vat_per_line_and_on_shipping(make_engine: Any) -> None:
    engine = await shop(make_engine, (EuVat, "eu_vat", {}))
    order = await engine.orders.place(request(("SHIRT-M", 1), ("MUG", 1), ("BOOK", 1),
                                              shipping=BERLIN))
    assert taxes(order) == {
        "SHIRT-M": ("0.19", 399),  # 2500 - round(2500 / 1.19 = 2100.84)
        "MUG": ("0.07", 79),  # reduced: 1200 - round(1121.50)
        "BOOK": ("0.19", 319),  # a class Germany has no rate for: standard
        "shipping": ("0.19", 79),  # 495 - round(415.97)
    }
    assert order.totals.tax == 399 + 79 + 319 + 79
    assert order.totals.total == 2500 + 1200 + 2000 + 495  # prices include VAT
    assert "VAT 0.19 on EUR 25.00" in notes(order)


@pytest.mark.parametrize("country, shirt, mug, shipping", [
    ("FR", ("0.20", 417), ("0.055", 63), ("0.20", 82)),  # 495/1.2 = 412.5 rounds up to 413
    ("AT", ("0.20", 417), ("0.10", 109), ("0.20", 82)),
    ("NL", ("0.21", 434), ("0.09", 99), ("0.21", 86)),
    ("IT", ("0.22", 451), ("0.10", 109), ("0.22", 89)),
    ("ES", ("0.21", 434), ("0.10", 109), ("0.21", 86)),
])
async def test_destination_country_rates_under_oss(make_engine: Any, country: str,
                                                   shirt: tuple[str, int], mug: tuple[str, int],
                                                   shipping: tuple[str, int]) -> None:
    engine = await shop(make_engine, (EuVat, "eu_vat", {}))
    order = await engine.orders.place(request(("SHIRT-M", 1), ("MUG", 1),
                                              shipping=addr(country)))
    assert taxes(order) == {"SHIRT-M": shirt, "MUG": mug, "shipping": shipping}


async def test_without_oss_the_sellers_rates_apply(make_engine: Any) -> None:
    engine = await shop(make_engine, (EuVat, "eu_vat", {"oss": False}))
    order = await engine.orders.place(request(("SHIRT-M", 1), ("MUG", 1), shipping=addr("FR")))
    assert taxes(order) == {"SHIRT-M": ("0.19", 399), "MUG": ("0.07", 79),
                            "shipping": ("0.19", 79)}


# --------------------------------------------------------------------------- reverse charge


async def test_valid_vat_number_of_another_member_state_reverse_charges(
        make_engine: Any) -> None:
    engine = await shop(make_engine, (EuVat, "eu_vat", {}))
    company = addr("FR", vat_id=VALID_FR_VAT)
    order = await engine.orders.place(request(("SHIRT-M", 1), ("MUG", 1), shipping=company,
                                              billing=company))
    assert taxes(order) == {"SHIRT-M": ("0", 0), "MUG": ("0", 0), "shipping": ("0", 0)}
    # inclusive prices: the business pays them net of the VAT they contain (at FR rates)
    assert {line.sku: line.discount for line in order.lines} == {"SHIRT-M": -417, "MUG": -63}
    assert all(a.source == "eu_vat" and "reverse charge" in a.reason
               for a in order.adjustments)
    assert order.totals.tax == 0
    assert order.totals.total == 2083 + 1137 + 495  # shipping is charged as quoted
    text = notes(order)
    assert "reverse charge: VAT number FR40303265045 (FR) is valid" in text
    assert "Art. 196" in text


async def test_reverse_charge_can_keep_gross_prices(make_engine: Any) -> None:
    engine = await shop(make_engine, (EuVat, "eu_vat", {"net_prices_for_reverse_charge": False}))
    company = addr("AT", vat_id="ATU13585627")
    order = await engine.orders.place(request(("SHIRT-M", 1), shipping=company, billing=company))
    assert taxes(order) == {"SHIRT-M": ("0", 0), "shipping": ("0", 0)}
    assert order.adjustments == []
    assert order.totals.total == 2500 + 495


async def test_invalid_vat_number_is_charged_normally_and_says_so(make_engine: Any) -> None:
    engine = await shop(make_engine, (EuVat, "eu_vat", {}))
    company = addr("FR", vat_id=INVALID_FR_VAT)
    order = await engine.orders.place(request(("SHIRT-M", 1), shipping=company, billing=company))
    assert taxes(order) == {"SHIRT-M": ("0.20", 417), "shipping": ("0.20", 82)}
    assert order.adjustments == []
    assert order.totals.total == 2500 + 495
    assert f"VAT number {INVALID_FR_VAT} is not valid" in notes(order)


@pytest.mark.parametrize("vat_id, ship_to, why", [
    (VALID_DE_VAT, "DE", "from the seller's country DE"),
    (VALID_FR_VAT, "DE", "do not go to another EU member state (DE)"),
])
async def test_no_reverse_charge_within_the_sellers_country(make_engine: Any, vat_id: str,
                                                             ship_to: str, why: str) -> None:
    engine = await shop(make_engine, (EuVat, "eu_vat", {}))
    billing = addr("FR" if vat_id == VALID_FR_VAT else "DE", vat_id=vat_id)
    order = await engine.orders.place(request(("SHIRT-M", 1), shipping=addr(ship_to),
                                              billing=billing))
    assert taxes(order)["SHIRT-M"] == ("0.19", 399)
    assert why in notes(order)


# --------------------------------------------------------------------------- fail closed


async def test_eu_vat_refuses_destinations_outside_its_table(make_engine: Any) -> None:
    engine = await shop(make_engine, (EuVat, "eu_vat", {}))
    before = {lv.sku: lv.reserved for lv in await engine.inventory.levels(["SHIRT-M"])}
    for destination in (addr("CH"), addr("SE")):  # not EU / EU but not in the table
        with pytest.raises(TaxUnavailable):
            await engine.orders.place(request(("SHIRT-M", 1), shipping=destination))
    assert {lv.sku: lv.reserved for lv in await engine.inventory.levels(["SHIRT-M"])} == before
    assert await engine.orders.list() == []


# --------------------------------------------------------------------------- US sales tax


@pytest.mark.parametrize("state, zip_code, line, shipping, total", [
    ("CA", "94103", ("0.0725", 210), ("0", 0), 2900 + 595 + 210),  # 210.25; shipping exempt
    ("TX", "73301", ("0.0625", 181), ("0.0625", 37), 2900 + 595 + 181 + 37),  # 181.25, 37.19
    ("NY", "10001", ("0.04", 116), ("0.04", 24), 2900 + 595 + 116 + 24),  # 23.8 rounds up
    ("WA", "98101", ("0.065", 189), ("0.065", 39), 2900 + 595 + 189 + 39),  # 188.5 up
    ("OR", "97201", ("0", 0), ("0", 0), 2900 + 595),
])
async def test_us_sales_tax_by_state_excluding_tax(make_engine: Any, state: str, zip_code: str,
                                                   line: tuple[str, int],
                                                   shipping: tuple[str, int],
                                                   total: int) -> None:
    engine = await shop(make_engine, (UsSalesTax, "us_sales_tax", {}))
    order = await engine.orders.place(request(
        ("SHIRT-M", 1), shipping=addr("US", region=state, postal_code=zip_code),
        currency="USD"))
    assert taxes(order) == {"SHIRT-M": line, "shipping": shipping}
    assert not order.prices_include_tax
    assert order.totals.total == total


async def test_us_zip_rates_and_exempt_classes(make_engine: Any) -> None:
    engine = await shop(make_engine, (UsSalesTax, "us_sales_tax", {
        "zip_rates": {"90210": "0.1025"}}))
    beverly_hills = addr("US", region="CA", postal_code="90210-1234")
    order = await engine.orders.place(request(("SHIRT-M", 1), shipping=beverly_hills,
                                              currency="USD"))
    assert taxes(order)["SHIRT-M"] == ("0.1025", 297)  # 297.25
    order = await engine.orders.place(request(
        ("SHIRT-M", 1), ("SOCKS", 2), shipping=addr("US", region="PA"), currency="USD"))
    assert taxes(order) == {"SHIRT-M": ("0.06", 174), "SOCKS": ("0", 0),
                            "shipping": ("0.06", 36)}  # 35.7


@pytest.mark.parametrize("region", ["PR", ""])
async def test_us_state_not_in_the_table_refuses_the_order(make_engine: Any,
                                                           region: str) -> None:
    engine = await shop(make_engine, (UsSalesTax, "us_sales_tax", {}))
    with pytest.raises(TaxUnavailable, match="no tax plugin"):
        await engine.orders.place(request(("SHIRT-M", 1), shipping=addr("US", region=region),
                                          currency="USD"))
    level = (await engine.inventory.levels(["SHIRT-M"]))[0]
    assert level.reserved == 0
    assert await engine.orders.list() == []


async def test_both_tax_plugins_together_each_answer_their_destinations(
        make_engine: Any) -> None:
    engine = await shop(make_engine, (EuVat, "eu_vat", {}), (UsSalesTax, "us_sales_tax", {}))
    us = await engine.orders.place(request(("SHIRT-M", 1), shipping=addr("US", region="CA"),
                                           currency="USD"))
    de = await engine.orders.place(request(("SHIRT-M", 1), shipping=BERLIN))
    assert taxes(us)["SHIRT-M"] == ("0.0725", 210) and not us.prices_include_tax
    assert taxes(de)["SHIRT-M"] == ("0.19", 399) and de.prices_include_tax
    with pytest.raises(TaxUnavailable):
        await engine.orders.place(request(("SHIRT-M", 1), shipping=addr("CH")))


@pytest.mark.parametrize("plugin, settings, problem", [
    (EuVat, {"rates": {"DE": {"reduced": "0.07"}}}, "needs a 'standard' rate"),
    (EuVat, {"rates": {"DE": {"standard": "19%"}}}, "not a decimal number"),
    (EuVat, {"seller_country": "CH"}, "not an EU member"),
    (UsSalesTax, {"rates": {"CA": "1.5"}}, "outside 0..1"),
])
async def test_tax_settings_are_validated(make_engine: Any, plugin: Any,
                                          settings: dict[str, Any], problem: str) -> None:
    with pytest.raises(PluginError, match=problem):
        await make_engine(plugins=[(plugin, "tax", settings)])


def test_default_tables_cover_the_required_countries_and_states() -> None:
    eu = msgspec.convert({}, EuVat.Settings)
    assert {"DE", "FR", "AT", "NL", "IT", "ES"} <= set(eu.rates)
    assert all({"standard", "reduced"} <= set(eu.rates[c]) for c in eu.rates)
    us = msgspec.convert({}, UsSalesTax.Settings)
    assert {k: us.rates[k] for k in ("CA", "NY", "TX", "WA", "OR")} == {
        "CA": "0.0725", "NY": "0.04", "TX": "0.0625", "WA": "0.065", "OR": "0"}
