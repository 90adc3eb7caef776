"""E-mail notifications over a real SMTP exchange (an aiosmtpd server on a local port).

Confirmation after payment with the expected delivery date, shipping notice with the
tracking number, refund notice with the amount; each exactly once, also when the
after-commit reaction fails and is retried or an event is delivered twice.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import date
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from ordnung.core import Engine, Money
from ordnung.core.domain.orders import Order
from ordnung.core.errors import PluginError
from ordnung.plugins.fraud.rules import RiskRules
from ordnung.plugins.notifications.email import EmailNotifications, MailNotSent
from tests.support import builtin_plugins, order_request, paid_order, seed_shop, ship_all
from tests.test_plugins import make_due


@dataclass
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def text(self) -> str:
        part = self.message.get_body(("plain",))
        assert part is not None
        return str(part.get_content())

    @property
    def html(self) -> str:
        part = self.message.get_body(("html",))
        return str(part.get_content()) if part is not None else ""


class Inbox:
    """The SMTP server's handler: keeps every message it accepted."""

    def __init__(self) -> None:
        self.mails: list[Mail] = []
        #: recipient -> the answer to RCPT TO (e.g. "550 5.1.1 no such user")
        self.refuse: dict[str, str] = {}
        self._lock = threading.Lock()

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or envelope.content
        assert isinstance(raw, bytes)
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self._lock:
            self.mails.append(Mail(str(envelope.mail_from), list(envelope.rcpt_tos), message))
        return "250 OK"

    def about(self, order: Order) -> list[Mail]:
        return [m for m in self.mails if order.number in m.subject]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class SmtpServer:
    """An aiosmtpd server on 127.0.0.1 that can be stopped and started again on its port."""

    def __init__(self, **smtp_options: Any) -> None:
        self.inbox = Inbox()
        self.port = free_port()
        self.options = smtp_options
        self.controller: Controller | None = None

    def start(self) -> None:
        self.controller = Controller(self.inbox, hostname="127.0.0.1", port=self.port,
                                     **self.options)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    @property
    def mails(self) -> list[Mail]:
        return self.inbox.mails

    def about(self, order: Order) -> list[Mail]:
        return self.inbox.about(order)


@pytest.fixture
def smtp() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


SHOP = "Ordnung Shirts"


def email_settings(server: SmtpServer, **extra: Any) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": server.port, "shop_name": SHOP,
            "from_address": "orders@shirts.example", "timeout": 5} | extra


@pytest.fixture
async def shop(make_engine: Any, smtp: SmtpServer) -> AsyncIterator[Engine]:
    engine: Engine = await make_engine(plugins=[
        *builtin_plugins(), (EmailNotifications, "email", email_settings(smtp))])
    await seed_shop(engine)
    yield engine


def row(text: str, label: str) -> str:
    """The value of the row ``label`` in a plain-text notice ("  label   value")."""
    for line in text.splitlines():
        if line.strip().startswith(label + "  "):
            return line.strip()[len(label):].strip()
    raise AssertionError(f"no row {label!r} in:\n{text}")


def long_date(day: date) -> str:
    return f"{day:%A}, {day:%B} {day.day}, {day.year}"


# -- the confirmation ---------------------------------------------------------------------------
async def test_amounts_are_written_as_the_customers_locale_writes_them(
        make_engine: Any, smtp: SmtpServer) -> None:
    """Amounts come from CLDR (babel), not a hand-made "EUR 50.00"."""
    engine: Engine = await make_engine(plugins=[
        *builtin_plugins(),
        (EmailNotifications, "email", {**email_settings(smtp), "locale": "de_DE"})])
    await seed_shop(engine)
    await engine.orders.place(order_request(("SHIRT-M", 2), ("MUG", 1)))
    [mail] = smtp.mails
    assert row(mail.text, "2 x T-shirt M (SHIRT-M)") == "50,00\xa0€"
    assert row(mail.text, "1 x Mug (MUG)") == "12,00\xa0€"


