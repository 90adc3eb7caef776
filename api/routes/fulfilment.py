"""Fulfilment: the priority queue, shipments (pick, pack with scans, ship, deliver), tracking."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response, get, post
from litestar.params import FromPath, FromQuery, JSONBody

from ordnung.api.auth import admin
from ordnung.api.problems import problems
from ordnung.api.routes.common import caller, check_limit, engine_of
from ordnung.api.schemas import PackIn, ShipIn, ShipmentIn
from ordnung.core.domain.orders import Order
from ordnung.core.errors import NotFound


class FulfilmentController(Controller):
    path = "/fulfilment"
    tags = ["fulfilment"]
    guards = [admin("fulfilment")]

    @get("/queue")
    async def queue(self, request: Request[Any, Any, Any],
                    limit: FromQuery[int] = 100) -> list[Order]:
        """Orders ready to ship: highest priority (VIP, high value) first, then oldest."""
        return await engine_of(request).fulfilment.queue(limit=check_limit(limit))


class ShipmentController(Controller):
    path = "/orders/{order_id:str}/shipments"
    tags = ["fulfilment"]
    guards = [admin("fulfilment")]

    @post("/", status_code=201, responses=problems(404))
    async def create(self, request: Request[Any, Any, Any], order_id: FromPath[str],
                     data: JSONBody[ShipmentIn]) -> Order:
        """Create shipments for what is left to ship (all of it unless ``lines`` says)."""
        order, _ = await engine_of(request).fulfilment.create_shipment(
            order_id, lines=data.lines, location_id=data.location_id,
            actor=caller(request).actor)
        return order

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
    """The printable label (PDF) a carrier plugin made when the shipment shipped."""
    from ordnung.plugins.carriers.labels import fetch_label

    pdf = await fetch_label(engine_of(request), carrier, tracking_number)
    if pdf is None:
        raise NotFound("label", f"{carrier}/{tracking_number}")
    return Response(content=pdf, media_type="application/pdf", headers={
        "Content-Disposition": f'inline; filename="{tracking_number}.pdf"'})
