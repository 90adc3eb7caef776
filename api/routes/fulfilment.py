"""Fulfilment: the priority queue, shipments (pick, pack with scans, ship, deliver), tracking."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from litestar import Controller, Request, Response
from litestar.params import FromPath, FromQuery, JSONBody

from ordnung.api.auth import admin
from ordnung.api.problems import problems
from ordnung.api.routes.common import (
    LOCATION,
    caller,
    check_cursor,
    check_limit,
    created,
    engine_of,
)
from ordnung.api.routes.handlers import get, post
from ordnung.api.schemas import OrderPage, PackIn, ShipIn, ShipmentIn, ShipmentPage
from ordnung.core.domain.orders import Order
from ordnung.core.domain.shipments import ListedShipment
from ordnung.core.errors import NotFound
from ordnung.core.services.order_parts import PartFilter


class FulfilmentController(Controller):
    path = "/fulfilment"
    tags = ["fulfilment"]
    guards = [admin("fulfilment")]

    @get("/queue", responses=problems(404))
    async def queue(self, request: Request[Any, Any, Any],
                    after: FromQuery[str | None] = None,
                    limit: FromQuery[int] = 100) -> OrderPage:
        """Orders ready to ship: highest priority (VIP, high value) first, then oldest.
        Pass ``next`` from a page as ``after`` for the following page."""
        items = await engine_of(request).fulfilment.queue(limit=check_limit(limit),
                                                        after=check_cursor(after, "ord"))
        return OrderPage(items=items, next=items[-1].id if len(items) == limit else None)


class ShipmentListController(Controller):
    path = "/shipments"
    tags = ["fulfilment"]
    guards = [admin("fulfilment")]

    @get("/")
    async def list_shipments(self, request: Request[Any, Any, Any],
                             status: FromQuery[list[str] | None] = None,
                             order_id: FromQuery[str | None] = None,
                             carrier: FromQuery[str | None] = None,
                             since: FromQuery[datetime | None] = None,
                             until: FromQuery[datetime | None] = None,
                             after: FromQuery[str | None] = None,
                             limit: FromQuery[int] = 50) -> ShipmentPage:
        """Shipments across orders, newest first. Filters: ``status`` (repeatable),
        ``order_id``, ``carrier``, created ``since`` (inclusive) and ``until`` (exclusive),
        ISO 8601 with a time zone. Pass ``next`` from a page as ``after``."""
        where = PartFilter(status=status, order_id=order_id, carrier=carrier, since=since,
                           until=until)
        items = await engine_of(request).fulfilment.shipments(
            where, after=check_cursor(after, "shp"), limit=check_limit(limit))
        return ShipmentPage(items=items, next=items[-1].id if len(items) == limit else None)

    @get("/{shipment_id:str}", responses=problems(404))
    async def get_shipment(self, request: Request[Any, Any, Any],
                           shipment_id: FromPath[str]) -> ListedShipment:
        """One shipment, with the order it belongs to."""
        return await engine_of(request).fulfilment.shipment(shipment_id)


class ShipmentController(Controller):
    path = "/orders/{order_id:str}/shipments"
    tags = ["fulfilment"]
    guards = [admin("fulfilment")]

    @post("/", status_code=201, responses=problems(404), response_headers=LOCATION)
    async def create(self, request: Request[Any, Any, Any], order_id: FromPath[str],
                     data: JSONBody[ShipmentIn]) -> Response[Order]:
        """Create shipments for what is left to ship (all of it unless ``lines`` says):
        one per stock location; ``Location`` is the first of them."""
        order, shipments = await engine_of(request).fulfilment.create_shipment(
            order_id, lines=data.lines, location_id=data.location_id,
            actor=caller(request).actor)
        return created(order, f"/shipments/{shipments[0].id}")

    @post("/{shipment_id:str}/pick", status_code=200, responses=problems(404))
    async def pick(self, request: Request[Any, Any, Any], order_id: FromPath[str],
                   shipment_id: FromPath[str]) -> Order:
        """Mark a shipment as picked."""
        return await engine_of(request).fulfilment.pick(order_id, shipment_id,
                                                        actor=caller(request).actor)

    @post("/{shipment_id:str}/pack", status_code=200, responses=problems(404))
    async def pack(self, request: Request[Any, Any, Any], order_id: FromPath[str],
                   shipment_id: FromPath[str],
                   data: JSONBody[PackIn]) -> Order:
        """Pack, verifying every scanned SKU or barcode against the shipment."""
        return await engine_of(request).fulfilment.pack(order_id, shipment_id, data.scans,
                                                        actor=caller(request).actor)

    @post("/{shipment_id:str}/ship", status_code=200, responses=problems(404))
    async def ship(self, request: Request[Any, Any, Any], order_id: FromPath[str],
                   shipment_id: FromPath[str],
                   data: JSONBody[ShipIn]) -> Order:
        """Ship a shipment: the carrier plugin makes the label and the tracking number."""
        return await engine_of(request).fulfilment.ship(
            order_id, shipment_id, tracking_number=data.tracking_number, carrier=data.carrier,
            actor=caller(request).actor)

    @post("/{shipment_id:str}/deliver", status_code=200, responses=problems(404))
    async def deliver(self, request: Request[Any, Any, Any], order_id: FromPath[str],
                      shipment_id: FromPath[str]) -> Order:
        """Mark a shipment as delivered (when no carrier reports it)."""
        return await engine_of(request).fulfilment.deliver(order_id, shipment_id,
                                                           actor=caller(request).actor)

    @post("/{shipment_id:str}/cancel", status_code=200, responses=problems(404))
    async def cancel(self, request: Request[Any, Any, Any], order_id: FromPath[str],
                     shipment_id: FromPath[str]) -> Order:
        """Cancel a shipment that has not shipped."""
        return await engine_of(request).fulfilment.cancel_shipment(order_id, shipment_id,
                                                                   actor=caller(request).actor)


@post("/webhooks/tracking/{carrier:str}", guards=[admin("fulfilment")], status_code=200,
      tags=["fulfilment"], responses=problems(404))
async def tracking_webhook(request: Request[Any, Any, Any], carrier: FromPath[str],
                           data: JSONBody[dict[str, Any]]) -> dict[str, Any]:
    """A carrier's tracking push, parsed by the carrier plugin; ``delivered`` delivers."""
    shipments = await engine_of(request).fulfilment.tracking(carrier, data,
                                                             actor=f"carrier:{carrier}")
    return {"shipments": shipments}


@get("/labels/{carrier:str}/{tracking_number:str}", guards=[admin("fulfilment")],
     tags=["fulfilment"], media_type="application/pdf", responses=problems(404))
async def shipping_label(request: Request[Any, Any, Any], carrier: FromPath[str],
                         tracking_number: FromPath[str]) -> Response[bytes]:
    """The printable label (PDF) a carrier plugin made when the shipment shipped
    (``ordnung_label_document``)."""
    pdf = await engine_of(request).fulfilment.label(carrier, tracking_number)
    if pdf is None:
        raise NotFound("label", f"{carrier}/{tracking_number}")
    return Response(content=pdf, media_type="application/pdf", headers={
        "Content-Disposition": f'inline; filename="{tracking_number}.pdf"'})