async def test_confirmation_after_payment_with_the_expected_delivery_date(
        shop: Engine, smtp: SmtpServer) -> None:
    order = await shop.orders.place(order_request(("SHIRT-M", 2), ("MUG", 1)))
    assert order.status == "processing"  # authorized by the sandbox
    [mail] = smtp.mails
    assert mail.rcpt_tos == ["erika@example.com"]
    assert mail.mail_from == "orders@shirts.example"
    assert mail.message["To"] == "erika@example.com"
    assert mail.message["From"] == f"{SHOP} <orders@shirts.example>"
    assert mail.subject == f"{SHOP}: order {order.number} confirmed"
    text = mail.text
    assert "Hello Erika Mustermann," in text
    assert order.number in text
    assert row(text, "2 x T-shirt M (SHIRT-M)") == "€50.00"
    assert row(text, "1 x Mug (MUG)") == "€12.00"
    total = Money(order.totals.total, "EUR").localized("en")
    assert row(text, "Total") == total
    assert order.shipping is not None and order.shipping.expected_delivery is not None
    expected = order.shipping.expected_delivery
    assert row(text, "Expected delivery") == f"{long_date(expected)} ({expected.isoformat()})"
    assert expected.isoformat() in mail.html and total in mail.html
    assert mail.message["Message-ID"] == f"<{order.id}.confirmation@shirts.example>"
    # the timeline (and so webhooks: ``notification.sent``) tells that it went out, when
    # the delivery is expected
    [told] = [e for e in await shop.orders.timeline(order.id) if e.kind == "notification.sent"]
    assert told.data["notice"] == "confirmation" and told.data["channel"] == "email"
    assert told.data["to"] == "erika@example.com"
    assert told.data["expected_delivery"] == expected.isoformat()

    # capturing later is a payment event too: still one confirmation per order
    await shop.payments.capture(order.id)
    assert len(smtp.mails) == 1
    assert len([e for e in await shop.orders.timeline(order.id)
                if e.kind == "notification.sent"]) == 1


async def test_bank_transfer_is_confirmed_once_marked_paid(shop: Engine,
                                                           smtp: SmtpServer) -> None:
    order = await shop.orders.place(order_request(("POSTER", 1), token=None, gateway="manual",
                                                  method="bank_transfer"))
    assert smtp.mails == []  # not paid yet
    order = await shop.payments.capture(order.id, actor="staff:anna")
    [mail] = smtp.about(order)
    assert mail.subject.endswith("confirmed")
    assert row(mail.text, "Paid") == Money(order.totals.total, "EUR").localized("en")


async def test_cash_on_delivery_is_confirmed_at_once(shop: Engine, smtp: SmtpServer) -> None:
    order = await shop.orders.place(order_request(("MUG", 1), token=None, gateway="manual",
                                                  method="cash_on_delivery"))
    [mail] = smtp.about(order)
    assert "Paid" not in mail.text


async def test_an_async_payment_is_confirmed_when_the_webhook_arrives(
        shop: Engine, smtp: SmtpServer) -> None:
    from ordnung.plugins.payments.sandbox import webhook

    order = await shop.orders.place(order_request(("MUG", 1), token="tok_async"))
    assert smtp.mails == []
    await shop.payments.webhook("sandbox", *webhook(order.payments[0].reference))
    assert [m.subject for m in smtp.mails] == [f"{SHOP}: order {order.number} confirmed"]


async def test_a_held_order_is_confirmed_only_when_released(make_engine: Any,
                                                            smtp: SmtpServer) -> None:
    engine: Engine = await make_engine(plugins=[
        *builtin_plugins(), (EmailNotifications, "email", email_settings(smtp)),
        (RiskRules, "risk_rules", {"hold_at": 10, "velocity": [], "amounts": [
            {"currency": "EUR", "above": 0, "score": 10}]})])
    await seed_shop(engine)
    order = await engine.orders.place(order_request(("MUG", 1)))
    assert order.status == "on_hold"
    assert smtp.mails == []
    await engine.orders.release(order.id)
    assert [m.subject for m in smtp.mails] == [f"{SHOP}: order {order.number} confirmed"]


async def test_customers_and_guests_are_written_to_at_the_orders_address(
        shop: Engine, smtp: SmtpServer) -> None:
    customer = await shop.customers.create(email="Max@Example.com", name="Max")
    mine = await shop.orders.place(order_request(("MUG", 1), email="",
                                                 customer_id=customer.id))
    guest = await shop.orders.place(order_request(("MUG", 1), email="guest@example.org"))
    assert smtp.about(mine)[0].rcpt_tos == ["max@example.com"]
    assert smtp.about(guest)[0].rcpt_tos == ["guest@example.org"]


