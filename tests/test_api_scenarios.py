"""The eleven SPEC "Scenarios from the field", each through HTTP against the real app.

Every request carries the key a real caller would have: a storefront key of
its channel for shopping, a customer token for a customer's own views, and
admin keys holding only the scopes the member of staff needs. Plugins a
scenario needs (a risk rule, a VIP priority rule, a confirmation recorder)
are defined here and registered through ``api_client(plugins=...)``.

The engine-level twins of some of these live in ``test_field_scenarios.py``,
``test_fulfilment.py`` and ``test_carts_and_customers.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from datetime import date
from typing import Any

import httpx

from ordnung.core import hookimpl
from ordnung.core.domain.events import Event
from ordnung.core.domain.orders import Order
from ordnung.core.domain.pricing import RiskAssessment
from ordnung.core.domain.shipments import Label, Shipment
from ordnung.plugins.carriers.flat_rate import FlatRate
from ordnung.plugins.channels.channel_log import ChannelLog
from ordnung.plugins.payments.sandbox import SIGNATURE_HEADER, SandboxGateway, sign
from tests.api_support import (
    BASE_URL,
    BERLIN,
    Api,
    api_client,
    expect,
    expect_problem,
    order_body,
)
from tests.support import GIFT_THRESHOLD, builtin_plugins

#: the sandbox gateway's default webhook secret (SandboxGateway.Settings)
SANDBOX_SECRET = "sandbox-secret"


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
async def availability(api: Api, headers: dict[str, str], *skus: str) -> dict[str, int]:
    """``GET /catalogue/availability``: the one number every channel sees."""
    result: dict[str, int] = expect(await api.client.get(
        "/catalogue/availability", params={"sku": list(skus)}, headers=headers), 200)
    return result


async def timeline(api: Api, order_id: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    body = expect(await api.client.get(f"/orders/{order_id}/timeline", headers=headers), 200)
    items: list[dict[str, Any]] = body["items"]
    return items


async def capture(api: Api, staff: dict[str, str], order_id: str) -> dict[str, Any]:
    result: dict[str, Any] = expect(await api.client.post(
        f"/orders/{order_id}/payments/capture", json={}, headers=staff), 200)
    return result


async def ship_everything(api: Api, warehouse: dict[str, str], order_id: str
                          ) -> dict[str, Any]:
    """Create shipments for everything open, then pick, pack (scanning SKUs) and ship each."""
    order: dict[str, Any] = expect(await api.client.post(
        f"/orders/{order_id}/shipments", json={}, headers=warehouse), 201)
    base = f"/orders/{order_id}/shipments"
    for shipment in [s for s in order["shipments"] if s["status"] == "pending"]:
        sid = shipment["id"]
        expect(await api.client.post(f"{base}/{sid}/pick", headers=warehouse), 200)
        scans = [sl["sku"] for sl in shipment["lines"] for _ in range(sl["quantity"])]
        expect(await api.client.post(f"{base}/{sid}/pack", json={"scans": scans},
                                     headers=warehouse), 200)
        order = expect(await api.client.post(f"{base}/{sid}/ship", json={},
                                             headers=warehouse), 200)
    return order


def gift_lines(cart: dict[str, Any]) -> list[tuple[str, int, int]]:
    """(sku, quantity, unit price) of the priced cart's gift lines."""
    return [(ln["sku"], ln["quantity"], ln["unit_price"])
            for ln in cart["priced"]["lines"] if ln["gift"]]


def webhook_request(reference: str, outcome: str, *, secret: str = SANDBOX_SECRET,
                    ) -> tuple[bytes, dict[str, str]]:
    """A sandbox gateway webhook body and its signature header."""
    body = json.dumps({"reference": reference, "outcome": outcome}).encode()
    return body, {SIGNATURE_HEADER: sign(secret, body), "Content-Type": "application/json"}


# ---------------------------------------------------------------------------------------------
# scenario 1: one system of record for every channel
# ---------------------------------------------------------------------------------------------
async def test_scenario_1_every_channel_sees_and_is_told_the_one_availability(
        database_url: str) -> None:
    async with api_client(database_url) as api:
        etsy, ebay = await api.storefront("etsy"), await api.storefront("ebay")
        web, pos = await api.storefront("web"), await api.storefront("pos")
        for _ in range(6):
            await api.place_order(etsy, order_body(("SHIRT-M", 1), channel="etsy"))
        for quantity in (4, 6):
            await api.place_order(ebay, order_body(("SHIRT-M", quantity), channel="ebay"))
        # a storefront key sells on its own channel only
        expect_problem(await api.post_order(etsy, order_body(("SHIRT-M", 1), channel="ebay")),
                       403, "forbidden")

        for shop in (etsy, ebay, web, pos):
            assert await availability(api, shop, "SHIRT-M") == {"SHIRT-M": 484}
        plugin = api.engine.host.pm.get_plugin("channel_log")
        assert isinstance(plugin, ChannelLog)
        assert {channel: skus["SHIRT-M"] for channel, skus in plugin.available.items()} == {
            "web": 484, "etsy": 484, "ebay": 484, "pos": 484}

        # the orders carry their channel
        orders = expect(await api.client.get("/orders", params={"limit": 100},
                                             headers=await api.admin_with("orders")), 200)
        by_channel: dict[str, int] = {}
        for order in orders["items"]:
            by_channel[order["channel"]] = by_channel.get(order["channel"], 0) + sum(
                line["quantity"] for line in order["lines"] if line["sku"] == "SHIRT-M")
        assert by_channel == {"etsy": 6, "ebay": 10}


