"""E-mail notifications to the customer, sent over SMTP.

Three order notices, each to the order's e-mail address (guests and registered
customers alike), with a plain-text body and an HTML alternative:

* **order confirmation** — once the order's payment is secured, i.e. when the
  authorized or captured money covers the total (the order's
  ``payment_secured`` transition; cash on delivery and invoice secure it at
  once): the order number, the lines, the totals and the **expected delivery
  date**. Sent once per order; an order held for review gets it when it is
  released, a cancelled one not at all;
* **shipping notice** — when a shipment ships: carrier, tracking number (and
  a tracking link when one is configured), the items and the expected delivery;
* **refund notice** — for every refund of a payment, with the amount.

Sending is an after-commit reaction: a failed send raises, the core records
the failure and retries it with backoff. Each notice is sent at most once,
also when a reaction is retried or an event delivered twice: the plugin
remembers in its store (by order and notice, never the address) what it is
sending and what it sent. Only a process that dies between the SMTP server's
"250 OK" and that record can cause a second copy, and that copy carries the
same Message-ID. A recipient the mail server refuses for good (a 5xx answer,
e.g. "no such user") is not retried: the refusal is logged and remembered.
The password is never logged or stored anywhere but in the
settings (or, with ``password_env``, in the environment).

Two account notices (the ``ordnung_account_notice`` hook), to the customer's address:

* **password reset** — a one-time link (``password_reset_url`` with ``{token}`` in it)
  or, without a configured link, the token itself, and until when it works;
* **e-mail verification** — the same for ``verification_url``.

They are sent once, when asked for; a failure raises to the engine, which logs it (the
customer asks again). The token is in the message only: never logged, never stored.
"""

from __future__ import annotations

import html
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from email.message import EmailMessage
from email.utils import format_datetime, formataddr
from typing import Literal

import aiosmtplib
import msgspec
import structlog
from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from babel.dates import format_datetime as format_local_datetime

from ordnung.plugin import (
    AccountNotice,
    Event,
    Money,
    Order,
    PluginStore,
    Shipment,
    WithContext,
    hookimpl,
    new_id,
    utcnow,
)

log = structlog.get_logger("ordnung.notifications")

Notice = Literal["confirmation", "shipped", "refund", "password_reset", "email_verification"]

#: order states in which a confirmation is not (or no longer) sent
NOT_CONFIRMED = frozenset({"draft", "placed", "on_hold", "cancelled"})
REFUND_TRANSITIONS = frozenset({"refund_partial", "refund_all"})


class MailNotSent(Exception):
    """Raised to the core (which records it and retries): the e-mail did not go out."""


class Refused(Exception):
    """The mail server refused the recipient for good (5xx): no retry can deliver it."""


@dataclass
class Mail:
    """What a notice says, before it becomes a MIME message."""

    subject: str
    greeting: str
    intro: str
    #: (label, value) rows: items, totals, dates
    rows: list[tuple[str, str]] = field(default_factory=list)
    outro: str = ""
    link: str = ""
    #: what the link says (plain text: "<label>: <url>")
    link_label: str = "Track it"


def notice_of(event: Event) -> str | None:
    """Which notice (``Settings.notices``) a transition event may call for, if any."""
    machine, transition = event.machine or "", event.transition or ""
    if machine == "order" and transition == "payment_secured":
        return "confirmation"
    if machine == "shipment" and event.to_state == "shipped":
        return "shipped"
    if machine == "payment" and transition in REFUND_TRANSITIONS:
        return "refund"
    return None