# -- shipping and refunds ------------------------------------------------------------------------
async def test_shipping_notice_with_carrier_and_tracking_number(make_engine: Any,
                                                                smtp: SmtpServer) -> None:
    engine: Engine = await make_engine(plugins=[*builtin_plugins(), (
        EmailNotifications, "email", email_settings(
            smtp, carrier_names={"flat_rate": "Parcel Post"},
            tracking_urls={"flat_rate": "https://track.example/{tracking_number}"}))])
    await seed_shop(engine)
    order = await ship_all(engine, await paid_order(engine, ("POSTER", 2)))
    shipment = order.shipments[0]
    assert shipment.tracking_number
    mails = smtp.about(order)
    assert [m.subject for m in mails] == [f"{SHOP}: order {order.number} confirmed",
                                          f"{SHOP}: order {order.number} has shipped"]
    text = mails[1].text
    assert row(text, "Carrier") == "Parcel Post"
    assert row(text, "Tracking number") == shipment.tracking_number
    assert "  2 x Poster (POSTER)" in text
    assert order.shipping is not None and order.shipping.expected_delivery is not None
    assert row(text, "Expected delivery").endswith(
        f"({order.shipping.expected_delivery.isoformat()})")
    link = f"https://track.example/{shipment.tracking_number}"
    assert f"Track it: {link}" in text and f'href="{link}"' in mails[1].html


async def test_refund_notices_carry_the_amount(shop: Engine, smtp: SmtpServer) -> None:
    order = await paid_order(shop, ("POSTER", 1))
    await shop.payments.refund(order.id, amount=1250, reason="damaged corner")
    order = await shop.payments.refund(order.id)
    rest = order.totals.total - 1250
    mails = smtp.about(order)
    assert [m.subject for m in mails] == [
        f"{SHOP}: order {order.number} confirmed",
        f"{SHOP}: refund of €12.50 for order {order.number}",
        f"{SHOP}: refund of {Money(rest, 'EUR').localized('en')} for order {order.number}"]
    assert row(mails[1].text, "Refunded") == "€12.50"
    assert row(mails[1].text, "Reason") == "damaged corner"
    assert row(mails[2].text, "Refunded") == Money(rest, "EUR").localized("en")
    assert row(mails[2].text, "Refunded for this order so far") == Money(
        order.totals.total, "EUR").localized("en")


async def test_a_refund_of_a_partly_captured_payment_is_notified_too(
        shop: Engine, smtp: SmtpServer) -> None:
    order = await shop.orders.place(order_request(("POSTER", 1)))
    await shop.payments.capture(order.id, amount=3000)
    order = await shop.payments.refund(order.id, amount=1000)
    assert order.payments[0].status == "partially_captured"
    assert [m.subject for m in smtp.about(order)][-1] == \
        f"{SHOP}: refund of €10.00 for order {order.number}"


# -- failures, retries and duplicates ---------------------------------------------------------
async def test_a_failed_send_is_recorded_retried_and_arrives_exactly_once(
        shop: Engine, smtp: SmtpServer) -> None:
    order = await paid_order(shop, ("MUG", 1))
    assert len(smtp.about(order)) == 1
    smtp.stop()  # the mail server goes away
    order = await ship_all(shop, order)
    assert order.status == "fulfilled"  # the shipment stands, the mail failed
    failures = await shop.runtime.journal.open_failures()
    assert [(f["plugin"], f["hook"], f["attempts"]) for f in failures] == [
        ("email", "ordnung_after_transition", 1)]
    assert "MailNotSent" in failures[0]["last_error"]
    assert "shipped e-mail for order " + order.number in failures[0]["last_error"]

    await make_due(shop)
    assert (await shop.run_maintenance())["retried_failed"] == 1  # still down
    smtp.start()
    await make_due(shop)
    assert (await shop.run_maintenance())["retried_ok"] == 1
    assert [m.subject for m in smtp.about(order)] == [
        f"{SHOP}: order {order.number} confirmed", f"{SHOP}: order {order.number} has shipped"]
    assert await shop.runtime.journal.open_failures() == []
    await make_due(shop)
    assert await shop.run_maintenance() == {"swept": 0, "retried_ok": 0, "retried_failed": 0}
    assert len(smtp.about(order)) == 2


