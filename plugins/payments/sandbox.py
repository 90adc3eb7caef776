"""The sandbox card gateway: a deterministic gateway for development and tests.

Test tokens (pass as ``payment.token``):

==================  ===========================================================
``tok_success``     authorized at once
``tok_decline``     declined: insufficient funds
``tok_fraud``       declined: suspected fraud
``tok_async``       pending; confirmed later by a signed webhook
==================  ===========================================================

Any other token is declined ("invalid test token"); a card number (13 to 19
digits passing the Luhn check) is declined with "card numbers are not
accepted; send a gateway token" and is neither logged nor kept.

Authorize, capture (partial captures too), refund (partial refunds too) and
void work like a real gateway's: the sandbox keeps its own ledger of what it
authorized, captured, refunded and released per payment (``ledger``,
``charge_for``), refuses to capture a payment still awaiting confirmation
(``tok_async`` before its webhook) and to capture or refund more than is left
of a payment it knows, and answers a repeated request with the same idempotency key with
the first answer, without a second charge. The ledger lives in the process,
as a remote gateway's lives on the gateway's side; a payment another process
authorized is accepted as the gateway would.

It answers ``ordnung_lookup_operation`` from what it remembers by idempotency
key, never carrying anything out. With the ``journal`` setting it writes every
operation down in a file and reads back what it does not remember, so processes
(and a restarted server) sharing the file share one gateway's memory of what it
answered; ``authorize_delay`` makes it answer an authorization it has carried out
only that many seconds later (a process can die meanwhile, as in a crash test);
``lookups = false`` makes it a gateway that cannot look operations up.

Webhooks are signed: header ``Sandbox-Signature: t=<unix>,v1=<hex>`` where
``v1 = HMAC-SHA256(secret, f"{t}.{body}")``. Stale (older or newer than the
tolerance) or tampered requests are refused. The body is JSON:
``{"reference": ..., "outcome": "authorized"|"captured"|"declined", "amount":
<minor units, optional>, "reason": "..."}``. :func:`webhook` builds such a
call for a payment reference; :meth:`SandboxGateway.confirm` also records
the outcome in the gateway's ledger. A repeated webhook is harmless: the core
applies each outcome once.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import os
import time
from collections.abc import Callable, Coroutine
from typing import Annotated, Any, Literal

import msgspec

from ordnung.plugin import (
    Forbidden,
    GatewayResult,
    InvalidInput,
    OperationLookup,
    Order,
    PaymentMethod,
    PaymentRequest,
    PaymentUpdate,
    hookimpl,
)
from ordnung.plugins.payments.cards import CARD_NUMBER_REFUSED, looks_like_card_number

SIGNATURE_HEADER = "sandbox-signature"
DEFAULT_SECRET = "sandbox-secret"

#: the documented test tokens and what the gateway answers to each
TOKENS: dict[str, tuple[Literal["approved", "pending", "declined"], str]] = {
    "tok_success": ("approved", ""),
    "tok_decline": ("declined", "insufficient funds"),
    "tok_fraud": ("declined", "suspected fraud"),
    "tok_async": ("pending", ""),
}

WebhookOutcome = Literal["authorized", "captured", "declined"]
Operation = Literal["authorize", "capture", "refund", "void", "confirm"]


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The signature header value a sandbox webhook carries."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


def webhook(reference: str, outcome: WebhookOutcome = "authorized", *,
            amount: int | None = None, reason: str = "", secret: str = DEFAULT_SECRET,
            timestamp: int | None = None) -> tuple[dict[str, str], bytes]:
    """Headers and body of a signed sandbox webhook for the payment ``reference``.

    Post them to the sandbox's webhook endpoint (``engine.payments.webhook("sandbox",
    headers, body)``, or ``POST /webhooks/payments/sandbox`` over REST).
    """
    payload: dict[str, Any] = {"reference": reference, "outcome": outcome}
    if amount is not None:
        payload["amount"] = amount
    if reason:
        payload["reason"] = reason
    body = json.dumps(payload, separators=(",", ":")).encode()
    return {"Sandbox-Signature": sign(secret, body, timestamp),
            "Content-Type": "application/json"}, body


class WebhookBody(msgspec.Struct, kw_only=True, frozen=True):
    reference: str
    outcome: WebhookOutcome
    amount: int | None = None
    reason: str = ""


class LedgerEntry(msgspec.Struct, kw_only=True, frozen=True):
    """One operation the gateway carried out (replays of an idempotency key add none)."""

    operation: Operation
    amount: int
    outcome: str
    idempotency_key: str = ""
    reason: str = ""


class JournalEntry(msgspec.Struct, kw_only=True, frozen=True):
    """One line of the sandbox's journal: an operation's key and the answer it got."""

    key: str
    payment_id: str
    amount: int
    result: GatewayResult


class Charge(msgspec.Struct, kw_only=True):
    """What the gateway holds for one payment: its side of the books."""

    reference: str
    payment_id: str
    order_number: str = ""
    currency: str = ""
    #: the amount asked for at authorization
    amount: int
    #: pending | authorized | declined | voided
    status: str = "pending"
    authorized: int = 0
    captured: int = 0
    refunded: int = 0
    #: authorization released without capture
    released: int = 0
    #: authorized by another process's sandbox: its limits are not known here
    adopted: bool = False
    entries: list[LedgerEntry] = msgspec.field(default_factory=list)

    @property
    def charged(self) -> int:
        """Money taken from the card and kept: captured minus refunded."""
        return self.captured - self.refunded

    @property
    def capturable(self) -> int:
        """Nothing while the charge awaits confirmation: as with a real card gateway,
        money the card holder has not confirmed (3-D Secure...) cannot be taken."""
        if self.status == "authorized":
            return self.authorized - self.captured - self.released
        return 0

    @property
    def refundable(self) -> int:
        return self.captured - self.refunded

    def capture(self, amount: int) -> None:
        """An adopted charge was authorized elsewhere: its authorization covers at least
        what is captured."""
        self.captured += amount
        if self.adopted:
            self.authorized = max(self.authorized, self.captured)

    def refund(self, amount: int) -> None:
        """An adopted charge: what is refunded was captured."""
        self.refunded += amount
        if self.adopted:
            self.captured = max(self.captured, self.refunded)


#: what an amount to capture or refund must not exceed, as a decline names it
_LEFT = {"capture": "capturable", "refund": "refundable"}


class SandboxGateway:
    """Sandbox card gateway with documented test tokens, a ledger and signed webhooks."""

    class Settings(msgspec.Struct, forbid_unknown_fields=True):
        webhook_secret: str = DEFAULT_SECRET
        #: seconds a webhook signature stays valid
        tolerance: int = 300
        #: a file where the sandbox writes down every operation it carries out, by
        #: idempotency key, and reads back the ones it does not remember: processes
        #: (and restarts) sharing the file share one gateway's memory, as a remote
        #: gateway's. Empty: operations are remembered in the process only.
        journal: str = ""
        #: seconds the sandbox takes to answer an authorization it has carried out (a
        #: slow network): time in which a process can die with the answer on its way
        authorize_delay: Annotated[float, msgspec.Meta(ge=0)] = 0.0
        #: answer ``ordnung_lookup_operation``; off, the sandbox behaves as a gateway
        #: that cannot look operations up
        lookups: bool = True

    def __init__(self, settings: SandboxGateway.Settings) -> None:
        self.settings = settings
        self._seen: dict[str, GatewayResult] = {}
        #: (operation, payment id, amount) of every operation carried out, in order
        self.calls: list[tuple[str, str, int]] = []
        #: the gateway's books: one Charge per payment reference
        self.ledger: dict[str, Charge] = {}
        self._authorizations: dict[str, GatewayResult] = {}

    # -- the ledger ---------------------------------------------------------------------
    def charge_for(self, payment_id: str) -> Charge | None:
        """The gateway's record of a payment (by the core's payment id)."""
        return self.ledger.get(self.reference_for(payment_id))

    @staticmethod
    def reference_for(payment_id: str) -> str:
        return f"sbx_{payment_id}"

    def _charge(self, request: PaymentRequest) -> Charge:
        reference = request.reference or self.reference_for(request.payment_id)
        charge = self.ledger.get(reference)
        if charge is None:
            # authorized by another process's sandbox: the gateway would know it
            charge = Charge(reference=reference, payment_id=request.payment_id,
                            order_number=request.order_number, currency=request.currency,
                            amount=request.amount, status="authorized", adopted=True)
            self.ledger[reference] = charge
        return charge

    def _once(self, operation: Operation, request: PaymentRequest, run: Any) -> GatewayResult:
        """Run ``run()`` once per idempotency key; a repeat gets the first answer."""
        key = f"{operation}:{request.idempotency_key}"
        known = self._remembered(key)
        if known is not None:
            return known
        result: GatewayResult = run()
        self._seen[key] = result
        self.calls.append((operation, request.payment_id, request.amount))
        self._write_down(key, request, result)
        return result

    # -- memory by idempotency key --------------------------------------------------------
    def _remembered(self, key: str) -> GatewayResult | None:
        """The answer given to ``key``: in this process, or written down in the journal."""
        if key in self._seen:
            return self._seen[key]
        if not self.settings.journal:
            return None
        with contextlib.suppress(FileNotFoundError), open(self.settings.journal, "rb") as f:
            for line in f:
                with contextlib.suppress(msgspec.DecodeError):
                    entry = msgspec.json.decode(line, type=JournalEntry)
                    if entry.key == key:
                        self._seen[key] = entry.result
                        return entry.result
        return None

    def _write_down(self, key: str, request: PaymentRequest, result: GatewayResult) -> None:
        if not self.settings.journal:
            return
        line = msgspec.json.encode(JournalEntry(key=key, payment_id=request.payment_id,
                                                amount=request.amount, result=result)) + b"\n"
        # one write of one line to a file opened for appending: lines never interleave
        fd = os.open(self.settings.journal, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)

    @staticmethod
    def _record(charge: Charge, operation: Operation, amount: int, result: GatewayResult,
                key: str = "") -> GatewayResult:
        charge.entries.append(LedgerEntry(operation=operation, amount=amount,
                                          outcome=result.outcome, idempotency_key=key,
                                          reason=result.reason))
        return result

    # -- hooks --------------------------------------------------------------------------
    @hookimpl
    def ordnung_payment_methods(self, order: Order) -> list[PaymentMethod]:
        return [PaymentMethod(method="card", name="Card (sandbox)")]

    @hookimpl
    def ordnung_authorize(
            self, request: PaymentRequest) -> GatewayResult | Coroutine[Any, Any, GatewayResult]:
        """The answer (carried out at once; with ``authorize_delay``, answered later)."""
        result = self._once("authorize", request, lambda: self._authorize(request))
        if self.settings.authorize_delay:
            return self._later(result, self.settings.authorize_delay)
        return result

    @staticmethod
    async def _later(result: GatewayResult, delay: float) -> GatewayResult:
        await asyncio.sleep(delay)
        return result

    @hookimpl
    def ordnung_lookup_operation(self, operation: str,
                                 request: PaymentRequest) -> OperationLookup | None:
        """What the sandbox answered to ``request.idempotency_key``; never carries it out."""
        if not self.settings.lookups:
            return None
        result = self._remembered(f"{operation}:{request.idempotency_key}")
        return OperationLookup(found=result is not None, result=result)

    def _authorize(self, request: PaymentRequest) -> GatewayResult:
        reference = self.reference_for(request.payment_id)
        if reference in self._authorizations:
            # one authorization per payment, whatever the key: answered as the first time
            return self._authorizations[reference]
        charge = Charge(reference=reference, payment_id=request.payment_id,
                        order_number=request.order_number, currency=request.currency,
                        amount=request.amount)
        self.ledger[reference] = charge
        outcome: Literal["approved", "pending", "declined"]
        if looks_like_card_number(request.token):
            outcome, reason = "declined", CARD_NUMBER_REFUSED  # the number goes nowhere
        else:
            outcome, reason = TOKENS.get(request.token, ("declined", "invalid test token"))
        if outcome == "approved":
            charge.status, charge.authorized = "authorized", request.amount
        elif outcome == "declined":
            charge.status = "declined"
        result = GatewayResult(outcome=outcome, reference=reference, reason=reason)
        self._authorizations[reference] = result
        return self._record(charge, "authorize", request.amount, result,
                            request.idempotency_key)

    @hookimpl
    def ordnung_capture(self, request: PaymentRequest) -> GatewayResult:
        return self._once("capture", request, lambda: self._capture(request))

    def _capture(self, request: PaymentRequest) -> GatewayResult:
        charge = self._charge(request)
        return self._move(charge, request, "capture", charge.capturable, charge.capture)

    @hookimpl
    def ordnung_refund(self, request: PaymentRequest) -> GatewayResult:
        return self._once("refund", request, lambda: self._refund(request))

    def _refund(self, request: PaymentRequest) -> GatewayResult:
        charge = self._charge(request)
        return self._move(charge, request, "refund", charge.refundable, charge.refund)

    def _move(self, charge: Charge, request: PaymentRequest, action: Literal["capture", "refund"],
              left: int, move: Callable[[int], None]) -> GatewayResult:
        """Capture or refund the amount asked for if there is that much ``left``; an
        adopted charge, whose limits are not known here, takes any positive amount."""
        if request.amount <= 0 or (request.amount > left and not charge.adopted):
            result = GatewayResult(
                outcome="declined", reference=charge.reference,
                reason=f"cannot {action} {request.amount}: {left} is {_LEFT[action]}")
        else:
            move(request.amount)
            result = GatewayResult(outcome="approved", reference=charge.reference)
        return self._record(charge, action, request.amount, result, request.idempotency_key)

    @hookimpl
    def ordnung_void(self, request: PaymentRequest) -> GatewayResult:
        return self._once("void", request, lambda: self._void(request))

    def _void(self, request: PaymentRequest) -> GatewayResult:
        charge = self._charge(request)
        released = request.amount if charge.adopted else max(charge.capturable, 0)
        charge.released += released
        if charge.captured == 0:
            charge.status = "voided"
        result = GatewayResult(outcome="approved", reference=charge.reference)
        return self._record(charge, "void", released, result, request.idempotency_key)

    # -- webhooks -------------------------------------------------------------------------
    def confirm(self, reference: str, outcome: WebhookOutcome = "authorized", *,
                amount: int | None = None, reason: str = "",
                timestamp: int | None = None) -> tuple[dict[str, str], bytes]:
        """Settle a pending payment on the gateway's side and return the signed webhook
        that tells the shop (``engine.payments.webhook("sandbox", *gateway.confirm(ref))``)."""
        charge = self.ledger.get(reference)
        if charge is None:
            raise InvalidInput(f"the sandbox has no payment {reference!r}", field="reference")
        self._apply(charge, WebhookBody(reference=reference, outcome=outcome, amount=amount,
                                        reason=reason))
        return webhook(reference, outcome, amount=amount, reason=reason,
                       secret=self.settings.webhook_secret, timestamp=timestamp)

    @staticmethod
    def _apply(charge: Charge, update: WebhookBody) -> None:
        """Keep the ledger in step with what a (verified) webhook reports."""
        if update.outcome == "authorized" and charge.status == "pending":
            charge.status = "authorized"
            charge.authorized = min(update.amount or charge.amount, charge.amount)
        elif update.outcome == "declined" and charge.status == "pending":
            charge.status = "declined"
        elif update.outcome == "captured" and charge.status in ("pending", "authorized"):
            asked = update.amount if update.amount is not None else (
                charge.authorized or charge.amount)
            target = min(asked, charge.amount)
            if target <= charge.captured:
                return  # a repeat or out of order
            charge.status = "authorized"
            charge.captured = target
            charge.authorized = max(charge.authorized, target)
        else:
            return
        charge.entries.append(LedgerEntry(operation="confirm", amount=update.amount or 0,
                                          outcome=update.outcome, reason=update.reason))

    @hookimpl
    def ordnung_gateway_webhook(self, headers: dict[str, str], body: bytes) -> list[PaymentUpdate]:
        lowered = {k.lower(): v for k, v in headers.items()}
        header = lowered.get(SIGNATURE_HEADER, "")
        parts = dict(p.strip().split("=", 1) for p in header.split(",") if "=" in p)
        try:
            timestamp = int(parts.get("t", ""))
            stale = abs(time.time() - timestamp) > self.settings.tolerance
        except (ValueError, OverflowError):  # not a number, or too large for a time
            raise Forbidden("missing or malformed sandbox signature") from None
        if stale:
            raise Forbidden("stale sandbox webhook")
        expected = sign(self.settings.webhook_secret, body, timestamp).split("v1=", 1)[1]
        # as bytes: compare_digest refuses str with non-ASCII characters
        if not hmac.compare_digest(expected.encode(), parts.get("v1", "").encode()):
            raise Forbidden("bad sandbox signature")
        try:
            update = msgspec.json.decode(body, type=WebhookBody)
        except msgspec.DecodeError as exc:  # ValidationError included
            raise InvalidInput(f"malformed sandbox webhook: {exc}", field="body") from None
        charge = self.ledger.get(update.reference)
        if charge is not None:
            self._apply(charge, update)
        return [PaymentUpdate(reference=update.reference, outcome=update.outcome,
                              amount=update.amount, reason=update.reason)]
