"""GDPR/CCPA: export, then erase, with the privacy plugin and a carrier that keeps labels.

After erasure the customer's name, street, email and phone appear nowhere in their
orders, the orders' timelines, the export or the plugins' records, while the
financial record (totals, tax per line) stays as it was.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ordnung.core import Address, CartLine, Engine, PaymentInput, PlaceOrder
from ordnung.plugins.carriers.weight_bands import WeightBands
from ordnung.plugins.payments.sandbox import SandboxGateway
from ordnung.plugins.privacy.gdpr import Privacy, record_consent
from ordnung.plugins.tax.table_tax import TableTax
from tests.support import seed_shop, ship_all

HOME = Address(name="Mia Privatperson", line1="Geheimweg 7", city="Köln", postal_code="50667",
               country="DE", email="mia.privat@example.com", phone="+49 170 5550123")
PERSONAL = ("Mia", "Privatperson", "Geheimweg", "mia.privat", "5550123", "Köln", "50667")


def leaks(data: Any) -> list[str]:
    text = msgspec.json.encode(data).decode()
    return [s for s in PERSONAL if s in text]


async def shop(make_engine: Any) -> Engine:
    engine: Engine = await make_engine(plugins=[
        (SandboxGateway, "sandbox", {}), (TableTax, "table_tax", {}),
        (WeightBands, "weight_bands", {}),
        (Privacy, "privacy", {"controller": "Beispiel GmbH", "contact": "privacy@shop.example",
                              "financial_retention_years": 10})])
    await seed_shop(engine)
    return engine


async def test_export_then_erase_keeps_the_accounts_and_nothing_personal(
        make_engine: Any) -> None:
    engine = await shop(make_engine)
    customer = await engine.customers.create(
        email=HOME.email, name=HOME.name, phone=HOME.phone, addresses=[HOME],
        consents={"newsletter": True, "profiling": False})
    await record_consent(engine, customer.id, "newsletter", True, source="sign-up form")
    await record_consent(engine, customer.id, "profiling", False, source="cookie banner")
    order = await engine.orders.place(PlaceOrder(
        channel="web", customer_id=customer.id, lines=[CartLine(sku="SHIRT-M", quantity=2),
                                                       CartLine(sku="MUG", quantity=1)],
        shipping_address=HOME, billing_address=HOME, shipping_method="weight_bands:parcel",
        payment=PaymentInput(gateway="sandbox", token="tok_success")))
    order = await ship_all(engine, await engine.payments.capture(order.id))
    tracking = order.shipments[0].tracking_number
    label = await engine.fulfilment.label("weight_bands", tracking)
    assert label is not None

    # -- export: everything, with the privacy plugin's part ------------------------------
    export = await engine.customers.export(customer.id)
    assert set(leaks(export)) == set(PERSONAL)
    assert [o["number"] for o in export["orders"]] == [order.number]
    privacy = export["plugins"]["privacy"]
    assert privacy["consents"]["current"] == {"newsletter": True, "profiling": False}
    assert [(c["purpose"], c["granted"], c["source"]) for c in privacy["consents"]["history"]] \
        == [("newsletter", True, "sign-up form"), ("profiling", False, "cookie banner")]
    assert {c["category"] for c in privacy["data_we_keep"]} >= {"account", "orders",
                                                               "delivery", "consents"}
    assert all(c["purpose"] and c["legal_basis"] and c["retention"]
               for c in privacy["data_we_keep"])
    assert "kept for 10 years" in privacy["retention"]
    assert privacy["ccpa"]["sells_personal_information"] is False
    assert privacy["controller"] == {"name": "Beispiel GmbH", "contact": "privacy@shop.example"}
    assert privacy["erased"] is None

    # -- erase ---------------------------------------------------------------------------
    before = await engine.orders.get(order.id)
    erased = await engine.customers.erase(customer.id)
    assert erased.erased

    after = await engine.orders.get(order.id)
    assert leaks(after) == []
    assert leaks(await engine.orders.timeline(order.id)) == []
    # the financial record is untouched
    assert after.totals == before.totals
    assert [(ln.sku, ln.quantity, ln.line_total, ln.tax_rate, ln.tax) for ln in after.lines] \
        == [(ln.sku, ln.quantity, ln.line_total, ln.tax_rate, ln.tax) for ln in before.lines]
    assert after.shipping == before.shipping
    assert [p.captured for p in after.payments] == [p.captured for p in before.payments]
    assert after.shipping_address is not None and after.shipping_address.country == "DE"
    assert after.shipments[0].tracking_number == tracking

    # the label (name and address printed on it) and the plugin's own records are gone
    assert await engine.fulfilment.label("weight_bands", tracking) is None
    store = engine.plugin_store("privacy")
    assert await store.records("consent") == []
    receipt = await store.get("erasure", customer.id)
    assert receipt is not None and receipt["records_deleted"] == 3  # 2 consents, 1 export
    assert leaks(receipt) == []

    again = await engine.customers.export(customer.id)
    assert leaks(again) == []
    assert again["customer"]["erased"] is True
    assert again["orders"][0]["totals"] == msgspec.to_builtins(before.totals)
    assert again["plugins"]["privacy"]["consents"] == {"current": {}, "history": []}
    assert again["plugins"]["privacy"]["erased"]["records_deleted"] == 3


async def test_erasure_leaves_other_customers_alone(make_engine: Any) -> None:
    engine = await shop(make_engine)
    mia = await engine.customers.create(email="mia@example.com", name="Mia")
    max_ = await engine.customers.create(email="max@example.com", name="Max")
    await record_consent(engine, mia.id, "newsletter", True)
    await record_consent(engine, max_.id, "newsletter", True)
    await engine.customers.erase(mia.id)
    left = await engine.plugin_store("privacy").records("consent")
    assert [key.split(":", 1)[0] for key, _, _ in left] == [max_.id]
    export = await engine.customers.export(max_.id)
    assert len(export["plugins"]["privacy"]["consents"]["history"]) == 1


async def test_erasure_also_anonymises_the_customers_carts(make_engine: Any) -> None:
    engine = await shop(make_engine)
    customer = await engine.customers.create(email=HOME.email, name=HOME.name)
    cart = await engine.carts.create(channel="web", customer_id=customer.id, email=HOME.email)
    await engine.carts.set_addresses(cart.id, shipping=HOME)
    assert leaks(await engine.customers.export(customer.id)) != []
    await engine.customers.erase(customer.id)
    assert leaks(await engine.customers.export(customer.id)) == []
    assert leaks(await engine.carts.get(cart.id)) == []
