"""The sandbox card gateway: a deterministic gateway for development and tests.

Test tokens (pass as ``payment.token``):

==================  ===========================================================
``tok_success``     authorized at once
``tok_decline``     declined: insufficient funds
``tok_fraud``       declined: suspected fraud
``tok_async``       pending; confirmed later by a signed webhook
==================  ===========================================================

Webhooks are signed: header ``Sandbox-Signature: t=<unix>,v1=<hex>`` where
``v1 = HMAC-SHA256(secret, f"{t}.{body}")``. Stale (older than the tolerance)
or tampered requests are refused. The gateway is idempotent on the request's
idempotency key, as a real one is. Card numbers never reach it: only tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import msgspec

from ordnung.core import hookimpl
from ordnung.core.domain.orders import Order
from ordnung.core.domain.payments import GatewayResult, PaymentMethod, PaymentRequest, PaymentUpdate
from ordnung.core.errors import Forbidden

SIGNATURE_HEADER = "sandbox-signature"


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The signature header value a sandbox webhook carries."""
    t = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={digest}"


class SandboxGateway:
    """Sandbox card gateway with documented test tokens and signed webhooks."""

    class Settings(msgspec.Struct, forbid_unknown_fields=True):
        webhook_secret: str = "sandbox-secret"
        #: seconds a webhook signature stays valid
        tolerance: int = 300

    def __init__(self, settings: SandboxGateway.Settings) -> None:
        self.settings = settings
        self._seen: dict[str, GatewayResult] = {}
        self.calls: list[tuple[str, str, int]] = []

    def _once(self, operation: str, request: PaymentRequest,
              result: GatewayResult) -> GatewayResult:
        key = f"{operation}:{request.idempotency_key}"
        if key in self._seen:
            return self._seen[key]
        self._seen[key] = result
        self.calls.append((operation, request.payment_id, request.amount))
        return result

    @hookimpl
    def ordnung_payment_methods(self, order: Order) -> list[PaymentMethod]:
        return [PaymentMethod(method="card", name="Card (sandbox)")]

    @hookimpl
    def ordnung_authorize(self, request: PaymentRequest) -> GatewayResult:
        reference = f"sbx_{request.payment_id}"
        outcomes = {
            "tok_success": GatewayResult(outcome="approved", reference=reference),
            "tok_decline": GatewayResult(outcome="declined", reference=reference,
                                         reason="insufficient funds"),
            "tok_fraud": GatewayResult(outcome="declined", reference=reference,
                                       reason="suspected fraud"),
            "tok_async": GatewayResult(outcome="pending", reference=reference),
        }
        result = outcomes.get(request.token, GatewayResult(
            outcome="declined", reference=reference, reason="invalid test token"))
        return self._once("authorize", request, result)

    @hookimpl
    def ordnung_capture(self, request: PaymentRequest) -> GatewayResult:
        return self._once("capture", request,
                          GatewayResult(outcome="approved", reference=request.reference))

    @hookimpl
    def ordnung_refund(self, request: PaymentRequest) -> GatewayResult:
        return self._once("refund", request,
                          GatewayResult(outcome="approved", reference=request.reference))

    @hookimpl
    def ordnung_void(self, request: PaymentRequest) -> GatewayResult:
        return self._once("void", request,
                          GatewayResult(outcome="approved", reference=request.reference))

    @hookimpl
    def ordnung_gateway_webhook(self, headers: dict[str, str], body: bytes) -> list[PaymentUpdate]:
        lowered = {k.lower(): v for k, v in headers.items()}
        header = lowered.get(SIGNATURE_HEADER, "")
        parts = dict(p.split("=", 1) for p in header.split(",") if "=" in p)
        try:
            timestamp = int(parts.get("t", ""))
        except ValueError:
            raise Forbidden("missing or malformed sandbox signature") from None
        if abs(time.time() - timestamp) > self.settings.tolerance:
            raise Forbidden("stale sandbox webhook")
        expected = sign(self.settings.webhook_secret, body, timestamp).split("v1=", 1)[1]
        if not hmac.compare_digest(expected, parts.get("v1", "")):
            raise Forbidden("bad sandbox signature")
        payload: dict[str, Any] = json.loads(body)
        return [PaymentUpdate(reference=payload["reference"], outcome=payload["outcome"],
                              amount=payload.get("amount"), reason=payload.get("reason", ""))]