# ---------------------------------------------------------------------------------------------
# scenario 2: a complimentary gift at the spending threshold
# ---------------------------------------------------------------------------------------------
async def test_scenario_2_gift_line_follows_the_threshold_in_a_cart(database_url: str) -> None:
    async with api_client(database_url) as api:
        shop = await api.storefront("web")
        cart = await api.new_cart(shop, {"email": "erika@example.com"})
        cart_url = f"/carts/{cart['id']}"
        shop = api.holding(shop, cart["id"])  # the guest cart's token goes with every call
        assert cart["channel"] == "web"

        cart = expect(await api.client.post(f"{cart_url}/lines",
                                            json={"sku": "POSTER", "quantity": 2},
                                            headers=shop), 200)  # EUR 80.00
        assert cart["priced"]["totals"]["subtotal"] == 8000
        assert gift_lines(cart) == []
        steps = expect(await api.client.get(f"{cart_url}/explanation", headers=shop), 200)
        assert [s["message"] for s in steps if s["source"] == "free_gift"] == [
            "spend EUR 20.00 more for a free tote bag"]

        cart = expect(await api.client.post(f"{cart_url}/lines",
                                            json={"sku": "MUG", "quantity": 2},
                                            headers=shop), 200)  # EUR 104.00
        assert cart["priced"]["totals"]["subtotal"] >= GIFT_THRESHOLD
        assert gift_lines(cart) == [("GIFT-TOTE", 1, 0)]
        gift = next(ln for ln in cart["priced"]["lines"] if ln["gift"])
        assert gift["source"] == "free_gift"
        assert cart["priced"]["totals"]["subtotal"] == 10_400  # the gift costs nothing
        steps = expect(await api.client.get(f"{cart_url}/explanation", headers=shop), 200)
        assert not [s for s in steps if s["source"] == "free_gift" and "more" in s["message"]]

        # removing an item takes the cart below the threshold: the gift leaves
        cart = expect(await api.client.delete(f"{cart_url}/lines/MUG", headers=shop), 200)
        assert cart["priced"]["totals"]["subtotal"] == 8000
        assert gift_lines(cart) == []
        assert [ln["sku"] for ln in cart["lines"]] == ["POSTER"]
        steps = expect(await api.client.get(f"{cart_url}/explanation", headers=shop), 200)
        assert [s["message"] for s in steps if s["source"] == "free_gift"] == [
            "spend EUR 20.00 more for a free tote bag"]

        # back above it: exactly one gift, and placing the cart reserves its stock
        cart = expect(await api.client.put(f"{cart_url}/lines/MUG", json={"quantity": 2},
                                           headers=shop), 200)
        assert gift_lines(cart) == [("GIFT-TOTE", 1, 0)]
        expect(await api.client.put(f"{cart_url}/addresses", json={"shipping": BERLIN},
                                    headers=shop), 200)
        expect(await api.client.put(f"{cart_url}/shipping-method",
                                    json={"method": "flat_rate:standard"}, headers=shop), 200)
        order = expect(await api.client.post(
            f"{cart_url}/order", json={"payment": {"gateway": "sandbox", "token": "tok_success"}},
            headers=shop), 201)
        assert order["status"] == "processing"
        assert [(ln["sku"], ln["gift"]) for ln in order["lines"]] == [
            ("POSTER", False), ("MUG", False), ("GIFT-TOTE", True)]
        assert await availability(api, shop, "GIFT-TOTE", "POSTER") == {
            "GIFT-TOTE": 9, "POSTER": 18}


# ---------------------------------------------------------------------------------------------
# scenario 3: no fulfilment before the payment is secured
# ---------------------------------------------------------------------------------------------
async def _refused_fulfilment(api: Api, warehouse: dict[str, str], order_id: str) -> None:
    """Creating a shipment answers 409 illegal-transition and changes nothing."""
    before = await api.order(order_id)
    problem = expect_problem(await api.client.post(f"/orders/{order_id}/shipments", json={},
                                                   headers=warehouse), 409,
                             "illegal-transition")
    assert problem["machine"] == "order"
    assert problem["current_state"] == before["status"]
    after = await api.order(order_id)
    assert after["shipments"] == [] and after["version"] == before["version"]
    queue = expect(await api.client.get("/fulfilment/queue", headers=warehouse), 200)
    assert order_id not in [o["id"] for o in queue["items"]]


async def test_scenario_3_a_declined_order_cannot_be_fulfilled(database_url: str) -> None:
    async with api_client(database_url) as api:
        shop, warehouse = await api.storefront("web"), await api.admin_with("fulfilment")
        problem = expect_problem(await api.post_order(shop, order_body(
            ("SHIRT-M", 2), token="tok_decline")), 402, "payment-declined")
        assert problem["reason"] == "insufficient funds"
        assert problem["order_status"] == "cancelled"
        order = await api.order(problem["order_id"])
        assert order["status"] == "cancelled"
        assert [p["status"] for p in order["payments"]] == ["failed"]
        await _refused_fulfilment(api, warehouse, order["id"])
        assert await availability(api, shop, "SHIRT-M") == {"SHIRT-M": 500}  # nothing held


async def test_scenario_3_an_async_card_payment_is_fulfilled_only_after_the_webhook(
        database_url: str) -> None:
    async with api_client(database_url) as api:
        shop, warehouse = await api.storefront("web"), await api.admin_with("fulfilment")
        gateway = await api.admin_with("payments")
        order = await api.place_order(shop, order_body(("MUG", 1), token="tok_async"))
        assert order["status"] == "placed"
        (payment,) = order["payments"]
        assert payment["status"] == "awaiting_confirmation"
        await _refused_fulfilment(api, warehouse, order["id"])

        # a tampered or mis-signed webhook is refused and changes nothing
        body, headers = webhook_request(payment["reference"], "authorized", secret="wrong")
        expect_problem(await api.client.post("/webhooks/payments/sandbox", content=body,
                                             headers={**gateway, **headers}), 403, "forbidden")
        assert (await api.order(order["id"]))["status"] == "placed"
        # the webhook route needs the payments scope
        body, headers = webhook_request(payment["reference"], "authorized")
        expect_problem(await api.client.post("/webhooks/payments/sandbox", content=body,
                                             headers={**warehouse, **headers}), 403, "forbidden")

        confirmed = expect(await api.client.post("/webhooks/payments/sandbox", content=body,
                                                 headers={**gateway, **headers}), 200)
        assert confirmed == {"orders": [order["id"]]}
        order = await api.order(order["id"])
        assert order["status"] == "processing"
        assert order["payments"][0]["status"] == "authorized"
        order = await ship_everything(api, warehouse, order["id"])
        assert order["status"] == "fulfilled"


