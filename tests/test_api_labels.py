"""The carrier's printable label is fetched over HTTP as the document it made at shipping.

The route asks the carrier plugin for it (``ordnung_label_document``), so a third-party
carrier serves its labels as the built-in ones do, however it keeps them.
"""

from __future__ import annotations

from typing import Any

from ordnung.plugin import Label, Order, PricingContext, Shipment, ShippingQuote, hookimpl
from ordnung.plugins.carriers.weight_bands import WeightBands
from tests.api_support import Api, api_client, order_body
from tests.support import builtin_plugins

ZONES: dict[str, Any] = {"zones": [{"name": "home", "countries": ["DE"], "transit_days": 1,
                                    "bands": [{"up_to_grams": 10_000, "prices": {"EUR": 400}}]}]}


async def shipped(api: Api, shipping_method: str) -> tuple[dict[str, Any], dict[str, str],
                                                            dict[str, str]]:
    """An order placed, captured, picked, packed and shipped with ``shipping_method``:
    its first shipment, a fulfilment key and the storefront key."""
    shop = await api.storefront("web")
    order = await api.place_order(shop, order_body(("MUG", 1), shipping_method=shipping_method))
    staff = await api.admin_with("payments", "fulfilment")
    c = api.client
    assert (await c.post(f"/orders/{order['id']}/payments/capture", json={},
                         headers=staff)).status_code == 200
    order = (await c.post(f"/orders/{order['id']}/shipments", json={}, headers=staff)).json()
    base = f"/orders/{order['id']}/shipments/{order['shipments'][0]['id']}"
    assert (await c.post(f"{base}/pick", json={}, headers=staff)).status_code == 200
    assert (await c.post(f"{base}/pack", json={"scans": ["MUG"]},
                         headers=staff)).status_code == 200
    answer = await c.post(f"{base}/ship", json={}, headers=staff)
    assert answer.status_code == 200, answer.text
    return answer.json()["shipments"][0], staff, shop


async def test_the_label_of_a_shipped_order_is_a_pdf_behind_fulfilment_keys(
        database_url: str) -> None:
    plugins = [*builtin_plugins(), (WeightBands, "weight_bands", ZONES)]
    async with api_client(database_url, plugins=plugins) as api:
        shipment, staff, shop = await shipped(api, "weight_bands:parcel")
        label_url = shipment["label_url"]
        tracking = shipment["tracking_number"]
        assert label_url == f"/labels/weight_bands/{tracking}"
        c = api.client
        label = await c.get(label_url, headers=staff)
        assert label.status_code == 200
        assert label.headers["content-type"].startswith("application/pdf")
        assert label.content.startswith(b"%PDF")
        assert (await c.get(label_url, headers=shop)).status_code == 403
        missing = await c.get("/labels/weight_bands/NOPE", headers=staff)
        assert missing.status_code == 404


class InkCarrier:
    """A third party's carrier: it keeps its labels in its own way (here, in memory)."""

    def __init__(self) -> None:
        self.labels: dict[str, bytes] = {}

    @hookimpl
    def ordnung_shipping_quotes(self, ctx: PricingContext) -> list[ShippingQuote]:
        return [ShippingQuote(service="parcel", name="Ink parcel", price=300)]

    @hookimpl
    def ordnung_create_label(self, order: Order, shipment: Shipment) -> Label:
        tracking = f"INK{len(self.labels) + 1:08d}"
        self.labels[tracking] = b"%PDF-1.4 ink label for " + order.number.encode()
        return Label(tracking_number=tracking, label_url=f"/labels/ink/{tracking}")

    @hookimpl
    def ordnung_label_document(self, tracking_number: str) -> bytes | None:
        return self.labels.get(tracking_number)


async def test_a_third_party_carrier_serves_its_own_labels(database_url: str) -> None:
    """Before, the route read the built-in carriers' store format: any other carrier's
    label was a 404 although its shipment named the URL."""
    plugins = [*builtin_plugins(), (InkCarrier, "ink", {})]
    async with api_client(database_url, plugins=plugins) as api:
        shipment, staff, _ = await shipped(api, "ink:parcel")
        assert shipment["label_url"] == f"/labels/ink/{shipment['tracking_number']}"
        label = await api.client.get(shipment["label_url"], headers=staff)
        assert label.status_code == 200, label.text
        assert label.content.startswith(b"%PDF-1.4 ink label for ")
        for other in ("/labels/ink/INK99999999", "/labels/flat_rate/INK00000001",
                      "/labels/nobody/INK00000001"):
            missing = await api.client.get(other, headers=staff)
            assert missing.status_code == 404, other
            assert missing.json()["type"].endswith("not-found"), missing.json()
