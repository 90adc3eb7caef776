"""Returns (RMA): request, approve or reject, receive with or without restock, refund."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from litestar import Controller, Request, Response
from litestar.params import FromPath, FromQuery, JSONBody

from ordnung.api.auth import admin, customer_or_admin
from ordnung.api.problems import problems
from ordnung.api.routes.common import (
    LOCATION,
    OrderView,
    caller,
    check_cursor,
    check_limit,
    created,
    engine_of,
    order_view,
)
from ordnung.api.routes.handlers import get, post
from ordnung.api.routes.orders import load_order
from ordnung.api.schemas import ReasonIn, ReceiveIn, ReturnIn, ReturnPage, ReturnRefundIn
from ordnung.core.domain.orders import Order
from ordnung.core.domain.returns import ListedReturn
from ordnung.core.services.order_parts import PartFilter


class ReturnController(Controller):
    path = "/orders/{order_id:str}/returns"
    tags = ["returns"]

    @post("/", guards=[customer_or_admin("orders")], status_code=201,
          responses=problems(404), response_headers=LOCATION)
    async def request_return(self, request: Request[Any, Any, Any], order_id: FromPath[str],
                             data: JSONBody[ReturnIn]) -> Response[OrderView]:
        """Ask to return shipped units of the order."""
        await load_order(request, order_id)
        order, requested = await engine_of(request).returns.request(
            order_id, data.lines, reason=data.reason, actor=caller(request).actor)
        return created(order_view(request, order), f"/returns/{requested.id}")

    @post("/{return_id:str}/approve", guards=[admin("orders")], status_code=200,
          responses=problems(404))
    async def approve(self, request: Request[Any, Any, Any], order_id: FromPath[str],
                      return_id: FromPath[str]) -> Order:
        """Approve a requested return."""
        return await engine_of(request).returns.approve(order_id, return_id,
                                                        actor=caller(request).actor)

    @post("/{return_id:str}/reject", guards=[admin("orders")], status_code=200,
          responses=problems(404))
    async def reject(self, request: Request[Any, Any, Any], order_id: FromPath[str],
                     return_id: FromPath[str],
                     data: JSONBody[ReasonIn]) -> Order:
        """Reject a requested return, with a reason."""
        return await engine_of(request).returns.reject(order_id, return_id,
                                                       reason=data.reason,
                                                       actor=caller(request).actor)

    @post("/{return_id:str}/receive", guards=[admin("fulfilment")], status_code=200,
          responses=problems(404))
    async def receive(self, request: Request[Any, Any, Any], order_id: FromPath[str],
                      return_id: FromPath[str],
                      data: JSONBody[ReceiveIn]) -> Order:
        """Receive a return's goods, restocking them line by line as ``restock`` says."""
        return await engine_of(request).returns.receive(order_id, return_id,
                                                        restock=data.restock,
                                                        actor=caller(request).actor)

    @post("/{return_id:str}/refund", guards=[admin("refunds")], status_code=200,
          responses=problems(402, 404))
    async def refund(self, request: Request[Any, Any, Any], order_id: FromPath[str],
                     return_id: FromPath[str],
                     data: JSONBody[ReturnRefundIn]) -> Order:
        """Refund a received return (its refund amount unless ``amount`` is given)."""
        return await engine_of(request).returns.refund(order_id, return_id,
                                                       amount=data.amount,
                                                       actor=caller(request).actor)


class ReturnListController(Controller):
    """Returns across orders, for staff (a customer sees theirs on their orders)."""

    path = "/returns"
    tags = ["returns"]
    guards = [admin("orders")]

    @get("/")
    async def list_returns(self, request: Request[Any, Any, Any],
                           status: FromQuery[list[str] | None] = None,
                           order_id: FromQuery[str | None] = None,
                           since: FromQuery[datetime | None] = None,
                           until: FromQuery[datetime | None] = None,
                           after: FromQuery[str | None] = None,
                           limit: FromQuery[int] = 50) -> ReturnPage:
        """Returns across orders, newest first. Filters: ``status`` (repeatable),
        ``order_id``, created ``since`` (inclusive) and ``until`` (exclusive), ISO 8601
        with a time zone. Pass ``next`` from a page as ``after``."""
        where = PartFilter(status=status, order_id=order_id, since=since, until=until)
        items = await engine_of(request).returns.list(where, after=check_cursor(after, "ret"),
                                                      limit=check_limit(limit))
        return ReturnPage(items=items, next=items[-1].id if len(items) == limit else None)

    @get("/{return_id:str}", responses=problems(404))
    async def get_return(self, request: Request[Any, Any, Any],
                         return_id: FromPath[str]) -> ListedReturn:
        """One return, with the order it belongs to."""
        return await engine_of(request).returns.get(return_id)
