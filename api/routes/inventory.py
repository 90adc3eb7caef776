"""Inventory and channels: locations, levels, adjustments, counts, the movement ledger."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

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
from ordnung.api.routes.handlers import get, post, put
from ordnung.api.schemas import AdjustIn, CountIn, MovementPage, SlicesIn
from ordnung.core.domain.inventory import Channel, Location, StockLevel
from ordnung.core.errors import InvalidInput


def level_url(level: StockLevel) -> str:
    """Where a stock level is read: ``/inventory/levels`` for its SKU and location."""
    return "/inventory/levels?" + urlencode({"sku": level.sku,
                                              "location_id": level.location_id})


class InventoryController(Controller):
    path = "/inventory"
    tags = ["inventory"]
    guards = [admin("inventory")]

    @get("/locations")
    async def locations(self, request: Request[Any, Any, Any]) -> list[Location]:
        """Every stock location (warehouses, shops)."""
        return await engine_of(request).inventory.locations()

    @put("/locations/{location_id:str}")
    async def put_location(self, request: Request[Any, Any, Any], location_id: FromPath[str],
                           data: JSONBody[Location]) -> Location:
        """Create or replace a stock location (the body's id must match the URL)."""
        if data.id != location_id:
            raise InvalidInput("the body's id must match the URL", field="id")
        return await engine_of(request).inventory.upsert_location(data)

    @get("/levels")
    async def levels(self, request: Request[Any, Any, Any], sku: FromQuery[list[str] | None] = None,
                     location_id: FromQuery[str | None] = None) -> list[StockLevel]:
        """Stock levels (on hand, reserved) per SKU and location."""
        return await engine_of(request).inventory.levels(sku, location_id)

    @post("/adjustments", status_code=201, responses=problems(404),
          response_headers=LOCATION)
    async def adjust(self, request: Request[Any, Any, Any], data: JSONBody[AdjustIn]
                     ) -> Response[StockLevel]:
        """Adjust a level (a stock movement); ``Location`` is the level's URL."""
        level = await engine_of(request).inventory.adjust(
            data.sku, data.location_id, data.delta, kind=data.kind, reason=data.reason,
            actor=caller(request).actor)
        return created(level, level_url(level))

    @post("/counts", status_code=201, responses=problems(404), response_headers=LOCATION)
    async def count(self, request: Request[Any, Any, Any], data: JSONBody[CountIn]
                    ) -> Response[StockLevel]:
        """Record a stock count (a stock movement); ``Location`` is the level's URL."""
        level = await engine_of(request).inventory.count(
            data.sku, data.location_id, data.counted, reason=data.reason,
            actor=caller(request).actor)
        return created(level, level_url(level))

    @put("/slices", responses=problems(404))
    async def slices(self, request: Request[Any, Any, Any], data: JSONBody[SlicesIn]
                     ) -> StockLevel:
        """Cut a level into slices (1: one row again) so placements of a hot SKU do not
        wait for each other; the level's figures do not change."""
        return await engine_of(request).inventory.set_slices(data.sku, data.location_id,
                                                             data.slices)

    @get("/movements")
    async def movements(self, request: Request[Any, Any, Any], sku: FromQuery[str | None] = None,
                        order_id: FromQuery[str | None] = None, after: FromQuery[str | None] = None,
                        limit: FromQuery[int] = 100) -> MovementPage:
        """The stock movement journal, newest first, a page at a time."""
        items = await engine_of(request).inventory.movements(
            sku=sku, order_id=order_id, after=check_cursor(after, "mv"),
            limit=check_limit(limit))
        return MovementPage(items=items, next=items[-1].id if len(items) == limit else None)


class ChannelController(Controller):
    path = "/channels"
    tags = ["channels"]

    @get("/", guards=[admin("catalogue")])
    async def list_channels(self, request: Request[Any, Any, Any]) -> list[Channel]:
        """Every sales channel with its currencies and settings."""
        return await engine_of(request).channels.list()

    @put("/{channel_id:str}", guards=[admin("catalogue")])
    async def put_channel(self, request: Request[Any, Any, Any], channel_id: FromPath[str],
                          data: JSONBody[Channel]) -> Channel:
        """Create or replace a sales channel."""
        if data.id != channel_id:
            raise InvalidInput("the body's id must match the URL", field="id")
        return await engine_of(request).channels.upsert(data)
