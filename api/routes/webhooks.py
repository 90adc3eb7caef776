"""Webhook endpoints (register, change, rotate the secret, delete) and their delivery log."""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from litestar import Controller, Request, Response
from litestar.params import FromPath, FromQuery, JSONBody

from ordnung.api.auth import admin
from ordnung.api.problems import problems
from ordnung.api.routes.common import LOCATION, check_cursor, check_limit, created, engine_of
from ordnung.api.routes.handlers import delete, get, patch, post
from ordnung.core.domain.webhooks import WebhookDelivery, WebhookEndpoint, WebhookEndpointCreated


class NewEndpoint(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    url: str
    #: event types wanted, with wildcards (``order.*``, ``*``)
    event_types: list[str]
    #: only events of these channels; empty: every channel
    channels: list[str] = []
    description: str = ""
    enabled: bool = True
    #: ``data`` as staff see it (default) or the customer-safe view (no risk, fraud or
    #: gateway details), for receivers that must not see staff data
    shape: Literal["staff", "customer"] = "staff"


class EndpointChange(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    url: str | msgspec.UnsetType = msgspec.UNSET
    event_types: list[str] | msgspec.UnsetType = msgspec.UNSET
    channels: list[str] | msgspec.UnsetType = msgspec.UNSET
    description: str | msgspec.UnsetType = msgspec.UNSET
    enabled: bool | msgspec.UnsetType = msgspec.UNSET
    shape: Literal["staff", "customer"] | msgspec.UnsetType = msgspec.UNSET


class Rotation(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    #: seconds the previous secret keeps signing beside the new one (default: the
    #: ``ORDNUNG_WEBHOOKS_ROTATION_GRACE_S`` setting; 0 drops it at once)
    grace_s: float | None = None


class EndpointPage(msgspec.Struct, kw_only=True):
    items: list[WebhookEndpoint]
    next: str | None = None


class DeliveryPage(msgspec.Struct, kw_only=True):
    items: list[WebhookDelivery]
    next: str | None = None


class Redelivered(msgspec.Struct, kw_only=True):
    #: how many deliveries are pending again
    redelivered: int


class WebhookController(Controller):
    path = "/admin/webhooks"
    tags = ["admin"]
    guards = [admin("webhooks")]

    @post("/", responses=problems(422), response_headers=LOCATION)
    async def create(self, request: Request[Any, Any, Any],
                     data: JSONBody[NewEndpoint]) -> Response[WebhookEndpointCreated]:
        """Register an endpoint; the answer holds its signing secret (`whsec_…`), shown
        only this once. URLs resolving to private addresses are refused (422
        `webhook-url-refused`) unless the installation allows them."""
        made = await engine_of(request).webhooks.create(
            url=data.url, event_types=data.event_types, channels=data.channels,
            description=data.description, enabled=data.enabled, shape=data.shape)
        return created(made, f"/admin/webhooks/{made.id}")

    @get("/", responses=problems(422))
    async def list_endpoints(self, request: Request[Any, Any, Any],
                             after: FromQuery[str | None] = None,
                             limit: FromQuery[int] = 50) -> EndpointPage:
        """Every endpoint, by id (never a secret)."""
        check_cursor(after, "whep")
        items = await engine_of(request).webhooks.endpoints(after=after, limit=check_limit(limit))
        return EndpointPage(items=items, next=items[-1].id if len(items) == limit else None)

    @get("/{endpoint_id:str}", responses=problems(404))
    async def read(self, request: Request[Any, Any, Any],
                   endpoint_id: FromPath[str]) -> WebhookEndpoint:
        """One endpoint, with why it was disabled if it was."""
        return await engine_of(request).webhooks.get(endpoint_id)

    @patch("/{endpoint_id:str}", responses=problems(404, 422))
    async def update(self, request: Request[Any, Any, Any], endpoint_id: FromPath[str],
                     data: JSONBody[EndpointChange]) -> WebhookEndpoint:
        """Change the URL, event types, channels, description or enabled; enabling clears
        the reason it was disabled for."""
        given = {k: v for k, v in msgspec.structs.asdict(data).items()
                 if v is not msgspec.UNSET}
        return await engine_of(request).webhooks.update(endpoint_id, **given)

    @delete("/{endpoint_id:str}", status_code=204, responses=problems(404))
    async def remove(self, request: Request[Any, Any, Any], endpoint_id: FromPath[str]) -> None:
        """Delete the endpoint with its deliveries and their log."""
        await engine_of(request).webhooks.delete(endpoint_id)

    @post("/{endpoint_id:str}/rotate", status_code=200, responses=problems(404, 422))
    async def rotate(self, request: Request[Any, Any, Any], endpoint_id: FromPath[str],
                     data: JSONBody[Rotation | None] = None) -> WebhookEndpointCreated:
        """A new signing secret, shown this once; the previous one keeps signing beside
        it (several `v1,` signatures) for the grace period."""
        return await engine_of(request).webhooks.rotate(
            endpoint_id, None if data is None else data.grace_s)

    @get("/{endpoint_id:str}/deliveries", responses=problems(404, 422))
    async def deliveries(self, request: Request[Any, Any, Any], endpoint_id: FromPath[str],
                         status: FromQuery[Literal["pending", "delivered", "failed"] | None]
                         = None, after: FromQuery[str | None] = None,
                         limit: FromQuery[int] = 50) -> DeliveryPage:
        """The endpoint's deliveries, by id (``status=failed``: those given up on)."""
        check_cursor(after, "msg")
        items = await engine_of(request).webhooks.deliveries(
            endpoint_id, status=status, after=after, limit=check_limit(limit))
        return DeliveryPage(items=items, next=items[-1].id if len(items) == limit else None)

    @get("/{endpoint_id:str}/deliveries/{delivery_id:str}", responses=problems(404))
    async def delivery(self, request: Request[Any, Any, Any], endpoint_id: FromPath[str],
                       delivery_id: FromPath[str]) -> WebhookDelivery:
        """One delivery with its payload and every attempt (status, latency, answer)."""
        return await engine_of(request).webhooks.delivery(endpoint_id, delivery_id)

    @post("/{endpoint_id:str}/deliveries/{delivery_id:str}/redeliver", status_code=200,
          responses=problems(404))
    async def redeliver_one(self, request: Request[Any, Any, Any], endpoint_id: FromPath[str],
                            delivery_id: FromPath[str]) -> Redelivered:
        """Send one delivery again (failed or delivered), due now, with a fresh retry
        period."""
        return Redelivered(redelivered=await engine_of(request).webhooks.redeliver(
            endpoint_id, delivery_id))

    @post("/{endpoint_id:str}/redeliver", status_code=200, responses=problems(404))
    async def redeliver_failed(self, request: Request[Any, Any, Any],
                               endpoint_id: FromPath[str]) -> Redelivered:
        """Send every failed delivery of the endpoint again."""
        return Redelivered(redelivered=await engine_of(request).webhooks.redeliver(
            endpoint_id))
