"""Webhooks: which internal events become which public event types, and their shapes.

A webhook message is ``{id, type, created_at, version, data}``: ``id`` is the delivery's
own id (the ``webhook-id`` header too), the same on every retry, so that receivers can
drop duplicates; ``data`` is what staff see of the thing that changed.
"""

from __future__ import annotations

import base64
import fnmatch
import secrets
from datetime import datetime

import msgspec

from ordnung.core.domain.events import Event

#: the payload's version: bumped when a type's ``data`` changes incompatibly
PAYLOAD_VERSION = 1

#: internal ``<machine>.<state>`` -> public type (states absent here are not told)
_STATES: dict[str, str] = {
    "order.placed": "order.placed",
    "order.on_hold": "order.held",
    "order.cancelled": "order.cancelled",
    "order.partially_fulfilled": "order.partially_fulfilled",
    "order.fulfilled": "order.fulfilled",
    "order.delivered": "order.delivered",
    "order.completed": "order.completed",
    "order.partially_returned": "order.partially_returned",
    "order.returned": "order.returned",
    "payment.authorized": "payment.authorized",
    "payment.partially_captured": "payment.captured",
    "payment.captured": "payment.captured",
    "payment.partially_refunded": "payment.refunded",
    "payment.refunded": "payment.refunded",
    "payment.voided": "payment.voided",
    "payment.failed": "payment.failed",
    "shipment.pending": "shipment.created",
    "shipment.shipped": "shipment.shipped",
    "shipment.delivered": "shipment.delivered",
    "return.requested": "return.requested",
    "return.approved": "return.approved",
    "return.received": "return.received",
    "return.refunded": "return.refunded",
    "inventory.availability_changed": "availability.changed",
    "notification.sent": "notification.sent",
}

#: every public event type an endpoint may subscribe to
EVENT_TYPES: tuple[str, ...] = tuple(sorted({*_STATES.values(), "order.released"}))


def webhook_type(ev: Event) -> str | None:
    """The public type of ``ev``, or None when webhooks are not told of it."""
    if ev.machine == "order" and ev.transition == "release":  # on_hold -> placed
        return "order.released"
    if ev.machine == "order" and ev.to_state == "placed" and ev.transition != "place":
        return None  # placed again some other way (a plugin's state): not a new order
    return _STATES.get(ev.kind)


def tells_webhooks(ev: Event) -> bool:
    return webhook_type(ev) is not None


def check_patterns(patterns: list[str]) -> list[str]:
    """Event-type patterns (``order.placed``, ``order.*``, ``*``) that match a known type;
    raises ValueError naming the first that matches none."""
    for pattern in patterns:
        if not fnmatch.filter(EVENT_TYPES, pattern):
            raise ValueError(f"{pattern!r} matches no event type; known: "
                             + ", ".join(EVENT_TYPES))
    return patterns


#: payload shapes an endpoint may choose: ``staff`` (what the staff API returns) or
#: ``customer`` (the customer-safe view: no risk score, fraud reasons, gateway details)
SHAPES = ("staff", "customer")


def matches(patterns: list[str], event_type: str) -> bool:
    return any(fnmatch.fnmatchcase(event_type, p) for p in patterns)


def new_secret() -> str:
    """A Standard Webhooks signing secret: ``whsec_`` and 24 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()


class Secret(msgspec.Struct, kw_only=True):
    secret: str
    #: when a rotated-out secret stops signing (None: the current secret)
    expires_at: datetime | None = None


class WebhookEndpoint(msgspec.Struct, kw_only=True):
    """An endpoint as staff see it: never a secret (only when created or rotated)."""

    id: str
    url: str
    description: str = ""
    #: event types wanted; wildcards such as ``order.*``
    event_types: list[str]
    #: only events of these channels (orders' channel, availability's channel); empty: all
    channels: list[str] = []
    #: ``staff`` or ``customer``: which view of an order (and its parts) ``data`` holds
    shape: str = "staff"
    enabled: bool = True
    #: why the endpoint was disabled automatically (None when enabled by staff)
    disabled_reason: str | None = None
    #: since when every attempt failed (None: the last one succeeded)
    failing_since: datetime | None = None
    #: how many secrets sign each message now (2 during a rotation's grace period)
    signing_secrets: int = 1
    created_at: datetime
    updated_at: datetime


class WebhookEndpointCreated(WebhookEndpoint, kw_only=True):
    """The answer to creating or rotating: the new secret, shown this once."""

    secret: str


class WebhookAttempt(msgspec.Struct, kw_only=True):
    id: str
    at: datetime
    #: the receiver's HTTP status (None: no answer, see ``error``)
    status_code: int | None = None
    latency_ms: int
    #: the start of the receiver's answer (truncated)
    answer: str = ""
    error: str | None = None


class WebhookDelivery(msgspec.Struct, kw_only=True):
    id: str
    endpoint_id: str
    event_id: str
    type: str
    #: ``pending`` (retried with backoff), ``delivered`` or ``failed`` (gave up; kept)
    status: str
    attempts: int
    next_attempt_at: datetime | None = None
    last_status: int | None = None
    last_error: str | None = None
    created_at: datetime
    delivered_at: datetime | None = None
    payload: dict[str, object] = {}
    attempt_log: list[WebhookAttempt] = []
