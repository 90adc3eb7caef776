"""The carrier's printable label is fetched over HTTP as the PDF it made at shipping."""

from __future__ import annotations

from typing import Any

from ordnung.plugins.carriers.weight_bands import WeightBands
from tests.api_support import api_client, order_body
from tests.support import builtin_plugins

ZONES: dict[str, Any] = {"zones": [{"name": "home", "countries": ["DE"], "transit_days": 1,
                                    "bands": [{"up_to_grams": 10_000, "prices": {"EUR": 400}}]}]}


async def test_the_label_of_a_shipped_order_is_a_pdf_behind_fulfilment_keys(
        database_url: str) -> None:
    plugins = [*builtin_plugins(), (WeightBands, "weight_bands", ZONES)]
    async with api_client(database_url, plugins=plugins) as api:
        shop = await api.storefront("web")
        order = await api.place_order(shop, order_body(
            ("MUG", 1), shipping_method="weight_bands:parcel"))
        staff = await api.admin_with("payments", "fulfilment")
        c = api.client
        assert (await c.post(f"/orders/{order['id']}/payments/capture", json={},
                             headers=staff)).status_code == 200
        order = (await c.post(f"/orders/{order['id']}/shipments", json={},
                              headers=staff)).json()
        shipment = order["shipments"][0]
        base = f"/orders/{order['id']}/shipments/{shipment['id']}"
        assert (await c.post(f"{base}/pick", json={}, headers=staff)).status_code == 200
        assert (await c.post(f"{base}/pack", json={"scans": ["MUG"]},
                             headers=staff)).status_code == 200
        shipped = (await c.post(f"{base}/ship", json={}, headers=staff)).json()
        label_url = shipped["shipments"][0]["label_url"]
        tracking = shipped["shipments"][0]["tracking_number"]
        assert label_url == f"/labels/weight_bands/{tracking}"
        label = await c.get(label_url, headers=staff)
        assert label.status_code == 200
        assert label.headers["content-type"].startswith("application/pdf")
        assert label.content.startswith(b"%PDF")
        assert (await c.get(label_url, headers=shop)).status_code == 403
        missing = await c.get("/labels/weight_bands/NOPE", headers=staff)
        assert missing.status_code == 404
