"""Payments of an order, and the gateway webhook route."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response
from litestar.params import FromPath, JSONBody

from ordnung.api.auth import admin, customer_or_admin
from ordnung.api.problems import problems
from ordnung.api.routes.common import LOCATION, OrderView, caller, created, engine_of, order_view
from ordnung.api.routes.handlers import get, post
from ordnung.api.routes.orders import load_order
from ordnung.api.schemas import AuthorizeIn, CaptureIn, RefundIn, VoidIn
from ordnung.core.domain.orders import Order
from ordnung.core.domain.payments import PaymentMethod


class PaymentController(Controller):
    path = "/orders/{order_id:str}/payments"
    tags = ["payments"]

    @get("/methods", guards=[customer_or_admin("payments")], responses=problems(404))
    async def methods(self, request: Request[Any, Any, Any], order_id: FromPath[str]
                      ) -> list[PaymentMethod]:
        """The ways to pay that the gateway plugins offer for this order."""
        await load_order(request, order_id)
        return await engine_of(request).payments.methods(order_id)

    @post("/", guards=[customer_or_admin("payments")], status_code=201,
          responses=problems(402, 404), response_headers=LOCATION)
    async def authorize(self, request: Request[Any, Any, Any], order_id: FromPath[str],
                        data: JSONBody[AuthorizeIn]) -> Response[OrderView]:
        """Pay (again) for what the order's payments do not cover yet."""
        await load_order(request, order_id)
        order = await engine_of(request).payments.authorize(
            order_id, gateway=data.gateway, method=data.method, token=data.token,
            actor=caller(request).actor)
        # payments are parts of their order
        return created(order_view(request, order), f"/orders/{order.id}")

    @post("/capture", guards=[admin("payments")], status_code=200,
          responses=problems(402, 404))
    async def capture(self, request: Request[Any, Any, Any], order_id: FromPath[str],
                      data: JSONBody[CaptureIn]) -> Order:
        """Capture an authorized payment, in full or in part."""
        return await engine_of(request).payments.capture(
            order_id, amount=data.amount, payment_id=data.payment_id,
            actor=caller(request).actor)

    @post("/refund", guards=[admin("refunds")], status_code=200,
          responses=problems(402, 404))
    async def refund(self, request: Request[Any, Any, Any], order_id: FromPath[str],
                     data: JSONBody[RefundIn]) -> Order:
        """Refund a captured payment, in full or in part."""
        return await engine_of(request).payments.refund(
            order_id, amount=data.amount, payment_id=data.payment_id, reason=data.reason,
            actor=caller(request).actor)

    @post("/void", guards=[admin("payments")], status_code=200,
          responses=problems(402, 404))
    async def void(self, request: Request[Any, Any, Any], order_id: FromPath[str],
                   data: JSONBody[VoidIn]) -> Order:
        """Void an authorization that was not captured."""
        return await engine_of(request).payments.void(order_id, payment_id=data.payment_id,
                                                      actor=caller(request).actor)


@post("/webhooks/payments/{gateway:str}", guards=[admin("payments")], status_code=200,
      tags=["payments"], responses=problems(404))
async def payment_webhook(request: Request[Any, Any, Any], gateway: FromPath[str]) -> dict[str,
                          Any]:
    """A gateway's webhook: the gateway plugin verifies its signature and parses it.

    Like every route it needs a key with the ``payments`` scope, sent as a
    Bearer header or, for gateways that cannot set headers, as the
    ``access_key`` query parameter of the webhook URL.
    """
    body = await request.body()
    headers = {k: v for k, v in request.headers.items()}
    orders = await engine_of(request).payments.webhook(gateway, headers, body)
    return {"orders": orders}
