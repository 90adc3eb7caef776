"""Input at the edge: every kind of bad input is a 422 (or 413) problem naming the field,
and nothing is stored — through the HTTP API, on SQLite and PostgreSQL alike.

Covers the field limits, strict decoding, ISO 3166 codes, the currencies a channel sells
in, pagination cursors, the bounds on lines, units and codes, control characters, and
fields a caller may not set.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from json import dumps
from typing import Any

import pytest

from ordnung.core.errors import ConfigError, PluginError
from ordnung.core.limits import InputLimits
from ordnung.core.plugin_host import validate_settings
from tests.api_support import (
    BERLIN,
    Api,
    api_client,
    api_fixture,  # noqa: F401  (the ``api`` fixture)
    expect,
    expect_problem,
    held,
    order_body,
)

Stored = tuple[int, int, int, int, str]


async def stored(api: Api) -> Stored:
    """What bad input must not change: orders, carts, customers, events, and every cart."""
    counts = []
    for table in ("orders", "carts", "customers", "events"):
        rows = await api.engine.db.fetch(f"SELECT COUNT(*) AS n FROM {table}")
        counts.append(int(rows[0]["n"]))
    carts = await api.engine.db.fetch("SELECT id, data FROM carts ORDER BY id")
    return counts[0], counts[1], counts[2], counts[3], json.dumps(
        [(r["id"], str(r["data"])) for r in carts])


def refused(response: Any, field: str, kind: str = "validation") -> dict[str, Any]:
    """A 422 problem of ``kind`` naming ``field``."""
    problem = expect_problem(response, 422, kind)
    assert problem.get("field") == field, problem
    return problem


async def guest_cart(api: Api, shop: dict[str, str]) -> tuple[str, dict[str, str]]:
    cart = await api.new_cart(shop)
    return cart["id"], api.holding(shop, cart["id"])


# ------------------------------------------------------------------ 1. field lengths


async def test_field_lengths_are_bounded_everywhere(api: Api) -> None:
    shop = await api.storefront("web")
    cart_id, holding = await guest_cart(api, shop)
    before = await stored(api)
    long_email = "a" * 100_000 + "@example.com"
    # a 100 kB e-mail: under the body limit, over the field limit
    refused(await api.client.post("/carts", json={"email": long_email}, headers=shop),
            "email")
    refused(await api.client.put(f"/carts/{cart_id}/addresses", json={"email": long_email},
                                 headers=holding), "email")
    refused(await api.post_order(shop, order_body(("MUG", 1), email=long_email)), "email")
    # a 5 MB string is stopped by the body limit before anything decodes it
    expect_problem(await api.post_order(shop, order_body(
        ("MUG", 1), metadata={"blob": "x" * 5_000_000})), 413, "request-too-large")
    expect_problem(await api.client.post("/carts", json={"email": "x" * 5_000_000},
                                         headers=shop), 413, "request-too-large")
    # metadata: value size, key length, number of keys
    refused(await api.post_order(shop, order_body(("MUG", 1), metadata={"a": "x" * 2001})),
            "metadata.a")
    refused(await api.post_order(shop, order_body(("MUG", 1), metadata={"k" * 65: "v"})),
            "metadata." + "k" * 65)
    refused(await api.post_order(shop, order_body(
        ("MUG", 1), metadata={f"k{i}": "v" for i in range(51)})), "metadata")
    # names and address fields, in carts, orders and customers
    refused(await api.client.put(f"/carts/{cart_id}/addresses", json={
        "shipping": {**BERLIN, "line1": "Heidestraße " + "7" * 200}}, headers=holding),
        "shipping.line1")
    refused(await api.post_order(shop, order_body(
        ("MUG", 1), address={**BERLIN, "name": "E" * 201})), "shipping_address.name")
    refused(await api.client.post("/customers", json={
        "email": "kim@example.com", "name": "K" * 201}, headers=api.admin), "name")
    refused(await api.client.post("/customers", json={
        "email": "kim@example.com", "addresses": [{**BERLIN, "city": "B" * 201}]},
        headers=api.admin), "addresses[0].city")
    refused(await api.client.post("/accounts", json={
        "email": long_email, "password": "a long enough password"}, headers=shop), "email")
    assert await stored(api) == before

    order = await api.place_order(shop, order_body(("MUG", 1), metadata={"a": "x" * 2000}))
    refused(await api.client.post(f"/orders/{order['id']}/notes", json={"note": "n" * 2001},
                                  headers=api.admin), "note")
    noted = expect(await api.client.post(f"/orders/{order['id']}/notes", json={
        "note": "n" * 2000}, headers=api.admin), 200)
    assert noted["id"] == order["id"]


async def test_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDNUNG_MAX_EMAIL_LENGTH", "100")
    monkeypatch.setenv("ORDNUNG_MAX_LINES_PER_ORDER", "7")
    limits = InputLimits.from_env()
    assert limits.max_email_length == 100 and limits.max_lines_per_order == 7
    assert limits.max_name_length == InputLimits().max_name_length
    monkeypatch.setenv("ORDNUNG_MAX_CODES_PER_CART", "0")
    with pytest.raises(ConfigError, match="ORDNUNG_MAX_CODES_PER_CART"):
        InputLimits.from_env()
    monkeypatch.setenv("ORDNUNG_MAX_CODES_PER_CART", "many")
    with pytest.raises(ConfigError, match="ORDNUNG_MAX_CODES_PER_CART"):
        InputLimits.from_env()


# ------------------------------------------------------------------ 2. strict decoding


async def test_wrong_types_and_empty_strings_are_refused(api: Api) -> None:
    shop = await api.storefront("web")
    cart_id, holding = await guest_cart(api, shop)
    before = await stored(api)
    refused(await api.post_order(shop, {**order_body(), "lines": [
        {"sku": "MUG", "quantity": "1"}]}), "lines[0].quantity")
    refused(await api.client.post(f"/carts/{cart_id}/lines", json={
        "sku": "MUG", "quantity": "1"}, headers=holding), "quantity")
    refused(await api.client.put(f"/carts/{cart_id}/lines/MUG", json={"quantity": 1.0},
                                 headers=holding), "quantity")
    refused(await api.client.post(f"/carts/{cart_id}/lines", json={"sku": 42},
                                  headers=holding), "sku")
    refused(await api.client.post("/carts", json={"currency": ""}, headers=shop), "currency")
    refused(await api.post_order(shop, order_body(("MUG", 1), currency="")), "currency")
    refused(await api.post_order(shop, order_body(("MUG", 1), channel="")), "channel")
    refused(await api.post_order(shop, {**order_body(), "lines": [
        {"sku": "", "quantity": 1}]}), "lines[0].sku")
    refused(await api.post_order(shop, order_body(("MUG", 1), address={**BERLIN, "name": ""})),
            "shipping_address.name")
    refused(await api.post_order(shop, order_body(("MUG", 1), email=7)),  # type: ignore[arg-type]
            "email")
    refused(await api.post_order(shop, order_body(("MUG", 1), metadata={"n": 1})), "metadata[...]")
    refused(await api.client.post(f"/carts/{cart_id}/codes", json={"code": ""},
                                  headers=holding), "code")
    refused(await api.client.post("/customers", json={"email": ""}, headers=api.admin),
            "email")
    assert await stored(api) == before


# ------------------------------------------------------------------ 3. ISO 3166


async def test_country_and_region_codes_are_iso_3166_everywhere(api: Api) -> None:
    shop = await api.storefront("web")
    cart_id, holding = await guest_cart(api, shop)
    before = await stored(api)
    for address, field in (({**BERLIN, "country": "XX"}, "country"),
                           ({**BERLIN, "country": "de"}, "country"),
                           ({**BERLIN, "country": "DEU"}, "country"),
                           ({**BERLIN, "country": "US", "region": "ZZ"}, "region"),
                           ({**BERLIN, "region": "CA"}, "region")):  # CA is not German
        refused(await api.client.put(f"/carts/{cart_id}/addresses", json={
            "shipping": address}, headers=holding), f"shipping.{field}")
        refused(await api.client.put(f"/carts/{cart_id}/addresses", json={
            "billing": address}, headers=holding), f"billing.{field}")
        refused(await api.post_order(shop, order_body(("MUG", 1), address=address)),
                f"shipping_address.{field}")
        refused(await api.client.post("/customers", json={
            "email": "kim@example.com", "addresses": [address]}, headers=api.admin),
            f"addresses[0].{field}")
    assert await stored(api) == before
    # real codes pass: a subdivision as the part after the country's hyphen
    expect(await api.client.put(f"/carts/{cart_id}/addresses", json={
        "shipping": {**BERLIN, "region": "BE"},
        "billing": {**BERLIN, "country": "US", "region": "CA"}}, headers=holding), 200)


def test_plugins_take_their_country_codes_from_iso_3166() -> None:
    from ordnung.plugins.carriers.flat_rate import FlatRate
    from ordnung.plugins.carriers.free_shipping import FreeShipping
    from ordnung.plugins.carriers.store_pickup import StorePickup
    from ordnung.plugins.carriers.weight_bands import WeightBands
    from ordnung.plugins.regional.shipping_restrictions import ShippingRestrictions
    from ordnung.plugins.tax.eu_vat import EuVat
    from ordnung.plugins.tax.table_tax import TableTax
    from ordnung.plugins.tax.us_sales_tax import UsSalesTax

    band = {"up_to_grams": 1000, "prices": {"EUR": 100}}
    cases: list[tuple[Any, dict[str, Any]]] = [
        (FlatRate, {"countries": ["DE", "XX"]}),
        (FreeShipping, {"countries": ["UK"]}),  # the ISO code is GB
        (StorePickup, {"points": [{"id": "p", "name": "P", "line1": "1", "city": "C",
                                   "country": "EU"}]}),
        (WeightBands, {"zones": [{"name": "z", "countries": ["QQ"], "bands": [band]}]}),
        (TableTax, {"rates": {"US-ZZ": {"standard": "0.05"}}}),
        (EuVat, {"rates": {"XX": {"standard": "0.2"}}}),
        (UsSalesTax, {"rates": {"ZZ": "0.05"}}),
        (ShippingRestrictions, {"rules": [{"id": "r", "reason": "no", "deny": ["US-ZZ"]}]}),
    ]
    for plugin, raw in cases:
        with pytest.raises(PluginError, match="ISO 3166"):
            validate_settings(plugin.__name__, plugin.Settings, raw)
    # real codes, subdivisions and the wildcard pass
    validate_settings("t", TableTax.Settings, {"rates": {"US-CA": {"standard": "0.07"}}})
    validate_settings("w", WeightBands.Settings, {"zones": [
        {"name": "all", "countries": ["*"], "bands": [band]}]})
    validate_settings("s", ShippingRestrictions.Settings, {"rules": [
        {"id": "r", "reason": "no", "deny": ["US-CA", "CH"]}]})


# ------------------------------------------------------------------ 4. channel currencies


async def test_a_cart_or_order_in_a_currency_the_channel_does_not_sell_in_is_refused(
        api: Api) -> None:
    shop = await api.storefront("web")
    before = await stored(api)
    for currency in ("JPY", "GBP"):
        problem = refused(await api.client.post("/carts", json={"currency": currency},
                                                headers=shop), "currency", "currency-not-sold")
        assert problem["currencies"] == ["EUR", "USD"]
        refused(await api.post_order(shop, order_body(("SHIRT-M", 1), currency=currency)),
                "currency", "currency-not-sold")
    assert await stored(api) == before
    # the channel's other currency is sold
    usd = await api.new_cart(shop, {"currency": "USD"})
    assert usd["currency"] == "USD"
    # a channel declares real currencies only; then it sells in them
    refused(await api.client.put("/channels/pos", json={
        "id": "pos", "name": "POS", "currency": "EUR", "currencies": ["EUR", "EURO"]},
        headers=api.admin), "currencies")
    expect(await api.client.put("/channels/pos", json={
        "id": "pos", "name": "POS", "currency": "EUR", "currencies": ["GBP"]},
        headers=api.admin), 200)
    pos = await api.storefront("pos")
    assert (await api.new_cart(pos, {"currency": "GBP"}))["currency"] == "GBP"
    refused(await api.client.post("/carts", json={"currency": "USD"}, headers=pos),
            "currency", "currency-not-sold")


# ------------------------------------------------------------------ 5. cursors


async def test_an_invalid_cursor_is_refused_on_every_list(api: Api) -> None:
    shop = await api.storefront("web")
    first = await api.place_order(shop, order_body(("MUG", 1)))
    await api.place_order(shop, order_body(("MUG", 1)))
    await api.customer()
    for path in ("/orders", "/customers", "/catalogue/products", "/inventory/movements",
                 "/admin/reactions", "/shipments", "/returns", "/fulfilment/queue"):
        for cursor in ("garbage", "ord_", "' OR 1=1 --", "zzzzzzzzzzzz"):
            refused(await api.client.get(path, params={"after": cursor}, headers=api.admin),
                    "after")
    # a real cursor pages on
    page = expect(await api.client.get("/orders", params={"limit": 1}, headers=api.admin),
                  200)
    rest = expect(await api.client.get("/orders", params={"after": page["next"]},
                                       headers=api.admin), 200)
    assert [o["id"] for o in rest["items"]] == [first["id"]]
    products = expect(await api.client.get("/catalogue/products", params={"limit": 1},
                                           headers=api.admin), 200)
    expect(await api.client.get("/catalogue/products", params={"after": products["next"]},
                                headers=api.admin), 200)


# ------------------------------------------------------------------ 6. bounds


@pytest.fixture(name="small")
async def small_limits(database_url: str) -> AsyncIterator[Api]:
    """The API with small bounds, so that reaching them takes a few requests."""
    limits = InputLimits(max_lines_per_cart=2, max_lines_per_order=2, max_quantity_per_line=5,
                         max_codes_per_cart=2)
    async with held(api_client(database_url, limits=limits)) as running:
        yield running


async def test_lines_units_and_codes_are_bounded(api: Api) -> None:
    shop = await api.storefront("web")
    before = await stored(api)
    # 100,000 lines: the body limit answers first
    huge = order_body(*[("MUG", 1)] * 100_000)
    expect_problem(await api.post_order(shop, huge), 413, "request-too-large")
    # 201 lines fit in the body but not in an order
    refused(await api.post_order(shop, order_body(*[("MUG", 1)] * 201)), "lines")
    refused(await api.post_order(shop, order_body(("MUG", 10_001))), "lines[0].quantity")
    # lines of one SKU merge: their sum is bounded too
    refused(await api.post_order(shop, order_body(("MUG", 6_000), ("MUG", 6_000))), "lines")
    refused(await api.post_order(shop, order_body(
        ("MUG", 1), codes=[f"CODE{i}" for i in range(21)])), "codes")
    assert await stored(api) == before


async def test_a_cart_is_bounded_however_it_grows(small: Api) -> None:
    api = small
    shop = await api.storefront("web")
    cart_id, holding = await guest_cart(api, shop)
    for sku in ("MUG", "SHIRT-M"):
        expect(await api.client.post(f"/carts/{cart_id}/lines", json={"sku": sku},
                                     headers=holding), 200)
    expect(await api.client.post(f"/carts/{cart_id}/lines", json={"sku": "MUG", "quantity": 4},
                                 headers=holding), 200)
    before = await stored(api)
    refused(await api.client.post(f"/carts/{cart_id}/lines", json={"sku": "POSTER"},
                                  headers=holding), "lines")
    refused(await api.client.post(f"/carts/{cart_id}/lines", json={"sku": "MUG"},
                                  headers=holding), "quantity")  # 5 + 1 units
    refused(await api.client.put(f"/carts/{cart_id}/lines/MUG", json={"quantity": 6},
                                 headers=holding), "quantity")
    for code in ("A", "B"):
        await api.client.post(f"/carts/{cart_id}/codes", json={"code": code}, headers=holding)
    after_codes = await stored(api)
    refused(await api.client.post(f"/carts/{cart_id}/codes", json={"code": "C"},
                                  headers=holding), "codes")
    assert await stored(api) == after_codes
    assert before[0] == after_codes[0]
    refused(await api.post_order(shop, order_body(("MUG", 1), ("SHIRT-M", 1), ("POSTER", 1))),
            "lines")
    refused(await api.post_order(shop, order_body(("MUG", 3), ("MUG", 3))), "lines")


# ------------------------------------------------------------------ 7. control characters

class Escaped:
    """Requests whose JSON escapes every non-ASCII character (``\\ud800`` included, which
    httpx's own encoder cannot send)."""

    def __init__(self, api: Api) -> None:
        self.client = api.client

    async def post(self, path: str, *, json: Any, headers: dict[str, str]) -> Any:
        return await self.send("POST", path, json, headers)

    async def put(self, path: str, *, json: Any, headers: dict[str, str]) -> Any:
        return await self.send("PUT", path, json, headers)

    async def send(self, method: str, path: str, body: Any, headers: dict[str, str]) -> Any:
        return await self.client.request(method, path, content=dumps(body).encode(),
                                         headers={**headers,
                                                  "Content-Type": "application/json"})


CONTROL = ["\x00", "\x01", "\x1b", "\x7f", "\x85"]


async def test_control_characters_are_refused_in_every_stored_string(api: Api) -> None:
    raw = Escaped(api)
    shop = await api.storefront("web")
    cart_id, holding = await guest_cart(api, shop)
    order = await api.place_order(shop, order_body(("MUG", 1)))
    before = await stored(api)
    for char in [*CONTROL, "\n", "\t"]:
        bad = f"Erika{char}Mustermann"
        refused(await raw.post("/carts", json={"email": f"a{char}@example.com"},
                               headers=shop), "email")
        refused(await raw.put(f"/carts/{cart_id}/addresses", json={
            "shipping": {**BERLIN, "name": bad}}, headers=holding), "shipping.name")
        refused(await raw.post("/orders", headers=shop, json=order_body(
            ("MUG", 1), address={**BERLIN, "line1": bad})), "shipping_address.line1")
        refused(await raw.post("/orders", headers=shop, json=order_body(
            ("MUG", 1), metadata={f"k{char}": "v"})), "metadata[...]")
        refused(await raw.post("/customers", json={
            "email": "kim@example.com", "name": bad}, headers=api.admin), "name")
        refused(await raw.post("/customers", json={
            "email": "kim@example.com", "tags": [bad]}, headers=api.admin), "tags[0]")
        refused(await raw.post(f"/carts/{cart_id}/codes", json={"code": bad},
                               headers=holding), "code")
    for char in CONTROL:
        refused(await raw.post("/orders", headers=shop, json=order_body(
            ("MUG", 1), metadata={"k": f"v{char}"})), "metadata.k")
        refused(await raw.post(f"/orders/{order['id']}/notes", json={
            "note": f"call{char}back"}, headers=api.admin), "note")
    # parameters are only looked up, but SQLite would look up a NUL that PostgreSQL
    # refuses: both refuse it, naming the parameter
    refused(await api.client.get("/orders", params={"channel": "web\x00"},
                                 headers=api.admin), "channel")
    refused(await api.client.get("/catalogue/availability", params={"sku": ["MUG", "M\x00G"]},
                                 headers=shop), "sku")
    refused(await api.client.get(f"/carts/{cart_id}%00", headers=holding), "cart_id")
    refused(await api.client.delete(f"/carts/{cart_id}/lines/MUG%1B", headers=holding), "sku")
    # a lone surrogate is not even JSON that decodes to text
    expect_problem(await raw.post("/orders", headers=shop, json=order_body(
        ("MUG", 1), metadata={"k": "v\ud800"})), 422, "validation")
    assert await stored(api) == before
    # line breaks and tabs where they make sense: notes, reasons, metadata values
    noted = expect(await raw.post(f"/orders/{order['id']}/notes", json={
        "note": "call back\n\tafter 5"}, headers=api.admin), 200)
    assert noted["id"] == order["id"]
    placed = await api.place_order(shop, order_body(("MUG", 1), metadata={
        "gift_message": "Happy birthday!\nLove, Kim"}, address={
        **BERLIN, "name": "Zoë Ünal 東京"}))
    assert placed["metadata"]["gift_message"] == "Happy birthday!\nLove, Kim"
    assert placed["shipping_address"]["name"] == "Zoë Ünal 東京"


async def test_the_catalogue_is_checked_like_everything_else(api: Api) -> None:
    variant = {"sku": "CUP", "product_id": "cup", "name": "Cup", "prices": {"EUR": 900}}
    product = {"id": "cup", "name": "Cup", "variants": [variant]}
    for bad, field in (({"description": "x" * 10_001}, "description"),
                       ({"description": "nul\x00"}, "description"),
                       ({"name": "Cup\x1b[31m"}, "name"),
                       ({"variants": [{**variant, "sku": ""}]}, "variants[0].sku"),
                       ({"variants": [{**variant, "attributes": {"colour": "r\x00d"}}]},
                        "variants[0].attributes.colour")):
        refused(await api.client.put("/catalogue/products/cup", json={**product, **bad},
                                     headers=api.admin), field)
    expect_problem(await api.client.get("/catalogue/products/cup", headers=api.admin), 404,
                   "not-found")
    saved = expect(await api.client.put("/catalogue/products/cup", json={
        **product, "description": "Stoneware.\n\nDishwasher safe."}, headers=api.admin), 200)
    assert saved["description"] == "Stoneware.\n\nDishwasher safe."


# ------------------------------------------------------------------ 8. fields a caller may not set


async def test_a_field_the_caller_may_not_set_is_refused_by_name(api: Api) -> None:
    shop = await api.storefront("web")
    customer, me = await api.customer("eve@example.com", "Eve")
    before = await stored(api)
    refused(await api.client.patch(f"/customers/{customer['id']}", json={"tags": ["vip"]},
                                   headers=me), "tags")
    refused(await api.client.patch("/customers/me", json={"name": "Eve", "tags": []},
                                   headers=me), "tags")
    for field, value in (("price", 1), ("total", 0), ("status", "fulfilled")):
        refused(await api.post_order(shop, {**order_body(("MUG", 1)), field: value}), field)
    refused(await api.post_order(shop, {**order_body(), "lines": [
        {"sku": "MUG", "quantity": 1, "unit_price": 1}]}), "lines[0].unit_price")
    assert await stored(api) == before
    assert expect(await api.client.get("/customers/me", headers=me), 200)["tags"] == []
    # staff may
    tagged = expect(await api.client.patch(f"/customers/{customer['id']}", json={
        "tags": ["vip"]}, headers=api.admin), 200)
    assert tagged["tags"] == ["vip"]
