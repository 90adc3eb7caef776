"""Shipments and returns across orders: the filters and pages of their lists.

The look-up rows (``ordnung.core.persistence.order_parts``) choose and order a page;
the parts themselves come from their orders' documents, read in one query, so a
listed shipment is exactly the one its order shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import msgspec

from ordnung.core.domain.orders import Order
from ordnung.core.domain.returns import ListedReturn
from ordnung.core.domain.shipments import ListedShipment
from ordnung.core.errors import InvalidInput, NotFound
from ordnung.core.runtime import Runtime

MAX_LIMIT = 200


class PartFilter(msgspec.Struct, kw_only=True, frozen=True):
    """What a list across orders may be filtered by (every field optional)."""

    status: Sequence[str] | None = None
    order_id: str | None = None
    #: shipments only
    carrier: str | None = None
    #: created at or after
    since: datetime | None = None
    #: created before
    until: datetime | None = None


def _utc(moment: datetime | None, name: str) -> datetime | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise InvalidInput(f"{name} needs a time zone (e.g. 2026-11-30T08:00:00Z)", field=name)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        raise InvalidInput(f"{name} is out of range", field=name) from None


async def _page(rt: Runtime, table: str, where: PartFilter, after: str | None,
                limit: int) -> tuple[list[tuple[str, str]], dict[str, Order]]:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}", field="limit")
    since, until = _utc(where.since, "since"), _utc(where.until, "until")
    ids = await rt.order_parts.page(table, status=where.status, order_id=where.order_id,
                                    carrier=where.carrier, since=since, until=until,
                                    after=after, limit=limit)
    return ids, await rt.order_parts.orders([order_id for _, order_id in ids])


def _shipment(order: Order, shipment_id: str) -> ListedShipment | None:
    for shipment in order.shipments:
        if shipment.id == shipment_id:
            return ListedShipment(**msgspec.structs.asdict(shipment), order_id=order.id,
                                  order_number=order.number)
    return None


def _return(order: Order, return_id: str) -> ListedReturn | None:
    for request in order.returns:
        if request.id == return_id:
            return ListedReturn(**msgspec.structs.asdict(request), order_id=order.id,
                                order_number=order.number)
    return None


async def list_shipments(rt: Runtime, where: PartFilter, *, after: str | None = None,
                         limit: int = 50) -> list[ListedShipment]:
    """Shipments across orders, newest first; ``after``: the last id of the previous page."""
    ids, orders = await _page(rt, "order_shipments", where, after, limit)
    found = (_shipment(orders[o], s) if o in orders else None for s, o in ids)
    return [s for s in found if s is not None]


async def list_returns(rt: Runtime, where: PartFilter, *, after: str | None = None,
                       limit: int = 50) -> list[ListedReturn]:
    """Returns across orders, newest first; ``after``: the last id of the previous page."""
    if where.carrier is not None:
        raise InvalidInput("returns have no carrier", field="carrier")
    ids, orders = await _page(rt, "order_returns", where, after, limit)
    found = (_return(orders[o], r) if o in orders else None for r, o in ids)
    return [r for r in found if r is not None]


async def get_shipment(rt: Runtime, shipment_id: str) -> ListedShipment:
    order_id = await rt.order_parts.order_of("order_shipments", shipment_id)
    found = _shipment(await rt.orders.get(order_id), shipment_id) if order_id else None
    if found is None:
        raise NotFound("shipment", shipment_id)
    return found


async def get_return(rt: Runtime, return_id: str) -> ListedReturn:
    order_id = await rt.order_parts.order_of("order_returns", return_id)
    found = _return(await rt.orders.get(order_id), return_id) if order_id else None
    if found is None:
        raise NotFound("return", return_id)
    return found