async def test_scenario_3_a_bank_transfer_is_fulfilled_only_once_marked_paid(
        database_url: str) -> None:
    async with api_client(database_url) as api:
        shop, warehouse = await api.storefront("web"), await api.admin_with("fulfilment")
        order = await api.place_order(shop, order_body(
            ("POSTER", 1), token=None, gateway="manual", method="bank_transfer"))
        assert order["status"] == "placed"
        assert [(p["gateway"], p["status"], p["grants_terms"]) for p in order["payments"]] == [
            ("manual", "awaiting_payment", False)]
        await _refused_fulfilment(api, warehouse, order["id"])
        # the warehouse cannot mark it paid; accounts can, when the transfer arrives
        expect_problem(await api.client.post(f"/orders/{order['id']}/payments/capture",
                                             json={}, headers=warehouse), 403, "forbidden")
        order = await capture(api, await api.admin_with("payments"), order["id"])
        assert order["status"] == "processing"
        assert order["totals"]["paid"] == order["totals"]["total"]
        order = await ship_everything(api, warehouse, order["id"])
        assert order["status"] == "fulfilled"


async def test_scenario_3_a_voided_payment_stops_picking_packing_and_shipping(
        database_url: str) -> None:
    """A shipment already under way stops when the payment no longer covers the order."""
    async with api_client(database_url) as api:
        shop, warehouse = await api.storefront("web"), await api.admin_with("fulfilment")
        payments = await api.admin_with("payments")
        order = await api.place_order(shop, order_body(("SHIRT-M", 1)))
        order = expect(await api.client.post(f"/orders/{order['id']}/shipments", json={},
                                             headers=warehouse), 201)
        base = f"/orders/{order['id']}/shipments/{order['shipments'][0]['id']}"
        expect(await api.client.post(f"/orders/{order['id']}/payments/void", json={},
                                     headers=payments), 200)
        for step, body in (("pick", None), ("pack", {"scans": ["SHIRT-M"]}),
                           ("ship", {"tracking_number": "HAND-DELIVERED-1"})):
            problem = expect_problem(await api.client.post(f"{base}/{step}", json=body,
                                                           headers=warehouse),
                                     409, "invariant-violation")
            assert "not paid" in problem["detail"]
        assert (await api.order(order["id"]))["shipments"][0]["status"] == "pending"


class LabelCountingFlatRate(FlatRate):
    """The flat-rate carrier, counting the labels it was asked to buy."""

    def __init__(self, settings: FlatRate.Settings) -> None:
        super().__init__(settings)
        self.labels: list[str] = []

    @hookimpl
    def ordnung_create_label(self, order: Order, shipment: Shipment) -> Label:
        self.labels.append(shipment.id)
        return super().ordnung_create_label(order, shipment)


async def test_scenario_3_no_carrier_label_is_bought_for_an_order_that_cannot_ship(
        database_url: str) -> None:
    carrier = LabelCountingFlatRate(FlatRate.Settings())
    plugins = [p for p in builtin_plugins() if p[1] != "flat_rate"] + [(carrier, "flat_rate")]
    async with api_client(database_url, plugins=plugins) as api:
        shop, warehouse = await api.storefront("web"), await api.admin_with("fulfilment")
        order = await api.place_order(shop, order_body(("SHIRT-M", 1)))
        order = expect(await api.client.post(f"/orders/{order['id']}/shipments", json={},
                                             headers=warehouse), 201)
        base = f"/orders/{order['id']}/shipments/{order['shipments'][0]['id']}"
        expect(await api.client.post(f"{base}/pick", headers=warehouse), 200)
        expect(await api.client.post(f"{base}/pack", json={"scans": ["SHIRT-M"]},
                                     headers=warehouse), 200)
        # the authorization is released before the parcel leaves
        expect(await api.client.post(f"/orders/{order['id']}/payments/void", json={},
                                     headers=await api.admin_with("payments")), 200)
        expect_problem(await api.client.post(f"{base}/ship", json={}, headers=warehouse),
                       409, "invariant-violation")
        assert (await api.order(order["id"]))["shipments"][0]["status"] == "packed"
        assert carrier.labels == [], "a carrier label was bought for an unpaid order"


async def test_scenario_3_shipping_too_early_says_why(database_url: str) -> None:
    async with api_client(database_url) as api:
        shop, warehouse = await api.storefront("web"), await api.admin_with("fulfilment")
        order = await api.place_order(shop, order_body(("SHIRT-M", 1)))
        order = expect(await api.client.post(f"/orders/{order['id']}/shipments", json={},
                                             headers=warehouse), 201)
        base = f"/orders/{order['id']}/shipments/{order['shipments'][0]['id']}"
        # not picked or packed yet: the shipment's state is the reason
        expect_problem(await api.client.post(f"{base}/ship", json={}, headers=warehouse),
                       409, "illegal-transition")
        expect(await api.client.post(f"/orders/{order['id']}/payments/void", json={},
                                     headers=await api.admin_with("payments")), 200)
        # unpaid: the payment is the reason
        expect_problem(await api.client.post(f"{base}/ship", json={}, headers=warehouse),
                       409, "invariant-violation")