async def test_an_event_delivered_twice_sends_one_mail(shop: Engine, smtp: SmtpServer) -> None:
    order = await ship_all(shop, await paid_order(shop, ("MUG", 1)))
    shipped = [e for e in await shop.orders.timeline(order.id) if e.kind == "shipment.shipped"]
    assert len(shipped) == 1
    await shop.dispatcher.deliver(shipped, order)  # again, e.g. a sweeper's late copy
    # and twice at the same time: one sends, the other waits for its retry
    await asyncio.gather(shop.dispatcher.deliver(shipped, order),
                         shop.dispatcher.deliver(shipped, order))
    await make_due(shop)
    await shop.run_maintenance()
    assert await shop.runtime.journal.open_failures() == []
    assert [m.subject for m in smtp.about(order)] == [
        f"{SHOP}: order {order.number} confirmed", f"{SHOP}: order {order.number} has shipped"]


async def test_concurrent_deliveries_of_a_new_notice_send_it_once(
        shop: Engine, smtp: SmtpServer) -> None:
    order = await paid_order(shop, ("MUG", 1))
    plugin = shop.host.pm.get_plugin("email")
    assert isinstance(plugin, EmailNotifications)
    await shop.payments.refund(order.id, amount=100)
    refund = [e for e in await shop.orders.timeline(order.id)
              if e.transition == "refund_partial"]
    order = await shop.orders.get(order.id)
    await shop.plugin_store("email").delete("mail", f"{order.id}:refund:{refund[0].id}")
    outcomes = await asyncio.gather(
        *(plugin.ordnung_after_transition(refund[0], order) for _ in range(3)),
        return_exceptions=True)
    assert all(o is None or isinstance(o, MailNotSent) for o in outcomes), outcomes
    refunds = [m for m in smtp.about(order) if "refund" in m.subject]
    assert len(refunds) == 2  # the first delivery, and one of the three new ones


async def test_a_recipient_refused_for_good_is_not_retried(shop: Engine,
                                                            smtp: SmtpServer) -> None:
    smtp.inbox.refuse = {"typo@example.con": "550 5.1.1 no such user",
                         "full@example.com": "452 4.2.2 mailbox full"}
    typo = await shop.orders.place(order_request(("MUG", 1), email="typo@example.con"))
    full = await shop.orders.place(order_request(("MUG", 1), email="full@example.com"))
    assert smtp.mails == []
    # the permanent refusal is remembered, not retried; the temporary one is retried
    failures = await shop.runtime.journal.open_failures()
    assert len(failures) == 1 and "mailbox full" in failures[0]["last_error"]
    assert full.number in failures[0]["last_error"]
    record = await shop.plugin_store("email").get("mail", f"{typo.id}:confirmation")
    assert record is not None and record["status"] == "refused"
    assert "550 5.1.1 no such user" in record["reason"]
    smtp.inbox.refuse = {"typo@example.con": "550 5.1.1 no such user"}
    await make_due(shop)
    assert (await shop.run_maintenance())["retried_ok"] == 1
    assert [m.rcpt_tos for m in smtp.mails] == [["full@example.com"]]


async def test_nothing_is_sent_to_an_erased_address(shop: Engine, smtp: SmtpServer) -> None:
    customer = await shop.customers.create(email="gone@example.com", name="Gone")
    order = await paid_order(shop, ("MUG", 1))
    order = await shop.orders.place(order_request(("MUG", 1), customer_id=customer.id,
                                                  email=customer.email))
    await shop.customers.erase(customer.id)
    before = len(smtp.mails)
    await shop.payments.capture(order.id)
    await ship_all(shop, await shop.orders.get(order.id))
    assert len(smtp.mails) == before


