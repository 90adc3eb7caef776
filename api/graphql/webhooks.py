"""Webhook endpoints and their delivery log in GraphQL: the counterparts of
``/admin/webhooks`` (staff, ``webhooks`` scope), over the same engine service with the
same checks (the REST request structs go through ``checked``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

import msgspec
import strawberry
from litestar import Request
from strawberry.types import Info

from ordnung.api.auth import require_admin
from ordnung.api.graphql.inputs import checked
from ordnung.api.routes.common import MAX_LIMIT, caller, check_cursor, engine_of
from ordnung.api.routes.webhooks import EndpointChange, NewEndpoint, Rotation
from ordnung.core import Engine
from ordnung.core.domain import webhooks as domain
from ordnung.core.errors import InvalidInput

SCOPE = "webhooks"
DELIVERY_STATUSES = ("pending", "delivered", "failed")


def _staff_engine(info: Info) -> Engine:
    """The engine, once the caller is known to be staff holding the webhooks scope."""
    request: Request[Any, Any, Any] = info.context["request"]
    require_admin(caller(request), SCOPE)
    return engine_of(request)


def _first(first: int) -> int:
    if not 1 <= first <= MAX_LIMIT:
        raise InvalidInput(f"first must be between 1 and {MAX_LIMIT}", field="first")
    return first


@strawberry.type(description="An endpoint as staff see it (never a secret).")
class WebhookEndpoint:
    id: strawberry.ID
    url: str
    description: str
    event_types: list[str]
    channels: list[str]
    shape: str = strawberry.field(description="'staff' or 'customer': which view of an "
                                              "order (and its parts) a message's data holds")
    enabled: bool
    disabled_reason: str | None
    failing_since: datetime | None
    signing_secrets: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def fields_of(cls, e: domain.WebhookEndpoint) -> dict[str, Any]:
        return {"id": strawberry.ID(e.id), "url": e.url, "description": e.description,
                "event_types": e.event_types, "channels": e.channels, "shape": e.shape,
                "enabled": e.enabled,
                "disabled_reason": e.disabled_reason, "failing_since": e.failing_since,
                "signing_secrets": e.signing_secrets, "created_at": e.created_at,
                "updated_at": e.updated_at}

    @classmethod
    def of(cls, e: domain.WebhookEndpoint) -> WebhookEndpoint:
        return cls(**cls.fields_of(e))


@strawberry.type(description="An endpoint just created or rotated: its new signing "
                             "secret (whsec_…) is shown this once.")
class WebhookEndpointCreated(WebhookEndpoint):
    secret: str

    @classmethod
    def created(cls, e: domain.WebhookEndpointCreated) -> WebhookEndpointCreated:
        return cls(**cls.fields_of(e), secret=e.secret)


@strawberry.type(description="One attempt to deliver a message.")
class WebhookAttempt:
    id: strawberry.ID
    at: datetime
    status_code: int | None
    latency_ms: int
    answer: str
    error: str | None


@strawberry.type(description="A message for one endpoint, with its attempts.")
class WebhookDelivery:
    id: strawberry.ID
    endpoint_id: strawberry.ID
    event_id: strawberry.ID
    type: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None
    payload: strawberry.scalars.JSON
    attempt_log: list[WebhookAttempt]

    @classmethod
    def of(cls, d: domain.WebhookDelivery) -> WebhookDelivery:
        return cls(
            id=strawberry.ID(d.id), endpoint_id=strawberry.ID(d.endpoint_id),
            event_id=strawberry.ID(d.event_id), type=d.type, status=d.status,
            attempts=d.attempts, next_attempt_at=d.next_attempt_at,
            last_status=d.last_status, last_error=d.last_error, created_at=d.created_at,
            delivered_at=d.delivered_at,
            payload=cast(Any, msgspec.to_builtins(d.payload)),
            attempt_log=[WebhookAttempt(id=strawberry.ID(a.id), at=a.at,
                                        status_code=a.status_code, latency_ms=a.latency_ms,
                                        answer=a.answer, error=a.error)
                         for a in d.attempt_log])


@strawberry.type
class WebhookEndpointPage:
    items: list[WebhookEndpoint]
    next: str | None


@strawberry.type
class WebhookDeliveryPage:
    items: list[WebhookDelivery]
    next: str | None


@strawberry.type
class WebhookQuery:
    @strawberry.field(description="Every webhook endpoint, by id (staff, 'webhooks').")
    async def webhook_endpoints(self, info: Info, first: int = 50,
                                after: str | None = None) -> WebhookEndpointPage:
        engine = _staff_engine(info)
        limit = _first(first)
        items = await engine.webhooks.endpoints(after=check_cursor(after, "whep"), limit=limit)
        return WebhookEndpointPage(items=[WebhookEndpoint.of(e) for e in items],
                                   next=items[-1].id if len(items) == limit else None)

    @strawberry.field(description="One webhook endpoint, with why it was disabled if it "
                                  "was (staff, 'webhooks').")
    async def webhook_endpoint(self, info: Info, id: str) -> WebhookEndpoint:
        return WebhookEndpoint.of(await _staff_engine(info).webhooks.get(id))

    @strawberry.field(description="An endpoint's deliveries, by id; status 'failed': those "
                                  "given up on (staff, 'webhooks').")
    async def webhook_deliveries(self, info: Info, endpoint_id: str,
                                 status: str | None = None, first: int = 50,
                                 after: str | None = None) -> WebhookDeliveryPage:
        engine = _staff_engine(info)
        if status is not None and status not in DELIVERY_STATUSES:
            raise InvalidInput(f"status must be one of {', '.join(DELIVERY_STATUSES)}",
                               field="status")
        limit = _first(first)
        items = await engine.webhooks.deliveries(
            endpoint_id, status=status, after=check_cursor(after, "msg"), limit=limit)
        return WebhookDeliveryPage(items=[WebhookDelivery.of(d) for d in items],
                                   next=items[-1].id if len(items) == limit else None)

    @strawberry.field(description="One delivery with its payload and every attempt "
                                  "(staff, 'webhooks').")
    async def webhook_delivery(self, info: Info, endpoint_id: str,
                               delivery_id: str) -> WebhookDelivery:
        engine = _staff_engine(info)
        return WebhookDelivery.of(await engine.webhooks.delivery(endpoint_id, delivery_id))


@strawberry.type
class WebhookMutation:
    @strawberry.mutation(description="Register a webhook endpoint; the answer holds its "
                                     "signing secret, shown this once (staff, 'webhooks').")
    async def create_webhook_endpoint(self, info: Info, url: str, event_types: list[str],
                                      channels: list[str] | None = None,
                                      description: str | None = None,
                                      enabled: bool | None = None,
                                      shape: str | None = None
                                      ) -> WebhookEndpointCreated:
        engine = _staff_engine(info)
        data = checked(engine, NewEndpoint, url=url, event_types=event_types,
                       channels=channels, description=description, enabled=enabled,
                       shape=shape)
        return WebhookEndpointCreated.created(await engine.webhooks.create(
            url=data.url, event_types=data.event_types, channels=data.channels,
            description=data.description, enabled=data.enabled, shape=data.shape))

    @strawberry.mutation(description="Change an endpoint's URL, event types, channels, "
                                     "description, shape or enabled (staff, 'webhooks').")
    async def update_webhook_endpoint(self, info: Info, id: str, url: str | None = None,
                                      event_types: list[str] | None = None,
                                      channels: list[str] | None = None,
                                      description: str | None = None,
                                      enabled: bool | None = None,
                                      shape: str | None = None) -> WebhookEndpoint:
        engine = _staff_engine(info)
        data = checked(engine, EndpointChange, url=url, event_types=event_types,
                       channels=channels, description=description, enabled=enabled,
                       shape=shape)
        given = {k: v for k, v in msgspec.structs.asdict(data).items()
                 if v is not msgspec.UNSET}
        return WebhookEndpoint.of(await engine.webhooks.update(id, **given))

    @strawberry.mutation(description="Delete an endpoint with its deliveries and their log "
                                     "(staff, 'webhooks'). Answers the deleted id.")
    async def delete_webhook_endpoint(self, info: Info, id: str) -> strawberry.ID:
        await _staff_engine(info).webhooks.delete(id)
        return strawberry.ID(id)

    @strawberry.mutation(description="A new signing secret, shown this once; the previous "
                                     "one keeps signing beside it for the grace period "
                                     "(staff, 'webhooks').")
    async def rotate_webhook_secret(self, info: Info, id: str,
                                    grace_s: float | None = None) -> WebhookEndpointCreated:
        engine = _staff_engine(info)
        data = checked(engine, Rotation, grace_s=grace_s)
        return WebhookEndpointCreated.created(await engine.webhooks.rotate(id, data.grace_s))

    @strawberry.mutation(description="Send one delivery again, due now; or, without "
                                     "deliveryId, every failed delivery of the endpoint "
                                     "(staff, 'webhooks'). Answers how many are pending "
                                     "again.")
    async def redeliver_webhooks(self, info: Info, endpoint_id: str,
                                 delivery_id: str | None = None) -> int:
        return await _staff_engine(info).webhooks.redeliver(endpoint_id, delivery_id)