# ---------------------------------------------------------------------------------------------
# scenario 4: a confirmation with the expected delivery date after payment
# ---------------------------------------------------------------------------------------------
class ConfirmationRecorder:
    """Stands in for an e-mail plugin: records the confirmation it would send when an
    order's payment becomes authorized or captured."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    @hookimpl
    def ordnung_after_transition(self, event: Event, order: Order | None) -> None:
        if event.machine != "payment" or event.to_state not in ("authorized", "captured"):
            return
        assert order is not None
        self.sent.append({"order_id": order.id, "number": order.number, "to": order.email,
                          "event": event.kind,
                          "expected_delivery": order.shipping.expected_delivery
                          if order.shipping else None})


async def test_scenario_4_the_confirmation_carries_the_expected_delivery(
        database_url: str) -> None:
    recorder = ConfirmationRecorder()
    async with api_client(database_url,
                          plugins=[*builtin_plugins(), (recorder, "confirmation")]) as api:
        shop = await api.storefront("web")
        order = await api.place_order(shop, order_body(("MUG", 1), email="erika@example.com"))
        shipping = order["shipping"]
        assert shipping is not None and shipping["expected_delivery"]
        promised = date.fromisoformat(shipping["expected_delivery"])
        assert promised > date.fromisoformat(order["created_at"][:10])
        assert promised > date.today()
        kinds = [e["kind"] for e in await timeline(api, order["id"], api.admin)]
        assert "payment.authorized" in kinds and "order.processing" in kinds
        assert kinds.index("payment.authorized") < kinds.index("order.processing")
        assert recorder.sent == [{"order_id": order["id"], "number": order["number"],
                                  "to": "erika@example.com", "event": "payment.authorized",
                                  "expected_delivery": promised}]

        # a payment still pending confirmation sends nothing until the gateway confirms
        waiting = await api.place_order(shop, order_body(("MUG", 1), token="tok_async"))
        assert [s["order_id"] for s in recorder.sent] == [order["id"]]
        body, headers = webhook_request(waiting["payments"][0]["reference"], "authorized")
        expect(await api.client.post("/webhooks/payments/sandbox", content=body,
                                     headers={**await api.admin_with("payments"), **headers}),
               200)
        assert [(s["order_id"], s["event"]) for s in recorder.sent] == [
            (order["id"], "payment.authorized"), (waiting["id"], "payment.authorized")]
        assert recorder.sent[1]["expected_delivery"] == date.fromisoformat(
            waiting["shipping"]["expected_delivery"])


# ---------------------------------------------------------------------------------------------
# scenario 5: packing verifies the scans
# ---------------------------------------------------------------------------------------------
async def test_scenario_5_packing_refuses_a_wrong_item(database_url: str) -> None:
    async with api_client(database_url) as api:
        shop, warehouse = await api.storefront("web"), await api.admin_with("fulfilment")
        order = await api.place_order(shop, order_body(("SHIRT-M", 2), ("MUG", 1)))
        order = await capture(api, await api.admin_with("payments"), order["id"])
        order = expect(await api.client.post(f"/orders/{order['id']}/shipments", json={},
                                             headers=warehouse), 201)
        (shipment,) = order["shipments"]
        base = f"/orders/{order['id']}/shipments/{shipment['id']}"
        expect(await api.client.post(f"{base}/pick", headers=warehouse), 200)
        before = await api.order(order["id"])
        events_before = await timeline(api, order["id"], api.admin)

        problem = expect_problem(await api.client.post(
            f"{base}/pack", json={"scans": ["SHIRT-M", "POSTER", "MUG"]}, headers=warehouse),
            422, "validation")
        assert "POSTER" in problem["detail"]
        assert problem["scanned"] == "POSTER"
        assert problem["field"] == "scans"
        problem = expect_problem(await api.client.post(
            f"{base}/pack", json={"scans": ["4006381333931", "MUG"]}, headers=warehouse),
            422, "validation")
        assert "missing 1 × SHIRT-M" in problem["detail"]
        # a storefront cannot pack at all
        expect_problem(await api.client.post(f"{base}/pack", json={"scans": ["MUG"]},
                                             headers=shop), 403, "forbidden")

        after = await api.order(order["id"])
        assert after["shipments"][0]["status"] == "picking"
        assert after["version"] == before["version"]
        assert await timeline(api, order["id"], api.admin) == events_before

        # the right items, scanned by SKU or by barcode, in any order
        order = expect(await api.client.post(
            f"{base}/pack", json={"scans": ["4006381333948", "4006381333931", "SHIRT-M"]},
            headers=warehouse), 200)
        assert order["shipments"][0]["status"] == "packed"
        assert [sl["packed"] for sl in order["shipments"][0]["lines"]] == [2, 1]


# ---------------------------------------------------------------------------------------------
# scenario 6: live order status, own orders only
# ---------------------------------------------------------------------------------------------
class _BodyStream(httpx.AsyncByteStream):
    def __init__(self, chunks: asyncio.Queue[bytes | None], task: asyncio.Task[None],
                 disconnected: asyncio.Event) -> None:
        self.chunks = chunks
        self.task = task
        self.disconnected = disconnected

    async def __aiter__(self) -> AsyncIterator[bytes]:
        while (chunk := await self.chunks.get()) is not None:
            yield chunk

    async def aclose(self) -> None:
        self.disconnected.set()  # the client went away: the app sees http.disconnect
        done, _ = await asyncio.wait({self.task}, timeout=5)
        if not done:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
        elif not self.task.cancelled():
            self.task.result()  # surface an error the app raised while streaming


class StreamingASGITransport(httpx.AsyncBaseTransport):
    """httpx's ASGITransport collects the whole body before it returns a response, so a
    server-sent-events stream could only be read once it ended. This one hands over
    each chunk as the app sends it, and tells the app when the client disconnects."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        request_body = await request.aread()
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
            "method": request.method,
            "headers": [(k.lower(), v) for k, v in request.headers.raw],
            "scheme": request.url.scheme, "path": request.url.path,
            "raw_path": request.url.raw_path.split(b"?")[0],
            "query_string": request.url.query, "server": (request.url.host, request.url.port),
            "client": ("127.0.0.1", 123), "root_path": "",
        }
        chunks: asyncio.Queue[bytes | None] = asyncio.Queue()
        started, disconnected = asyncio.Event(), asyncio.Event()
        head: dict[str, Any] = {}
        body_sent = False

        async def receive() -> dict[str, Any]:
            nonlocal body_sent
            if not body_sent:
                body_sent = True
                return {"type": "http.request", "body": request_body, "more_body": False}
            await disconnected.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                head["status"] = message["status"]
                head["headers"] = message.get("headers", [])
                started.set()
            elif message["type"] == "http.response.body":
                if message.get("body"):
                    await chunks.put(message["body"])
                if not message.get("more_body", False):
                    await chunks.put(None)

        async def run() -> None:
            try:
                await self.app(scope, receive, send)
            finally:
                started.set()
                await chunks.put(None)

        task = asyncio.create_task(run())
        await started.wait()
        if "status" not in head:
            await task  # raises what the app raised
            raise RuntimeError("the app answered nothing")
        return httpx.Response(head["status"], headers=head["headers"], request=request,
                              stream=_BodyStream(chunks, task, disconnected))


async def read_events(response: httpx.Response, into: list[dict[str, Any]],
                      arrived: asyncio.Condition) -> None:
    """Parse server-sent events (``event``/``data``/``id`` fields, blank-line separated)."""
    fields: dict[str, str] = {}
    async for line in response.aiter_lines():
        if line:
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")
            continue
        if "data" in fields:
            async with arrived:
                into.append({"event": fields.get("event"), "id": fields.get("id"),
                             "data": json.loads(fields["data"])})
                arrived.notify_all()
        fields = {}


