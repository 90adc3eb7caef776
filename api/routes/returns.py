"""Returns (RMA): request, approve or reject, receive with or without restock, refund."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, post
from litestar.params import FromPath, JSONBody

from ordnung.api.auth import admin, customer_or_admin
from ordnung.api.problems import problems
from ordnung.api.routes.common import OrderView, caller, engine_of, order_view
from ordnung.api.routes.orders import load_order
from ordnung.api.schemas import ReasonIn, ReceiveIn, ReturnIn, ReturnRefundIn
from ordnung.core.domain.orders import Order


class ReturnController(Controller):
    path = "/orders/{order_id:str}/returns"
    tags = ["returns"]

    @post("/", guards=[customer_or_admin("orders")], status_code=201,
          responses=problems(404))
    async def request_return(self, request: Request[Any, Any, Any], order_id: FromPath[str],
                             data: JSONBody[ReturnIn]) -> OrderView:
        """Ask to return shipped units of the order."""
        await load_order(request, order_id)
        order, _ = await engine_of(request).returns.request(
            order_id, data.lines, reason=data.reason, actor=caller(request).actor)
        return order_view(request, order)

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