class EmailNotifications(WithContext["EmailNotifications.Settings"]):
    """E-mails the customer the order confirmation, shipping notice and refund notice (SMTP)."""

    class Settings(msgspec.Struct, forbid_unknown_fields=True):
        host: str = "localhost"
        port: int = 25
        from_address: str = "orders@example.com"
        reply_to: str = ""
        shop_name: str = "Our shop"
        #: implicit TLS from the first byte (SMTPS, usually port 465)
        use_tls: bool = False
        #: STARTTLS: None upgrades when the server offers it, True requires it, False never
        starttls: bool | None = None
        validate_certs: bool = True
        #: a CA bundle (PEM file) to trust besides the system's, e.g. a private CA
        ca_file: str = ""
        username: str = ""
        password: str = ""
        #: name of an environment variable holding the password (instead of ``password``)
        password_env: str = ""
        #: seconds for connecting and for each SMTP command
        timeout: float = 30.0
        #: language of dates and amounts in e-mails (a CLDR locale such as "en", "de_DE")
        locale: str = "en"
        html: bool = True
        #: which notices to send
        notices: list[Notice] = msgspec.field(
            default_factory=lambda: ["confirmation", "shipped", "refund", "password_reset",
                                     "email_verification"])
        #: the storefront page where a customer chooses a new password, with {token}
        password_reset_url: str = ""
        #: the storefront page that confirms an e-mail address, with {token}
        verification_url: str = ""
        #: a display name per carrier plugin, e.g. {"flat_rate": "Parcel Post"}
        carrier_names: dict[str, str] = {}
        #: a tracking link per carrier plugin, with {tracking_number} in it
        tracking_urls: dict[str, str] = {}

        def __post_init__(self) -> None:
            if self.use_tls and self.starttls:
                raise ValueError("use_tls and starttls exclude each other")
            if "@" not in self.from_address:
                raise ValueError("from_address must be an e-mail address")
            if not 0 < self.port < 65536:
                raise ValueError("port must be between 1 and 65535")
            if self.timeout <= 0:
                raise ValueError("timeout must be positive")
            try:
                Locale.parse(self.locale)
            except (UnknownLocaleError, ValueError):
                raise ValueError(f"unknown locale {self.locale!r}") from None
            for name in ("password_reset_url", "verification_url"):
                url = getattr(self, name)
                if url and "{token}" not in url:
                    raise ValueError(f"{name} lacks {{token}}")
            for carrier, url in self.tracking_urls.items():
                if "{tracking_number}" not in url:
                    raise ValueError(f"the tracking URL of {carrier} lacks {{tracking_number}}")

        def __repr__(self) -> str:  # keep the password out of tracebacks
            return (f"EmailNotifications.Settings(host={self.host!r}, port={self.port}, "
                    f"username={self.username!r}, password=***)")

    def __init__(self, settings: EmailNotifications.Settings) -> None:
        self.settings = settings
        #: seconds a "sending" mark holds off other deliveries of the same notice
        self.lease = max(60.0, 3 * settings.timeout)

    def _store(self) -> PluginStore:
        return self.started.store

    # -- reacting -------------------------------------------------------------------------
    @hookimpl
    async def ordnung_after_transition(self, event: Event, order: Order | None) -> None:
        if order is None or not order.email:
            return  # not an order's event, or the address was erased
        kind = notice_of(event)
        if kind is None or kind not in self.settings.notices:
            return
        found = {"confirmation": self._confirmation_notice, "shipped": self._shipped_notice,
                 "refund": self._refund_notice}[kind](event, order)
        if found is not None:
            key, mail = found
            await self._send_once(key, order, mail)

    def _confirmation_notice(self, event: Event, order: Order) -> tuple[str, Mail] | None:
        # payment_secured fires when the authorized or captured money covers the total
        # (or a payment grants terms); an order held for review fires it when released
        if order.status in NOT_CONFIRMED or not self.started.engine.payment_secured(order):
            return None
        return f"{order.id}:confirmation", self._confirmation(order)

    def _shipped_notice(self, event: Event, order: Order) -> tuple[str, Mail] | None:
        shipment = next((s for s in order.shipments if s.id == event.entity_id), None)
        if shipment is None:
            return None
        return f"{order.id}:shipped:{shipment.id}", self._shipped(order, shipment)

    def _refund_notice(self, event: Event, order: Order) -> tuple[str, Mail] | None:
        amount = int(event.data.get("amount") or 0)
        if amount <= 0:
            return None
        return (f"{order.id}:refund:{event.id}",
                self._refund(order, amount, str(event.data.get("reason") or "")))

    async def _send_once(self, key: str, order: Order, mail: Mail) -> bool:
        """Send ``mail`` unless it was sent (or is being sent) already; True if sent now."""
        store = self._store()
        now = time.time()
        record = await store.get("mail", key)
        if record is None and not await store.add("mail", key, {"status": "sending",
                                                                "since": now}):
            record = await store.get("mail", key)  # another delivery got there first
        if record is not None:
            if record.get("status") in ("sent", "refused"):
                return False
            if now - float(record.get("since", 0)) < self.lease:
                raise MailNotSent(f"the {key.split(':')[1]} e-mail for order {order.number} "
                                  "is being sent by another delivery")
            await store.put("mail", key, {"status": "sending", "since": now})  # stale mark
        try:
            message_id = await self._deliver(key, order, mail)
        except Refused as refused:
            # permanent (5xx): retrying cannot help; keep the verdict, raise nothing
            await store.put("mail", key, {"status": "refused", "at": utcnow().isoformat(),
                                          "reason": str(refused)})
            log.warning("e-mail refused by the mail server", notice=key.split(":")[1],
                        order_number=order.number, reason=str(refused))
            return False
        except BaseException:
            await store.delete("mail", key)  # let the retry send it
            raise
        await store.put("mail", key, {"status": "sent", "at": utcnow().isoformat(),
                                      "message_id": message_id})
        log.info("e-mail sent", notice=key.split(":")[1], order_number=order.number)
        try:  # the timeline (and webhooks) learn of it; the e-mail is out either way
            await self.started.engine.record_notification(
                order.id, channel="email", notice=key.split(":")[1], to=order.email,
                message_id=message_id)
        except Exception as exc:
            log.warning("recording the sent e-mail failed", order_number=order.number,
                        error=repr(exc))
        return True

    async def _deliver(self, key: str, order: Order, mail: Mail) -> str:
        # the id is stable per notice: a copy sent twice is recognisably the same message
        message = self._message(mail, to=order.email, local_id=key.replace(":", "."))
        try:
            await self._send(message)
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise MailNotSent(f"the {key.split(':')[1]} e-mail for order {order.number} was "
                              f"not sent: {type(exc).__name__}: {exc}") from exc
        return str(message["Message-ID"])

    def _message(self, mail: Mail, *, to: str, local_id: str) -> EmailMessage:
        """The e-mail of ``mail`` to ``to``: plain text, and HTML beside it if set."""
        s = self.settings
        message = EmailMessage()
        message["Subject"] = mail.subject
        message["From"] = formataddr((s.shop_name, s.from_address))
        message["To"] = to
        if s.reply_to:
            message["Reply-To"] = s.reply_to
        message["Date"] = format_datetime(utcnow())
        message["Message-ID"] = f"<{local_id}@{s.from_address.rsplit('@', 1)[1]}>"
        message.set_content(render_text(mail))
        if s.html:
            message.add_alternative(render_html(mail), subtype="html")
        return message

    # -- account notices -------------------------------------------------------------------
    @hookimpl
    async def ordnung_account_notice(self, notice: AccountNotice) -> bool | None:
        if notice.kind not in self.settings.notices:
            return None
        mail = self._account_mail(notice)
        message = self._message(mail, to=notice.email, local_id=new_id("acct"))
        try:
            await self._send(message)
        except Refused as refused:
            log.warning("account e-mail refused by the mail server", notice=notice.kind,
                        customer_id=notice.customer.id, reason=str(refused))
            return False
        except (aiosmtplib.SMTPException, OSError) as exc:
            # the message (and so the token) stays out of the error
            raise MailNotSent(f"the {notice.kind} e-mail was not sent: "
                              f"{type(exc).__name__}") from None
        log.info("e-mail sent", notice=notice.kind, customer_id=notice.customer.id)
        return True

    async def _send(self, message: EmailMessage) -> None:
        """Hand the message to the mail server: ``Refused`` when it refuses every
        recipient for good (5xx), its own error otherwise."""
        s = self.settings
        password = os.environ.get(s.password_env, "") if s.password_env else s.password
        try:
            await aiosmtplib.send(
                message, hostname=s.host, port=s.port, username=s.username or None,
                password=password or None, use_tls=s.use_tls, start_tls=s.starttls,
                validate_certs=s.validate_certs, cert_bundle=s.ca_file or None,
                timeout=s.timeout)
        except aiosmtplib.SMTPRecipientsRefused as exc:
            codes = [error.code for error in exc.recipients]
            if codes and all(500 <= code < 600 for code in codes):
                raise Refused("; ".join(f"{e.code} {e.message}" for e in exc.recipients)) \
                    from None
            raise

    def _account_mail(self, notice: AccountNotice) -> Mail:
        s = self.settings
        until = format_local_datetime(notice.expires_at, format="medium", locale=s.locale)
        name = notice.customer.name
        greeting = f"Hello {name}," if name else "Hello,"
        if notice.kind == "password_reset":
            template, subject = s.password_reset_url, f"{s.shop_name}: choose a new password"
            intro = ("someone asked to choose a new password for your account. If it was you, "
                     "follow the link below; if not, ignore this e-mail and your password "
                     "stays as it is.")
        else:
            template, subject = s.verification_url, f"{s.shop_name}: confirm your e-mail address"
            intro = "please confirm that this is your e-mail address by following the link below."
        rows = [("Valid until", f"{until} UTC")]
        link = template.replace("{token}", notice.token) if template else ""
        if not link:
            rows.insert(0, ("Your code", notice.token))
        return Mail(subject=subject, greeting=greeting, intro=intro, rows=rows, link=link,
                    link_label="Open the link", outro="The link works once.")

    # -- the notices ----------------------------------------------------------------------
    def _money(self, amount: int, order: Order) -> str:
        return Money(amount, order.currency).localized(self.settings.locale)

    def _date(self, day: date) -> str:
        return f"{format_date(day, format='full', locale=self.settings.locale)} ({day.isoformat()})"

    @staticmethod
    def _greeting(order: Order) -> str:
        address = order.shipping_address or order.billing_address
        name = address.name if address is not None else ""
        return f"Hello {name}," if name else "Hello,"

    def _expected(self, order: Order) -> list[tuple[str, str]]:
        if order.shipping is None or order.shipping.expected_delivery is None:
            return []
        return [("Expected delivery", self._date(order.shipping.expected_delivery))]

    def _confirmation(self, order: Order) -> Mail:
        rows: list[tuple[str, str]] = []
        for line in order.lines:
            price = "free gift" if line.gift else self._money(line.line_total, order)
            rows.append((f"{line.quantity} x {line.name} ({line.sku})", price))
        t = order.totals
        rows.append(("Subtotal", self._money(t.subtotal, order)))
        if t.discounts:
            rows.append(("Discounts", self._money(t.discounts, order)))
        if order.shipping is not None:
            rows.append((f"Shipping ({order.shipping.name})", self._money(t.shipping, order)))
        rows.append(("Tax included" if order.prices_include_tax else "Tax",
                     self._money(t.tax, order)))
        rows.append(("Total", self._money(t.total, order)))
        if t.paid:
            rows.append(("Paid", self._money(t.paid, order)))
        rows += self._expected(order)
        if order.shipping_address is not None:
            a = order.shipping_address
            rows.append(("Shipping to", ", ".join(p for p in (
                a.name, a.line1, a.line2, f"{a.postal_code} {a.city}".strip(), a.country) if p)))
        return Mail(subject=f"{self.settings.shop_name}: order {order.number} confirmed",
                    greeting=self._greeting(order),
                    intro=f"thank you for your order {order.number}. We are preparing it now.",
                    rows=rows, outro="We will let you know as soon as it ships.")

    def _shipped(self, order: Order, shipment: Shipment) -> Mail:
        s = self.settings
        carrier = s.carrier_names.get(shipment.carrier) or (
            order.shipping.name if order.shipping is not None
            and order.shipping.carrier == shipment.carrier else "") or shipment.carrier
        rows = [("Carrier", carrier), ("Tracking number", shipment.tracking_number)]
        for sl in shipment.lines:
            name = next((ln.name for ln in order.lines if ln.id == sl.line_id), sl.sku)
            rows.append((f"{sl.quantity} x {name} ({sl.sku})", ""))
        rows += self._expected(order)
        template = s.tracking_urls.get(shipment.carrier, "")
        link = template.replace("{tracking_number}", shipment.tracking_number) if template else ""
        return Mail(subject=f"{s.shop_name}: order {order.number} has shipped",
                    greeting=self._greeting(order),
                    intro=f"your order {order.number} is on its way with {carrier}, tracking "
                          f"number {shipment.tracking_number}.",
                    rows=rows, link=link)

    def _refund(self, order: Order, amount: int, reason: str) -> Mail:
        money = self._money(amount, order)
        rows = [("Refunded", money)]
        if reason:
            rows.append(("Reason", reason))
        rows.append(("Refunded for this order so far", self._money(order.totals.refunded, order)))
        return Mail(subject=f"{self.settings.shop_name}: refund of {money} for order "
                            f"{order.number}",
                    greeting=self._greeting(order),
                    intro=f"we have refunded {money} for your order {order.number}. Depending "
                          "on your bank it reaches your account within a few days.",
                    rows=rows)


