"""Shared bits of the handlers: the engine, the caller, pagination limits."""

from __future__ import annotations

from typing import Any

from litestar import Request

from ordnung.api.idempotency import key_scope
from ordnung.core import Engine
from ordnung.core.domain.access import Principal
from ordnung.core.domain.events import Event
from ordnung.core.domain.orders import Order
from ordnung.core.domain.views import CustomerOrder, customer_order, customer_timeline
from ordnung.core.errors import InvalidInput

MAX_LIMIT = 200

#: what an order route answers: the whole order for staff, the customer's view otherwise
OrderView = Order | CustomerOrder


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


def order_view(request: Request[Any, Any, Any], order: Order) -> Order | CustomerOrder:
    """The order as this caller may see it: whole for staff, the customer's view for
    everyone else (storefront keys, customer tokens, stream tokens)."""
    return order if caller(request).staff else customer_order(order)


def timeline_view(request: Request[Any, Any, Any], order: Order,
                  events: list[Event]) -> list[Event]:
    """The timeline as this caller may see it (see ``order_view``)."""
    return events if caller(request).staff else customer_timeline(events, order.customer_id)
