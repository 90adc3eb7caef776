"""A payment the gateway has not confirmed cannot be captured, nor count as paid (HTTP API).

Found: with an asynchronous card payment (sandbox ``tok_async``) still waiting for the
gateway's confirmation, ``POST /orders/{id}/payments/capture`` answered 200, marked the
payment captured and moved the order to processing, from where it shipped.
"""

from __future__ import annotations

from typing import Any

from ordnung.plugins.payments.sandbox import webhook
from tests.api_support import Api, api_fixture, expect, expect_problem, order_body  # noqa: F401


def sandbox_calls(api: Api, operation: str) -> list[tuple[str, str, int]]:
    """The operations the sandbox gateway was asked to carry out."""
    return [call for call in api.plugin("sandbox").calls if call[0] == operation]


async def confirm(api: Api, reference: str, outcome: str, amount: int | None = None) -> None:
    """The gateway tells the shop by a signed webhook."""
    headers, body = webhook(reference, outcome, amount=amount)  # type: ignore[arg-type]
    answer = expect(await api.client.post("/webhooks/payments/sandbox", content=body,
                                          headers={**api.admin, **headers}), 200)
    assert answer["orders"], answer


async def refused_capture(api: Api, order_id: str, body: dict[str, Any]) -> dict[str, Any]:
    """A capture that must be refused, leaving the order exactly as it was."""
    before = await api.order(order_id)
    problem = expect_problem(await api.client.post(f"/orders/{order_id}/payments/capture",
                                                   json=body, headers=api.admin),
                             409, "illegal-transition")
    after = await api.order(order_id)
    assert after["version"] == before["version"] and after == before
    return problem


async def test_an_async_payment_cannot_be_captured_before_the_gateway_confirms(
        api: Api) -> None:
    shop = await api.storefront("web")
    order = await api.place_order(shop, order_body(("MUG", 1), token="tok_async"))
    (payment,) = order["payments"]
    assert (order["status"], payment["status"]) == ("placed", "awaiting_confirmation")

    for body in ({}, {"payment_id": payment["id"]},
                 {"payment_id": payment["id"], "amount": 100}):
        answer = await refused_capture(api, order["id"], body)
        assert answer["machine"] == "payment" and answer["entity_id"] == payment["id"]
        assert answer["current_state"] == "awaiting_confirmation"
        assert "capture_all" not in answer["allowed"]
    # the gateway was never even asked
    assert sandbox_calls(api, "capture") == []

    # nothing else treats it as paid: no shipment, not in the fulfilment queue
    expect_problem(await api.client.post(f"/orders/{order['id']}/shipments", json={},
                                         headers=api.admin), 409, "illegal-transition")
    queue = expect(await api.client.get("/fulfilment/queue", headers=api.admin), 200)
    assert order["id"] not in [o["id"] for o in queue["items"]]
    order = await api.order(order["id"])
    assert order["totals"]["paid"] == 0 and order["totals"]["authorized"] == 0

    # once the gateway confirms, staff capture as usual
    await confirm(api, payment["reference"], "authorized")
    order = await api.order(order["id"])
    assert (order["status"], order["payments"][0]["status"]) == ("processing", "authorized")
    order = expect(await api.client.post(f"/orders/{order['id']}/payments/capture", json={},
                                         headers=api.admin), 200)
    assert order["payments"][0]["status"] == "captured"
    assert order["totals"]["paid"] == order["totals"]["total"]
    assert len(sandbox_calls(api, "capture")) == 1


async def test_a_declined_confirmation_leaves_nothing_to_capture(api: Api) -> None:
    order = await api.place_order(api.admin, order_body(("MUG", 1), token="tok_async"))
    payment = order["payments"][0]
    await confirm(api, payment["reference"], "declined")
    order = await api.order(order["id"])
    assert order["payments"][0]["status"] == "failed"
    problem = await refused_capture(api, order["id"], {"payment_id": payment["id"]})
    assert problem["current_state"] == "failed"
    expect_problem(await api.client.post(f"/orders/{order['id']}/payments/capture", json={},
                                         headers=api.admin), 422, "validation")
    assert sandbox_calls(api, "capture") == []


async def test_the_gateway_may_confirm_and_capture_in_one_webhook(api: Api) -> None:
    order = await api.place_order(api.admin, order_body(("MUG", 1), token="tok_async"))
    payment = order["payments"][0]
    await confirm(api, payment["reference"], "captured")
    order = await api.order(order["id"])
    assert order["payments"][0]["status"] == "captured"
    assert order["status"] == "processing"
    assert order["totals"]["paid"] == order["totals"]["total"]
    timeline = expect(await api.client.get(f"/orders/{order['id']}/timeline",
                                           headers=api.admin), 200)["items"]
    kinds = [e["kind"] for e in timeline if e["machine"] == "payment"]
    assert kinds.index("payment.awaiting_confirmation") < kinds.index("payment.authorized") \
        < kinds.index("payment.captured")


async def test_staff_still_mark_a_bank_transfer_paid(api: Api) -> None:
    """Money collected outside any gateway: capturing it is its confirmation."""
    order = await api.place_order(api.admin, order_body(
        ("MUG", 1), token=None, gateway="manual", method="bank_transfer"))
    assert (order["status"], order["payments"][0]["status"]) == ("placed", "awaiting_payment")
    order = expect(await api.client.post(f"/orders/{order['id']}/payments/capture", json={},
                                         headers=api.admin), 200)
    assert (order["status"], order["payments"][0]["status"]) == ("processing", "captured")


async def test_an_authorization_started_over_the_api_waits_too(api: Api) -> None:
    """The second way to start a payment (``POST /orders/{id}/payments``) obeys the same
    rule as placement."""
    order = await api.place_order(api.admin, order_body(
        ("MUG", 1), token=None, gateway="manual", method="bank_transfer"))
    expect(await api.client.post(f"/orders/{order['id']}/payments/void", json={},
                                 headers=api.admin), 200)
    order = expect(await api.client.post(f"/orders/{order['id']}/payments", json={
        "gateway": "sandbox", "token": "tok_async"}, headers=api.admin), 201)
    assert [p["status"] for p in order["payments"]] == ["voided", "awaiting_confirmation"]
    problem = await refused_capture(api, order["id"], {})
    assert problem["current_state"] == "awaiting_confirmation"
    assert sandbox_calls(api, "capture") == []