async def test_scenario_6_a_customer_follows_their_order_live(database_url: str) -> None:
    async with api_client(database_url) as api:
        _ada, ada = await api.customer("ada@example.com", "Ada")
        staff = await api.admin_with("payments", "fulfilment")
        order = await api.place_order(ada, order_body(("SHIRT-M", 1), ("MUG", 1)))
        url = f"/orders/{order['id']}/events"
        received: list[dict[str, Any]] = []
        arrived = asyncio.Condition()

        async def seen(kind: str) -> None:
            async with arrived:
                await arrived.wait_for(lambda: kind in [e["event"] for e in received])

        async def move_the_order() -> dict[str, Any]:
            await seen("order.processing")  # the stream is open and has caught up
            moved = await capture(api, staff, order["id"])
            await seen("payment.captured")  # pushed while the order waits for the warehouse
            moved = await ship_everything(api, staff, order["id"])
            return moved

        async with httpx.AsyncClient(transport=StreamingASGITransport(api.app),
                                     base_url=BASE_URL) as live, asyncio.timeout(30), \
                live.stream("GET", url, headers=ada) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            reader = asyncio.create_task(read_events(response, received, arrived))
            try:
                moved = await move_the_order()
                async with arrived:  # the stream catches up with the last event
                    await arrived.wait_for(lambda: bool(received) and int(
                        received[-1]["id"]) >= moved["event_seq"])
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reader

        assert moved["status"] == "fulfilled"
        events = await timeline(api, order["id"], ada)
        # everything in the timeline reached the stream once, in order, as it happened
        assert [(e["event"], int(e["id"])) for e in received] == [
            (e["kind"], e["seq"]) for e in events]
        assert [e["data"] for e in received] == events
        kinds = [e["event"] for e in received]
        for earlier, later in (("order.processing", "payment.captured"),
                               ("payment.captured", "shipment.pending"),
                               ("shipment.packed", "shipment.shipped"),
                               ("shipment.shipped", "order.fulfilled")):
            assert kinds.index(earlier) < kinds.index(later)
        shipped = next(e["data"] for e in received if e["event"] == "shipment.shipped")
        assert shipped["data"]["tracking_number"] == moved["shipments"][0]["tracking_number"]

        # resuming after a given event replays only what came after it
        resumed: list[dict[str, Any]] = []
        after = int(next(e["id"] for e in received if e["event"] == "shipment.shipped"))
        async with httpx.AsyncClient(transport=StreamingASGITransport(api.app),
                                     base_url=BASE_URL) as live, asyncio.timeout(10), \
                live.stream("GET", url, params={"after_seq": after}, headers=ada) as response:
            reader = asyncio.create_task(read_events(response, resumed, arrived))
            async with arrived:
                await arrived.wait_for(lambda: bool(resumed))
            await asyncio.sleep(0.6)  # one more poll: nothing else arrives
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        assert [int(e["id"]) for e in resumed] == [e["seq"] for e in events if e["seq"] > after]
        assert "order.fulfilled" in [e["event"] for e in resumed]


async def test_scenario_6_a_customer_sees_only_their_own_orders(database_url: str) -> None:
    async with api_client(database_url) as api:
        ada_customer, ada = await api.customer("ada@example.com", "Ada")
        _bob_customer, bob = await api.customer("bob@example.com", "Bob")
        shop = await api.storefront("web")
        mine = [await api.place_order(ada, order_body(("MUG", 1))) for _ in range(2)]
        theirs = await api.place_order(bob, order_body(("MUG", 1)))
        guest = await api.place_order(shop, order_body(("MUG", 1)))
        assert {o["customer_id"] for o in mine} == {ada_customer["id"]}

        listed = expect(await api.client.get("/orders", headers=ada), 200)
        assert sorted(o["id"] for o in listed["items"]) == sorted(o["id"] for o in mine)
        # asking for someone else's list still gives one's own
        listed = expect(await api.client.get("/orders", params={
            "customer_id": theirs["customer_id"]}, headers=ada), 200)
        assert sorted(o["id"] for o in listed["items"]) == sorted(o["id"] for o in mine)

        for other in (theirs, guest):
            for path in (f"/orders/{other['id']}", f"/orders/{other['id']}/events",
                         f"/orders/{other['id']}/timeline",
                         f"/orders/by-number/{other['number']}",
                         f"/orders/{other['id']}/payments/methods"):
                problem = expect_problem(await api.client.get(path, headers=ada), 404,
                                         "not-found")
                assert ada_customer["name"] not in json.dumps(problem)
            expect_problem(await api.client.post(f"/orders/{other['id']}/cancel", json={},
                                                 headers=ada), 404, "not-found")
        # the owner sees it; a storefront key reads no orders at all
        assert (await api.order(theirs["id"], bob))["id"] == theirs["id"]
        expect_problem(await api.client.get(f"/orders/{theirs['id']}", headers=shop), 403,
                       "forbidden")
        assert (await api.order(theirs["id"]))["status"] == "processing"


# ---------------------------------------------------------------------------------------------
# scenario 7: returns, restocked
# ---------------------------------------------------------------------------------------------
async def test_scenario_7_return_requested_approved_received_refunded(
        database_url: str) -> None:
    async with api_client(database_url) as api:
        _ada, ada = await api.customer("ada@example.com", "Ada")
        shop = await api.storefront("web")
        orders_desk = await api.admin_with("orders")
        warehouse = await api.admin_with("fulfilment")
        accounts = await api.admin_with("payments", "refunds")
        order = await api.place_order(ada, order_body(("POSTER", 2)))
        await capture(api, accounts, order["id"])
        order = await ship_everything(api, warehouse, order["id"])
        assert order["status"] == "fulfilled"
        assert await availability(api, shop, "POSTER") == {"POSTER": 18}
        line_id = order["lines"][0]["id"]

        order = expect(await api.client.post(
            f"/orders/{order['id']}/returns",
            json={"lines": [{"line_id": line_id, "quantity": 2}], "reason": "damaged corner"},
            headers=ada), 201)
        (rma,) = order["returns"]
        assert rma["status"] == "requested" and rma["refund_amount"] == 8000
        rma_url = f"/orders/{order['id']}/returns/{rma['id']}"
        # the customer cannot approve their own return
        expect_problem(await api.client.post(f"{rma_url}/approve", headers=ada), 403,
                       "forbidden")
        # nor receive it before it is approved
        expect_problem(await api.client.post(f"{rma_url}/receive", json={},
                                             headers=warehouse), 409, "illegal-transition")

        order = expect(await api.client.post(f"{rma_url}/approve", headers=orders_desk), 200)
        assert order["returns"][0]["status"] == "approved"
        assert await availability(api, shop, "POSTER") == {"POSTER": 18}  # not back yet

        order = expect(await api.client.post(f"{rma_url}/receive",
                                             json={"restock": {line_id: True}},
                                             headers=warehouse), 200)
        assert order["returns"][0]["status"] == "received"
        assert order["status"] == "returned"
        assert await availability(api, shop, "POSTER") == {"POSTER": 20}

        order = expect(await api.client.post(f"{rma_url}/refund", json={}, headers=accounts),
                       200)
        assert order["returns"][0]["status"] == "refunded"
        assert order["totals"]["refunded"] == 8000
        assert order["payments"][0]["status"] == "partially_refunded"  # shipping not refunded

        mine = await api.order(order["id"], ada)
        assert mine["returns"][0]["status"] == "refunded"
        steps = [(e["kind"], e["actor"].split(":")[0]) for e in
                 await timeline(api, order["id"], api.admin) if e["machine"] == "return"]
        assert steps == [("return.requested", "customer"), ("return.approved", "admin"),
                         ("return.received", "admin"), ("return.refunded", "admin")]
        # the customer's view names no key: "you" and "staff"
        steps = [(e["kind"], e["actor"]) for e in
                 await timeline(api, order["id"], ada) if e["machine"] == "return"]
        assert steps == [("return.requested", "you"), ("return.approved", "staff"),
                         ("return.received", "staff"), ("return.refunded", "staff")]
        assert await api.engine.inventory.ledger_discrepancies() == []


