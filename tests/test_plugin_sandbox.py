"""The built-in payment plugins: the sandbox card gateway and manual payments.

The sandbox's test tokens, its signed webhooks (good, tampered, stale, replayed), its
own ledger (what the gateway "charged") and idempotency on its side; partial capture,
partial refund and void through the Engine; bank transfer, invoice and cash on delivery;
card numbers refused without a trace.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import pytest
import structlog

from ordnung.core import Engine
from ordnung.core.domain.payments import PaymentRequest
from ordnung.core.errors import (
    Forbidden,
    IllegalTransition,
    InvalidInput,
    InvariantViolation,
    PaymentDeclined,
)
from ordnung.core.persistence.tables import ALL_TABLES
from ordnung.plugins.payments.cards import (
    CARD_NUMBER_REFUSED,
    looks_like_card_number,
    luhn_valid,
)
from ordnung.plugins.payments.manual import ManualPayments
from ordnung.plugins.payments.sandbox import SandboxGateway, sign, webhook
from tests.support import builtin_plugins, order_request, seed_shop, ship_all


def gateway(engine: Engine) -> SandboxGateway:
    plugin = engine.host.pm.get_plugin("sandbox")
    assert isinstance(plugin, SandboxGateway)
    return plugin


async def stock(engine: Engine, sku: str) -> int:
    return (await engine.inventory.available([sku]))[sku]


# -- test tokens ------------------------------------------------------------------------------
async def test_tok_success_is_authorized_at_once_and_on_the_gateways_books(
        engine: Engine) -> None:
    order = await engine.orders.place(order_request(("SHIRT-M", 2)))
    payment = order.payments[0]
    assert (order.status, payment.status) == ("processing", "authorized")
    assert payment.authorized == order.totals.total
    charge = gateway(engine).charge_for(payment.id)
    assert charge is not None and charge.reference == payment.reference
    assert (charge.status, charge.authorized, charge.captured, charge.charged) == (
        "authorized", order.totals.total, 0, 0)
    assert [(e.operation, e.amount, e.outcome) for e in charge.entries] == [
        ("authorize", order.totals.total, "approved")]


@pytest.mark.parametrize(("token", "reason"), [
    ("tok_decline", "insufficient funds"),
    ("tok_fraud", "suspected fraud"),
    ("tok_no_such_token", "invalid test token"),
])
async def test_declining_tokens_cancel_the_order_and_hold_nothing(
        engine: Engine, token: str, reason: str) -> None:
    before = await stock(engine, "SHIRT-M")
    with pytest.raises(PaymentDeclined) as err:
        await engine.orders.place(order_request(("SHIRT-M", 3), token=token))
    assert reason in err.value.detail
    order = await engine.orders.get(err.value.extra["order_id"])
    assert (order.status, order.payments[0].status) == ("cancelled", "failed")
    assert order.payments[0].failure_reason == reason
    assert await stock(engine, "SHIRT-M") == before
    charge = gateway(engine).charge_for(order.payments[0].id)
    assert charge is not None
    assert (charge.status, charge.authorized, charge.charged) == ("declined", 0, 0)


# -- asynchronous confirmation by signed webhook ---------------------------------------------
async def test_async_token_is_confirmed_by_a_signed_webhook_once(engine: Engine) -> None:
    order = await engine.orders.place(order_request(("MUG", 1), token="tok_async"))
    payment = order.payments[0]
    assert (order.status, payment.status) == ("placed", "awaiting_confirmation")
    with pytest.raises(IllegalTransition):  # unconfirmed is not paid: nothing ships
        await engine.fulfilment.create_shipment(order.id)
    sandbox = gateway(engine)
    assert sandbox.charge_for(payment.id).status == "pending"  # type: ignore[union-attr]

    headers, body = sandbox.confirm(payment.reference)
    assert sandbox.charge_for(payment.id).status == "authorized"  # type: ignore[union-attr]
    assert await engine.payments.webhook("sandbox", headers, body) == [order.id]
    order = await engine.orders.get(order.id)
    assert (order.status, order.payments[0].status) == ("processing", "authorized")
    assert order.payments[0].authorized == order.totals.total

    # replayed: accepted (the signature is still fresh) but changes nothing
    version = order.version
    assert await engine.payments.webhook("sandbox", headers, body) == [order.id]
    again = await engine.orders.get(order.id)
    assert again.payments[0].status == "authorized"
    assert [e.kind for e in await engine.orders.timeline(order.id)].count(
        "payment.authorized") == 1
    assert again.version >= version
    order, shipments = await engine.fulfilment.create_shipment(order.id)
    assert shipments


async def test_tampered_stale_and_unsigned_webhooks_are_refused(engine: Engine) -> None:
    order = await engine.orders.place(order_request(("MUG", 1), token="tok_async"))
    reference = order.payments[0].reference
    headers, body = webhook(reference, "authorized")
    tampered = body.replace(b"authorized", b"declined")
    now = int(time.time())
    refused: list[tuple[dict[str, str], bytes]] = [
        (headers, tampered),                                             # body changed
        ({"Sandbox-Signature": sign("not-the-secret", body)}, body),     # wrong key
        (webhook(reference, secret="sandbox-secret", timestamp=now - 301)),  # stale
        (webhook(reference, secret="sandbox-secret", timestamp=now + 301)),  # from the future
        ({}, body),                                                      # unsigned
        ({"Sandbox-Signature": "t=soon,v1=abc"}, body),                  # malformed
        ({"Sandbox-Signature": headers["Sandbox-Signature"].split(",")[0]}, body),  # no v1
    ]
    for bad_headers, bad_body in refused:
        with pytest.raises(Forbidden):
            await engine.payments.webhook("sandbox", bad_headers, bad_body)
    after = await engine.orders.get(order.id)
    assert (after.status, after.payments[0].status, after.version) == (
        "placed", "awaiting_confirmation", order.version)
    # just within the tolerance is fine
    assert await engine.payments.webhook(
        "sandbox", *webhook(reference, timestamp=now - 290)) == [order.id]


async def test_webhook_secret_comes_from_the_settings(make_engine: Any) -> None:
    engine = await make_engine(plugin_settings={"sandbox": {"webhook_secret": "whsec-1",
                                                            "tolerance": 60}})
    await seed_shop(engine)
    order = await engine.orders.place(order_request(("MUG", 1), token="tok_async"))
    reference = order.payments[0].reference
    with pytest.raises(Forbidden):  # signed with the default secret
        await engine.payments.webhook("sandbox", *webhook(reference))
    with pytest.raises(Forbidden):  # right secret, older than 60 s
        await engine.payments.webhook("sandbox", *webhook(
            reference, secret="whsec-1", timestamp=int(time.time()) - 61))
    assert await engine.payments.webhook("sandbox", *gateway(engine).confirm(reference)) == [
        order.id]
    # listings of the plugins never show the secret
    listed = {p["name"]: p["settings"] for p in engine.plugins()}
    assert listed["sandbox"] == {"webhook_secret": "***", "tolerance": 60, "journal": "",
                                 "authorize_delay": 0.0, "lookups": True}


async def test_declined_and_captured_webhooks(engine: Engine) -> None:
    declined = await engine.orders.place(order_request(("MUG", 1), token="tok_async"))
    await engine.payments.webhook("sandbox", *gateway(engine).confirm(
        declined.payments[0].reference, "declined", reason="3-D Secure failed"))
    declined = await engine.orders.get(declined.id)
    assert declined.payments[0].status == "failed"
    assert declined.payments[0].failure_reason == "3-D Secure failed"
    assert declined.status == "placed"  # the customer may pay another way

    captured = await engine.orders.place(order_request(("MUG", 1), token="tok_async"))
    total = captured.totals.total
    await engine.payments.webhook("sandbox", *gateway(engine).confirm(
        captured.payments[0].reference, "captured", amount=total))
    captured = await engine.orders.get(captured.id)
    assert (captured.status, captured.payments[0].status) == ("processing", "captured")
    assert captured.totals.paid == total
    assert gateway(engine).charge_for(captured.payments[0].id).charged == total  # type: ignore[union-attr]


async def test_a_signed_but_malformed_webhook_is_invalid_input(engine: Engine) -> None:
    body = json.dumps({"reference": "sbx_x", "outcome": "paid"}).encode()
    with pytest.raises(InvalidInput, match="malformed"):
        await engine.payments.webhook("sandbox", {"Sandbox-Signature": sign(
            "sandbox-secret", body)}, body)


# -- the gateway's own idempotency and ledger -------------------------------------------------
def request(amount: int, key: str, *, token: str = "", payment_id: str = "pay_1",
            reference: str = "") -> PaymentRequest:
    return PaymentRequest(payment_id=payment_id, order_id="ord_1", order_number="ORD-1",
                          amount=amount, currency="EUR", token=token, reference=reference,
                          idempotency_key=key)


def test_the_same_idempotency_key_gets_the_same_answer_and_no_second_charge() -> None:
    sandbox = SandboxGateway(SandboxGateway.Settings())
    first = sandbox.ordnung_authorize(request(5000, "pay_1:authorize:1", token="tok_success"))
    assert sandbox.ordnung_authorize(request(5000, "pay_1:authorize:1",
                                             token="tok_success")) == first
    ref = first.reference
    capture = sandbox.ordnung_capture(request(2000, "pay_1:capture:2", reference=ref))
    assert capture.outcome == "approved"
    for _ in range(3):  # the shop retries after a timeout: same key, same answer
        assert sandbox.ordnung_capture(request(2000, "pay_1:capture:2",
                                               reference=ref)) == capture
    charge = sandbox.ledger[ref]
    assert (charge.captured, charge.charged) == (2000, 2000)
    assert [e.operation for e in charge.entries] == ["authorize", "capture"]
    # a new key is a new capture; beyond the authorization the gateway refuses
    assert sandbox.ordnung_capture(request(3000, "pay_1:capture:3",
                                           reference=ref)).outcome == "approved"
    over = sandbox.ordnung_capture(request(1, "pay_1:capture:4", reference=ref))
    assert (over.outcome, over.reason) == ("declined", "cannot capture 1: 0 is capturable")
    refund = sandbox.ordnung_refund(request(1500, "pay_1:refund:5", reference=ref))
    assert sandbox.ordnung_refund(request(1500, "pay_1:refund:5", reference=ref)) == refund
    assert sandbox.ordnung_refund(request(3501, "pay_1:refund:6",
                                          reference=ref)).outcome == "declined"
    assert (charge.captured, charge.refunded, charge.charged) == (5000, 1500, 3500)
    assert sandbox.calls == [("authorize", "pay_1", 5000), ("capture", "pay_1", 2000),
                             ("capture", "pay_1", 3000), ("capture", "pay_1", 1),
                             ("refund", "pay_1", 1500), ("refund", "pay_1", 3501)]
    # one authorization per payment, even under another key
    again = sandbox.ordnung_authorize(request(5000, "pay_1:authorize:9", token="tok_decline"))
    assert again == first


async def test_a_repeated_placement_authorizes_once_with_the_gateway(engine: Engine) -> None:
    first = await engine.orders.place(order_request(("MUG", 2)), idempotency_key="k-1")
    second = await engine.orders.place(order_request(("MUG", 2)), idempotency_key="k-1")
    assert first.id == second.id
    assert [c[0] for c in gateway(engine).calls] == ["authorize"]


async def test_partial_capture_partial_refund_and_void_through_the_engine(
        engine: Engine) -> None:
    order = await engine.orders.place(order_request(("SHIRT-M", 2), ("MUG", 1)))
    total = order.totals.total
    pid = order.payments[0].id
    sandbox = gateway(engine)

    order = await engine.payments.capture(order.id, amount=2000)
    order = await engine.payments.capture(order.id, amount=1000)
    assert (order.payments[0].status, order.totals.paid) == ("partially_captured", 3000)
    order = await engine.payments.void(order.id)  # release the rest of the authorization
    payment = order.payments[0]
    assert (payment.status, payment.authorized, payment.captured) == ("captured", 3000, 3000)
    with pytest.raises(InvalidInput):
        await engine.payments.capture(order.id, amount=1)
    order = await engine.payments.refund(order.id, amount=500, reason="scratched mug")
    assert (order.payments[0].status, order.totals.refunded) == ("partially_refunded", 500)
    with pytest.raises(InvariantViolation):
        await engine.payments.refund(order.id, amount=2501)
    order = await engine.payments.refund(order.id)
    assert (order.payments[0].status, order.totals.refunded) == ("refunded", 3000)

    charge = sandbox.charge_for(pid)
    assert charge is not None
    assert (charge.authorized, charge.captured, charge.released, charge.refunded,
            charge.charged) == (total, 3000, total - 3000, 3000, 0)
    assert [(e.operation, e.amount) for e in charge.entries] == [
        ("authorize", total), ("capture", 2000), ("capture", 1000), ("void", total - 3000),
        ("refund", 500), ("refund", 2500)]
    # what the gateway did, as its calls log has it
    assert [(op, amount) for op, p, amount in sandbox.calls if p == pid] == [
        (e.operation, e.amount) for e in charge.entries]


async def test_cancelling_voids_the_whole_authorization(engine: Engine) -> None:
    order = await engine.orders.place(order_request(("POSTER", 1)))
    order = await engine.orders.cancel(order.id, reason="changed mind")
    assert order.payments[0].status == "voided"
    charge = gateway(engine).charge_for(order.payments[0].id)
    assert charge is not None
    assert (charge.status, charge.released, charge.charged) == (
        "voided", order.totals.total, 0)


# -- card numbers ------------------------------------------------------------------------------
@pytest.mark.parametrize(("text", "is_pan"), [
    ("4242424242424242", True),
    ("4242 4242 4242 4242", True),
    ("5555-5555-5555-4444", True),
    ("378282246310005", True),          # 15 digits (Amex)
    ("6011000990139424", True),
    ("4242424242424241", False),        # fails Luhn
    ("424242424242", False),            # 12 digits
    ("42424242424242424242", False),    # 20 digits
    ("tok_success", False),
    ("", False),
    ("４２４２４２４２４２４２４２４２", False),  # full-width digits are no card number
])
def test_what_looks_like_a_card_number(text: str, is_pan: bool) -> None:
    assert looks_like_card_number(text) is is_pan


def test_luhn() -> None:
    assert luhn_valid("79927398713") and not luhn_valid("79927398710")


async def dump_database(engine: Engine) -> str:
    parts: list[str] = []
    for table in ALL_TABLES:
        parts.append(repr(await engine.db.fetch(f"SELECT * FROM {table._meta.tablename}")))
    return "\n".join(parts)


@pytest.mark.parametrize(("gateway_name", "method"), [("sandbox", ""),
                                                      ("manual", "bank_transfer")])
async def test_card_numbers_are_refused_and_leave_no_trace(
        engine: Engine, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str],
        gateway_name: str, method: str) -> None:
    pan = "4111 1111 1111 1111"
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as logs, pytest.raises(PaymentDeclined) as err:
        await engine.orders.place(order_request(("MUG", 1), token=pan, gateway=gateway_name,
                                                method=method))
    assert err.value.detail.endswith(CARD_NUMBER_REFUSED)
    order = await engine.orders.get(err.value.extra["order_id"])
    assert order.payments[0].failure_reason == CARD_NUMBER_REFUSED
    assert order.status == "cancelled"
    captured = capsys.readouterr()
    traces = [repr(logs), caplog.text, captured.out, captured.err, repr(err.value.to_dict()),
              await dump_database(engine)]
    if gateway_name == "sandbox":
        traces.append(repr(gateway(engine).ledger))
    for trace in traces:
        for needle in ("4111111111111111", "4111 1111 1111 1111", "1111 1111"):
            assert needle not in trace
    assert logs  # the placement did log: just not the number


# -- manual payments ----------------------------------------------------------------------------
async def test_bank_transfer_ships_only_once_staff_marked_it_paid(engine: Engine) -> None:
    order = await engine.orders.place(order_request(("POSTER", 1), token=None,
                                                    gateway="manual", method="bank_transfer"))
    assert (order.status, order.payments[0].status) == ("placed", "awaiting_payment")
    assert not order.payments[0].grants_terms
    with pytest.raises(IllegalTransition):
        await engine.fulfilment.create_shipment(order.id)
    # part of the money arrived: recorded, still not paid
    order = await engine.payments.capture(order.id, amount=1000, actor="staff:anna")
    assert (order.status, order.totals.paid) == ("placed", 1000)
    with pytest.raises(IllegalTransition):
        await engine.fulfilment.create_shipment(order.id)
    # the second transfer, for the rest, is a second manual payment
    order = await engine.payments.authorize(order.id, gateway="manual",
                                            method="bank_transfer")
    order = await engine.payments.capture(order.id, payment_id=order.payments[-1].id,
                                          actor="staff:anna")
    assert (order.status, order.totals.paid) == ("processing", order.totals.total)
    timeline = await engine.orders.timeline(order.id)
    assert ("payment.captured", "staff:anna") in [(e.kind, e.actor) for e in timeline]
    order = await ship_all(engine, order)
    assert order.status == "fulfilled"


async def test_invoice_grants_terms_and_is_marked_paid_later(engine: Engine) -> None:
    order = await engine.orders.place(order_request(("MUG", 2), token=None, gateway="manual",
                                                    method="invoice"))
    assert (order.status, order.totals.paid) == ("processing", 0)
    assert order.payments[0].grants_terms
    order = await ship_all(engine, order)
    assert (order.status, order.totals.paid) == ("fulfilled", 0)
    order = await engine.payments.capture(order.id, actor="staff:ben")  # the invoice was paid
    assert (order.payments[0].status, order.totals.paid, order.totals.balance) == (
        "captured", order.totals.total, 0)


async def test_cash_on_delivery_ships_unpaid_and_is_captured_after_delivery(
        engine: Engine) -> None:
    order = await engine.orders.place(order_request(("SHIRT-M", 1), token=None,
                                                    gateway="manual",
                                                    method="cash_on_delivery"))
    assert (order.status, order.totals.paid) == ("processing", 0)
    order = await ship_all(engine, order)
    assert (order.status, order.totals.paid) == ("fulfilled", 0)
    order = await engine.fulfilment.deliver(order.id, order.shipments[0].id)
    assert order.status == "delivered"
    # the courier collected the cash
    order = await engine.payments.capture(order.id, actor="courier")
    assert order.status == "delivered"
    assert (order.payments[0].status, order.totals.paid) == ("captured", order.totals.total)


async def test_terms_above_the_limit_are_not_granted(make_engine: Any) -> None:
    engine = await make_engine(plugin_settings={"manual": {"terms_limit": 5000}})
    await seed_shop(engine)
    small = await engine.orders.place(order_request(("MUG", 1), token=None, gateway="manual",
                                                    method="cash_on_delivery"))
    big = await engine.orders.place(order_request(("POSTER", 2), token=None, gateway="manual",
                                                  method="cash_on_delivery"))
    assert (small.status, big.status) == ("processing", "placed")
    methods = {m.method: m.grants_terms for m in await engine.payments.methods(big.id)
               if m.gateway == "manual"}
    assert methods == {"bank_transfer": False, "invoice": False, "cash_on_delivery": False}


async def test_a_method_that_is_not_offered_is_declined(make_engine: Any) -> None:
    engine = await make_engine(plugins=[
        *(p for p in builtin_plugins() if not (isinstance(p, tuple) and p[1] == "manual")),
        (ManualPayments, "manual", {"methods": ["bank_transfer"]})])
    await seed_shop(engine)
    with pytest.raises(PaymentDeclined, match="'invoice' is not offered"):
        await engine.orders.place(order_request(("MUG", 1), token=None, gateway="manual",
                                                method="invoice"))