def render_text(mail: Mail) -> str:
    width = max((len(label) for label, _ in mail.rows), default=0)
    lines = [mail.greeting, "", mail.intro, ""]
    lines += [f"  {label.ljust(width)}  {value}".rstrip() for label, value in mail.rows]
    if mail.link:
        lines += ["", f"{mail.link_label}: {mail.link}"]
    if mail.outro:
        lines += ["", mail.outro]
    return "\n".join(lines) + "\n"


def render_html(mail: Mail) -> str:
    e = html.escape
    rows = "".join(f"<tr><td>{e(label)}</td><td>{e(value)}</td></tr>" for label, value in mail.rows)
    parts: Sequence[str] = [
        "<!DOCTYPE html><html><body>",
        f"<p>{e(mail.greeting)}</p>", f"<p>{e(mail.intro)}</p>",
        f"<table>{rows}</table>" if rows else "",
        f'<p><a href="{e(mail.link)}">{e(LINK_TEXT.get(mail.link_label, mail.link_label))}'
        '</a></p>' if mail.link else "",
        f"<p>{e(mail.outro)}</p>" if mail.outro else "",
        "</body></html>"]
    return "".join(parts)


#: the HTML link text for each plain-text link label
LINK_TEXT = {"Track it": "Track your parcel"}