# ---------------------------------------------------------------------------------------------
# scenario 8: a suspicious order is held for review
# ---------------------------------------------------------------------------------------------
class BigOrderReview:
    """Holds every order above EUR 300.00 for a human to look at."""

    LIMIT = 30_000

    @hookimpl
    def ordnung_assess_risk(self, ctx: Any) -> RiskAssessment:
        big = ctx.order.totals.total > self.LIMIT
        return RiskAssessment(score=90 if big else 5, reasons=["amount above 300.00"] if big
                              else [], hold=big)


async def test_scenario_8_a_suspicious_order_waits_for_review(database_url: str) -> None:
    async with api_client(database_url,
                          plugins=[*builtin_plugins(), (BigOrderReview(), "review")]) as api:
        shop = await api.storefront("web")
        warehouse = await api.admin_with("fulfilment")
        accounts = await api.admin_with("payments")
        reviewer = await api.admin_with("orders")
        small = await api.place_order(shop, order_body(("MUG", 1)))
        order = await api.place_order(shop, order_body(("SHIRT-M", 20)))  # EUR 500.00
        assert small["status"] == "processing"
        assert order["status"] == "on_hold"
        assert order["payments"][0]["status"] == "authorized"
        assert "hold_reason" not in order  # the storefront reads the customer's view
        order = await api.order(order["id"])
        assert order["hold_reason"] == "review: amount above 300.00"
        assert order["risk_score"] == 90

        problem = expect_problem(await api.client.post(
            f"/orders/{order['id']}/payments/capture", json={}, headers=accounts), 409,
            "illegal-transition")
        assert problem["current_state"] == "on_hold"
        expect_problem(await api.client.post(f"/orders/{order['id']}/shipments", json={},
                                             headers=warehouse), 409, "illegal-transition")
        queue = expect(await api.client.get("/fulfilment/queue", headers=warehouse), 200)
        assert [o["id"] for o in queue["items"]] == [small["id"]]
        held = await api.order(order["id"])
        assert held["status"] == "on_hold" and held["totals"]["paid"] == 0
        assert held["shipments"] == []

        # only staff with the orders scope release
        expect_problem(await api.client.post(f"/orders/{order['id']}/release",
                                             json={"note": "looks fine"}, headers=warehouse),
                       403, "forbidden")
        order = expect(await api.client.post(f"/orders/{order['id']}/release",
                                             json={"note": "called the customer"},
                                             headers=reviewer), 200)
        assert order["status"] == "processing" and order["hold_reason"] == ""
        queue = expect(await api.client.get("/fulfilment/queue", headers=warehouse), 200)
        assert [o["id"] for o in queue["items"]] == [small["id"], order["id"]]
        order = await capture(api, accounts, order["id"])
        assert order["totals"]["paid"] == order["totals"]["total"]
        order = await ship_everything(api, warehouse, order["id"])
        assert order["status"] == "fulfilled"
        kinds = [e["kind"] for e in await timeline(api, order["id"], reviewer)]
        assert kinds.index("order.risk_assessed") < kinds.index("order.on_hold") < \
            kinds.index("payment.captured")


# ---------------------------------------------------------------------------------------------
# scenario 9: VIP and high-value orders first
# ---------------------------------------------------------------------------------------------
class VipAndHighValueFirst:
    """+100 for VIP-tagged customers, +50 for orders above EUR 100.00."""

    HIGH_VALUE = 10_000

    @hookimpl
    def ordnung_fulfilment_priority(self, order: Order, customer: Any) -> int:
        points = 100 if customer is not None and "vip" in customer.tags else 0
        return points + (50 if order.totals.total > self.HIGH_VALUE else 0)