# -- the SMTP session: authentication, TLS -------------------------------------------------------
def accept(login: str, password: str) -> Any:
    def authenticator(server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                      auth_data: Any) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword) and auth_data.login == login.encode()
              and auth_data.password == password.encode())
        return AuthResult(success=ok, handled=False)
    return authenticator


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
async def test_login_with_credentials_that_are_never_logged(
        make_engine: Any, caplog: pytest.LogCaptureFixture,
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    server = SmtpServer(authenticator=accept("shop", "s3cr3t-pw"), auth_required=True,
                        auth_require_tls=False)
    server.start()
    try:
        monkeypatch.setenv("SHOP_SMTP_PASSWORD", "s3cr3t-pw")
        caplog.set_level(logging.DEBUG)
        with structlog.testing.capture_logs() as logs:
            good: Engine = await make_engine(plugins=[*builtin_plugins(), (
                EmailNotifications, "email", email_settings(
                    server, username="shop", password_env="SHOP_SMTP_PASSWORD"))])
            await seed_shop(good)
            order = await good.orders.place(order_request(("MUG", 1)))
            described = repr(good.plugins())
            await good.stop()
            bad: Engine = await make_engine(plugins=[*builtin_plugins(), (
                EmailNotifications, "email", email_settings(server, username="shop",
                                                            password="wr0ng-pw"))])
            refused = await bad.orders.place(order_request(("MUG", 1)))
        assert [m.subject for m in server.mails] == [f"{SHOP}: order {order.number} confirmed"]
        failures = await bad.runtime.journal.open_failures()
        assert len(failures) == 1 and "SMTPAuthenticationError" in failures[0]["last_error"]
        assert refused.number in failures[0]["last_error"]
        output = capsys.readouterr()
        traces = {"structlog": repr(logs), "logging": caplog.text, "stdout": output.out,
                  "stderr": output.err, "failures": repr(failures),
                  "plugins": repr(bad.plugins()) + described}
        for where, trace in traces.items():
            assert "s3cr3t-pw" not in trace and "wr0ng-pw" not in trace, where
    finally:
        server.stop()


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (made with the openssl command)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    return cert, key


async def test_starttls_with_a_private_ca(make_engine: Any,
                                          certificate: tuple[Path, Path]) -> None:
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    server = SmtpServer(tls_context=context, require_starttls=True)
    server.start()
    try:
        trusting: Engine = await make_engine(plugins=[*builtin_plugins(), (
            EmailNotifications, "email", email_settings(server, starttls=True,
                                                        ca_file=str(cert)))])
        await seed_shop(trusting)
        order = await trusting.orders.place(order_request(("MUG", 1)))
        assert [m.subject for m in server.mails] == [f"{SHOP}: order {order.number} confirmed"]
        await trusting.stop()
        # without the CA the certificate is not trusted: nothing is sent, the failure is kept
        doubting: Engine = await make_engine(plugins=[*builtin_plugins(), (
            EmailNotifications, "email", email_settings(server, starttls=True))])
        await doubting.orders.place(order_request(("MUG", 1)))
        failures = await doubting.runtime.journal.open_failures()
        assert len(failures) == 1 and "certificate" in failures[0]["last_error"].lower()
        assert len(server.mails) == 1
    finally:
        server.stop()


@pytest.mark.parametrize("settings", [
    {"use_tls": True, "starttls": True}, {"from_address": "nobody"}, {"port": 0},
    {"locale": "xx_XX"}, {"tracking_urls": {"flat_rate": "https://track.example/"}},
    {"notices": ["newsletter"]}, {"smtp_host": "x"},
])
async def test_invalid_settings_stop_start_up(make_engine: Any,
                                              settings: dict[str, Any]) -> None:
    with pytest.raises(PluginError) as err:
        await make_engine(plugins=[*builtin_plugins(),
                                   (EmailNotifications, "email", settings)])
    assert err.value.plugin == "email"


async def test_only_the_configured_notices_are_sent(make_engine: Any, smtp: SmtpServer) -> None:
    engine: Engine = await make_engine(plugins=[*builtin_plugins(), (
        EmailNotifications, "email", email_settings(smtp, notices=["shipped"], html=False))])
    await seed_shop(engine)
    order = await ship_all(engine, await paid_order(engine, ("MUG", 1)))
    await engine.payments.refund(order.id, amount=100)
    [mail] = smtp.mails
    assert mail.subject.endswith("has shipped")
    assert not mail.message.is_multipart() and mail.html == ""
