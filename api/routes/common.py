"""Shared bits of the handlers: the engine, the caller, pagination limits."""

from __future__ import annotations

import re
from typing import Any, TypeVar

from litestar import Request, Response
from litestar.datastructures import ResponseHeader

from ordnung.api.idempotency import key_scope
from ordnung.core import Engine
from ordnung.core.domain.access import Principal
from ordnung.core.domain.events import Event
from ordnung.core.domain.orders import Order
from ordnung.core.domain.views import CustomerOrder, customer_order, customer_timeline
from ordnung.core.errors import InvalidInput, NotFound

MAX_LIMIT = 200

T = TypeVar("T")

#: what an order route answers: the whole order for staff, the customer's view otherwise
OrderView = Order | CustomerOrder

#: ``response_headers=`` of a route that creates something (documents ``created``'s header)
LOCATION = [ResponseHeader(name="Location", documentation_only=True,
                           description="The URL of the created resource")]


def created(data: T, location: str) -> Response[T]:
    """A 201 answer with ``Location``: where the new resource is (a client need not build
    the URL from the body)."""
    return Response(data, status_code=201, headers={"Location": location})


def engine_of(request: Request[Any, Any, Any]) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def caller(request: Request[Any, Any, Any]) -> Principal:
    user = request.scope.get("user")
    assert isinstance(user, Principal)
    return user


def idempotency_key(request: Request[Any, Any, Any]) -> str | None:
    """The ``Idempotency-Key`` for the engine, scoped like the HTTP layer's (the calling
    key, and a guest's cart token): two callers using the same key string never share
    (or see) a result."""
    raw = request.headers.get("idempotency-key", "").strip()
    return f"{key_scope(caller(request), dict(request.scope))}:{raw}" if raw else None


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}", field="limit")
    return limit


def check_cursor(after: str | None, prefix: str) -> str | None:
    """``after`` if it can be a cursor of a list of ids with ``prefix`` (the prefix and 26
    base-32 characters of ``new_id``); anything else names no position in the list and
    is refused (422) rather than answered with an empty page."""
    if after is not None and not re.fullmatch(rf"{prefix}_[0-9a-z]{{26}}", after):
        raise InvalidInput("after is not a cursor of this list: pass the 'next' of the "
                           "previous page", field="after")
    return after


async def check_product_cursor(request: Request[Any, Any, Any], after: str | None
                               ) -> str | None:
    """Product ids are chosen by the shop, so a product cursor is checked by looking it
    up: ``after`` must name a product."""
    if after is not None:
        try:
            await engine_of(request).catalog.product(after)
        except NotFound:
            raise InvalidInput("after is not a cursor of this list: pass the 'next' of "
                               "the previous page", field="after") from None
    return after
def order_view(request: Request[Any, Any, Any], order: Order) -> Order | CustomerOrder:
    """The order as this caller may see it: whole for staff, the customer's view for
    everyone else (storefront keys, customer tokens, stream tokens)."""
    return order if caller(request).staff else customer_order(order)


def timeline_view(request: Request[Any, Any, Any], order: Order,
                  events: list[Event]) -> list[Event]:
    """The timeline as this caller may see it (see ``order_view``)."""
    return events if caller(request).staff else customer_timeline(events, order.customer_id)