async def test_scenario_9_vip_and_high_value_orders_come_first(database_url: str) -> None:
    async with api_client(database_url, plugins=[*builtin_plugins(),
                                                 (VipAndHighValueFirst(), "priority")]) as api:
        shop = await api.storefront("web")
        vip_customer, vip = await api.customer("vip@example.com", "Vera", tags=["vip"])
        upstart_customer, upstart = await api.customer("eve@example.com", "Eve")
        # a customer cannot make themselves VIP: refused (422 naming tags), nothing changes
        problem = expect_problem(await api.client.patch(
            f"/customers/{upstart_customer['id']}", json={"tags": ["vip"], "name": "Eve V."},
            headers=upstart), 422, "validation")
        assert problem["field"] == "tags"
        patched = expect(await api.client.patch(f"/customers/{upstart_customer['id']}",
                                                json={"name": "Eve V."}, headers=upstart), 200)
        assert patched["tags"] == [] and patched["name"] == "Eve V."

        # placed in this order on purpose; each one's expected points in the comment
        regular = await api.place_order(shop, order_body(("MUG", 1)))  # 0
        high_value = await api.place_order(shop, order_body(("POSTER", 3)))  # 50
        vip_small = await api.place_order(vip, order_body(("MUG", 1)))  # 100
        eve_small = await api.place_order(upstart, order_body(("MUG", 1)))  # 0
        vip_unpaid = await api.place_order(vip, order_body(("POSTER", 3), token="tok_async"))
        vip_high = await api.place_order(vip, order_body(("SHIRT-M", 5)))  # 150
        assert vip_small["customer_id"] == vip_customer["id"]
        points = {o["id"]: (await api.order(o["id"]))["priority"]
                  for o in (regular, high_value, vip_small, eve_small, vip_high, vip_unpaid)}
        assert points == {regular["id"]: 0, high_value["id"]: 50, vip_small["id"]: 100,
                          eve_small["id"]: 0, vip_high["id"]: 150, vip_unpaid["id"]: 150}

        queue = expect(await api.client.get("/fulfilment/queue",
                                            headers=await api.admin_with("fulfilment")), 200)
        assert [o["id"] for o in queue["items"]] == [
            vip_high["id"], vip_small["id"], high_value["id"], regular["id"], eve_small["id"]]
        # the unpaid VIP order is not in the queue; once paid it goes straight to the top
        # (among equal points the older order first)
        body, headers = webhook_request(vip_unpaid["payments"][0]["reference"], "authorized")
        expect(await api.client.post("/webhooks/payments/sandbox", content=body,
                                     headers={**await api.admin_with("payments"), **headers}),
               200)
        queue = expect(await api.client.get("/fulfilment/queue", params={"limit": 3},
                                            headers=await api.admin_with("fulfilment")), 200)
        assert [o["id"] for o in queue["items"]] == [
            vip_unpaid["id"], vip_high["id"], vip_small["id"]]


# ---------------------------------------------------------------------------------------------
# scenario 10: Black Friday
# ---------------------------------------------------------------------------------------------
BF_SKU = "BF-DEAL"
BF_STOCK = 30
BF_BUYERS = 120
BF_PRICE = 1999
BF_TIMEOUT = 45.0


async def test_scenario_10_black_friday_no_oversell_no_lost_order_no_double_charge(
        database_url: str) -> None:
    async with api_client(database_url) as api:
        merchandiser = await api.admin_with("catalogue", "inventory")
        expect(await api.client.put("/catalogue/products/bf-deal", json={
            "id": "bf-deal", "name": "Black Friday deal", "variants": [{
                "sku": BF_SKU, "product_id": "bf-deal", "name": "Deal of the day",
                "prices": {"EUR": BF_PRICE}, "weight_grams": 300}]},
            headers=merchandiser), 200)
        for location, units in (("wh1", BF_STOCK - 10), ("wh2", 10)):
            expect(await api.client.post("/inventory/adjustments", json={
                "sku": BF_SKU, "location_id": location, "delta": units, "kind": "receive",
                "reason": "Black Friday delivery"}, headers=merchandiser), 201)
        shop = await api.storefront("web")
        assert await availability(api, shop, BF_SKU) == {BF_SKU: BF_STOCK}

        bodies = [order_body((BF_SKU, 1), email=f"buyer{i}@example.com")
                  for i in range(BF_BUYERS)]
        go = asyncio.Event()

        async def buy(i: int) -> httpx.Response:
            await go.wait()
            return await api.post_order(shop, bodies[i], idempotency_key=f"bf-{i}")

        started = time.monotonic()
        tasks = [asyncio.create_task(buy(i)) for i in range(BF_BUYERS)]
        await asyncio.sleep(0)
        go.set()
        async with asyncio.timeout(BF_TIMEOUT):
            responses = await asyncio.gather(*tasks)
        burst = time.monotonic() - started

        statuses = [r.status_code for r in responses]
        assert not [r.text for r in responses if r.status_code >= 500], "server errors"
        assert statuses.count(201) == BF_STOCK, sorted(set(statuses))
        assert statuses.count(409) == BF_BUYERS - BF_STOCK
        for response in responses:
            if response.status_code == 409:
                problem = expect_problem(response, 409, "out-of-stock")
                assert problem["shortages"] == [{"sku": BF_SKU, "requested": 1,
                                                 "available": 0}]

        # no lost order: every 201 is a stored, authorized order; nothing else was stored
        sold = [(i, r.json()) for i, r in enumerate(responses) if r.status_code == 201]
        assert len({o["id"] for _, o in sold}) == BF_STOCK
        assert await api.order_count() == BF_STOCK
        total = sold[0][1]["totals"]["total"]
        assert total == BF_PRICE + 495  # EUR prices include VAT; flat-rate shipping
        authorized = 0
        for i, placed in sold:
            stored = await api.order(placed["id"])
            assert stored["status"] == "processing"
            assert stored["email"] == f"buyer{i}@example.com"
            # no double charge: one payment, authorized once, for the order's total
            assert [(p["status"], p["authorized"]) for p in stored["payments"]] == [
                ("authorized", total)]
            authorized += stored["totals"]["authorized"]
        assert authorized == BF_STOCK * total
        sandbox = api.engine.host.pm.get_plugin("sandbox")
        assert isinstance(sandbox, SandboxGateway)
        assert sorted(amount for op, _, amount in sandbox.calls if op == "authorize") == \
            [total] * BF_STOCK

        # a buyer's retry with the same Idempotency-Key replays, never charges again
        for i, placed in sold[:5]:
            again = await api.post_order(shop, bodies[i], idempotency_key=f"bf-{i}")
            assert again.status_code == 201 and again.json()["id"] == placed["id"]
            assert again.headers.get("idempotent-replayed") == "true"
        assert len([c for c in sandbox.calls if c[0] == "authorize"]) == BF_STOCK

        # no oversell, and the ledger explains every unit
        assert await availability(api, shop, BF_SKU) == {BF_SKU: 0}
        levels = expect(await api.client.get("/inventory/levels", params={"sku": BF_SKU},
                                             headers=merchandiser), 200)
        assert sorted((lv["location_id"], lv["on_hand"], lv["reserved"]) for lv in levels) == [
            ("wh1", BF_STOCK - 10, BF_STOCK - 10), ("wh2", 10, 10)]
        assert await api.engine.inventory.ledger_discrepancies() == []
        assert burst < BF_TIMEOUT


# ---------------------------------------------------------------------------------------------
# scenario 11: data export and erasure
# ---------------------------------------------------------------------------------------------
ADA_ADDRESS = {"name": "Ada Lovelace", "line1": "Unter den Linden 12", "city": "Potsdam",
               "postal_code": "14467", "country": "DE", "phone": "+49 331 7946000",
               "email": "ada.private@example.org"}
ADA_PERSONAL = ("Ada Lovelace", "Lovelace", "Linden", "Potsdam", "14467", "ada@example.com",
                "ada.private", "7946000")


async def test_scenario_11_export_then_erase_keeps_the_accounts_anonymised(
        database_url: str) -> None:
    async with api_client(database_url) as api:
        privacy = await api.admin_with("customers")
        ada = expect(await api.client.post("/customers", json={
            "email": "ada@example.com", "name": "Ada Lovelace", "phone": "+49 331 7946000",
            "addresses": [ADA_ADDRESS], "consents": {"newsletter": True}}, headers=privacy),
            201)
        ada_token = await api.customer_token(ada["id"])
        _bob, bob = await api.customer("bob@example.com", "Bob")
        order = await api.place_order(ada_token, order_body(
            ("MUG", 2), email="", address=ADA_ADDRESS))
        order = await capture(api, await api.admin_with("payments"), order["id"])
        other = await api.place_order(await api.storefront("web"), order_body(("MUG", 1)))

        export = expect(await api.client.get(f"/customers/{ada['id']}/export",
                                             headers=ada_token), 200)
        assert export["customer"]["name"] == "Ada Lovelace"
        assert export["customer"]["email"] == "ada@example.com"
        assert export["customer"]["addresses"][0]["line1"] == ADA_ADDRESS["line1"]
        assert [o["number"] for o in export["orders"]] == [order["number"]]
        assert export["orders"][0]["shipping_address"]["line1"] == ADA_ADDRESS["line1"]
        assert export["orders"][0]["email"] == "ada@example.com"
        assert expect(await api.client.get("/customers/me/export", headers=ada_token),
                      200)["customer"]["id"] == ada["id"]
        staff_export = expect(await api.client.get(f"/customers/{ada['id']}/export",
                                                   headers=privacy), 200)
        assert [o["number"] for o in staff_export["orders"]] == [order["number"]]
        # staff export the whole order, the customer the customer's view of it
        assert "risk_score" in staff_export["orders"][0]
        assert "risk_score" not in export["orders"][0]
        # nobody else's token exports Ada, and a customer cannot erase
        expect_problem(await api.client.get(f"/customers/{ada['id']}/export", headers=bob),
                       404, "not-found")
        expect_problem(await api.client.delete(f"/customers/{ada['id']}", headers=ada_token),
                       403, "forbidden")
        expect_problem(await api.client.delete(f"/customers/{ada['id']}",
                                               headers=await api.admin_with("orders")),
                       403, "forbidden")

        erased = expect(await api.client.delete(f"/customers/{ada['id']}", headers=privacy),
                        200)
        assert erased["erased"] is True
        assert (erased["name"], erased["phone"], erased["addresses"]) == ("", "", [])

        # the orders stay for the accounts, anonymised
        accounts = await api.admin_with("orders")
        kept = await api.order(order["id"], accounts)
        assert kept["totals"] == order["totals"]
        assert kept["number"] == order["number"]
        assert kept["customer_id"] == ada["id"]
        assert kept["email"] == ""
        assert kept["shipping_address"]["country"] == "DE"
        assert kept["shipping_address"]["name"] == "erased"
        assert kept["billing_address"]["line1"] == "erased"
        text = json.dumps(kept)
        assert not [p for p in ADA_PERSONAL if p in text]
        kinds = [e["kind"] for e in await timeline(api, order["id"], accounts)]
        assert kinds[-1] == "customer.erased"
        # someone else's order is untouched
        assert (await api.order(other["id"], accounts))["shipping_address"] == {
            **{k: "" for k in ("line2", "region", "email", "phone", "company", "vat_id")},
            **BERLIN}

        export = expect(await api.client.get(f"/customers/{ada['id']}/export",
                                             headers=privacy), 200)
        assert [o["number"] for o in export["orders"]] == [order["number"]]
        text = json.dumps(export)
        assert not [p for p in ADA_PERSONAL if p in text]
        found = expect(await api.client.get("/customers", headers=privacy), 200)
        assert "ada@example.com" not in json.dumps(found)


async def test_scenario_11_erasure_also_forgets_what_the_customers_carts_held(
        database_url: str) -> None:
    async with api_client(database_url) as api:
        privacy = await api.admin_with("customers")
        ada = expect(await api.client.post("/customers", json={
            "email": "ada@example.com", "name": "Ada Lovelace"}, headers=privacy), 201)
        ada_token = await api.customer_token(ada["id"])
        cart = expect(await api.client.post("/carts", json={"channel": "web"},
                                            headers=ada_token), 201)
        url = f"/carts/{cart['id']}"
        expect(await api.client.post(f"{url}/lines", json={"sku": "MUG", "quantity": 1},
                                     headers=ada_token), 200)
        expect(await api.client.put(f"{url}/addresses", json={
            "shipping": ADA_ADDRESS, "email": "ada@example.com"}, headers=ada_token), 200)
        expect(await api.client.put(f"{url}/shipping-method",
                                    json={"method": "flat_rate:standard"}, headers=ada_token),
               200)
        order = expect(await api.client.post(f"{url}/order", json={
            "payment": {"gateway": "sandbox", "token": "tok_success"}}, headers=ada_token), 201)
        # a second cart, still open, with the address already filled in
        open_cart = expect(await api.client.post("/carts", json={"channel": "web"},
                                                 headers=ada_token), 201)
        expect(await api.client.put(f"/carts/{open_cart['id']}/addresses",
                                    json={"shipping": ADA_ADDRESS}, headers=ada_token), 200)

        expect(await api.client.delete(f"/customers/{ada['id']}", headers=privacy), 200)
        assert not [p for p in ADA_PERSONAL if p in json.dumps(await api.order(order["id"]))]
        export = expect(await api.client.get(f"/customers/{ada['id']}/export",
                                             headers=privacy), 200)
        assert [o["number"] for o in export["orders"]] == [order["number"]]
        leaked = [p for p in ADA_PERSONAL if p in json.dumps(export)]
        assert leaked == [], f"personal data left in the export after erasure: {leaked}"
