"""Carts: lines, addresses, codes, shipping quotes, the pricing explanation, placing."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, delete, get, post, put
from litestar.params import FromPath, JSONBody

from ordnung.api.auth import ensure_owner, shopper_or_admin
from ordnung.api.client_ip import client_facts
from ordnung.api.problems import problems
from ordnung.api.routes.common import caller, engine_of, idempotency_key
from ordnung.api.schemas import (
    AddressesIn,
    CartIn,
    CodeIn,
    LineIn,
    PlaceCartIn,
    QuantityIn,
    ShippingMethodIn,
)
from ordnung.core.domain.carts import Cart
from ordnung.core.domain.orders import Order
from ordnung.core.domain.pricing import ExplanationStep, ShippingQuote
from ordnung.core.errors import InvalidInput


class QuoteOut(ShippingQuote, kw_only=True, frozen=True):
    method: str


class CartController(Controller):
    path = "/carts"
    tags = ["carts"]
    guards = [shopper_or_admin("orders")]

    async def _cart(self, request: Request[Any, Any, Any], cart_id: str) -> Cart:
        cart = await engine_of(request).carts.get(cart_id)
        ensure_owner(caller(request), "cart", cart_id, cart.customer_id, cart.channel)
        return cart

    @post("/", status_code=201, responses=problems(404))
    async def create(self, request: Request[Any, Any, Any], data: JSONBody[CartIn]) -> Cart:
        principal = caller(request)
        channel = data.channel
        if principal.kind == "storefront":
            if channel not in (None, principal.channel):
                raise InvalidInput("a storefront key creates carts for its own channel",
                                   field="channel")
            channel = principal.channel
        if channel is None:
            raise InvalidInput("channel is required", field="channel")
        return await engine_of(request).carts.create(
            channel=channel, currency=data.currency, email=data.email,
            customer_id=principal.customer_id if principal.kind == "customer" else None)

    @get("/{cart_id:str}", responses=problems(404))
    async def get_cart(self, request: Request[Any, Any, Any], cart_id: FromPath[str]) -> Cart:
        return await self._cart(request, cart_id)

    @post("/{cart_id:str}/lines", status_code=200, responses=problems(404))
    async def add_line(self, request: Request[Any, Any, Any], cart_id: FromPath[str],
                       data: JSONBody[LineIn]) -> Cart:
        await self._cart(request, cart_id)
        return await engine_of(request).carts.add_line(cart_id, data.sku, data.quantity)

    @put("/{cart_id:str}/lines/{sku:str}", responses=problems(404, 409))
    async def set_line(self, request: Request[Any, Any, Any], cart_id: FromPath[str],
                       sku: FromPath[str],
                       data: JSONBody[QuantityIn]) -> Cart:
        await self._cart(request, cart_id)
        return await engine_of(request).carts.set_line(cart_id, sku, data.quantity)

    @delete("/{cart_id:str}/lines/{sku:str}", status_code=200, responses=problems(404, 409))
    async def remove_line(self, request: Request[Any, Any, Any], cart_id: FromPath[str],
                          sku: FromPath[str]) -> Cart:
        await self._cart(request, cart_id)
        return await engine_of(request).carts.remove_line(cart_id, sku)

    @put("/{cart_id:str}/addresses", responses=problems(404, 409))
    async def addresses(self, request: Request[Any, Any, Any], cart_id: FromPath[str],
                        data: JSONBody[AddressesIn]) -> Cart:
        await self._cart(request, cart_id)
        carts = engine_of(request).carts
        if data.email is not None:
            await carts.set_contact(cart_id, email=data.email)
        return await carts.set_addresses(cart_id, shipping=data.shipping, billing=data.billing)

    @post("/{cart_id:str}/codes", status_code=200, responses=problems(404))
    async def apply_code(self, request: Request[Any, Any, Any], cart_id: FromPath[str],
                         data: JSONBody[CodeIn]) -> Cart:
        await self._cart(request, cart_id)
        return await engine_of(request).carts.apply_code(cart_id, data.code)

    @delete("/{cart_id:str}/codes/{code:str}", status_code=200, responses=problems(404, 409))
    async def remove_code(self, request: Request[Any, Any, Any], cart_id: FromPath[str],
                          code: FromPath[str]) -> Cart:
        await self._cart(request, cart_id)
        return await engine_of(request).carts.remove_code(cart_id, code)

    @get("/{cart_id:str}/shipping-quotes", responses=problems(404))
    async def quotes(self, request: Request[Any, Any, Any],
                     cart_id: FromPath[str]) -> list[QuoteOut]:
        await self._cart(request, cart_id)
        return [QuoteOut(method=m, service=q.service, name=q.name, price=q.price,
                         expected_delivery=q.expected_delivery, tax_class=q.tax_class)
                for m, q in await engine_of(request).carts.quotes(cart_id)]

    @put("/{cart_id:str}/shipping-method", responses=problems(404, 409))
    async def shipping_method(self, request: Request[Any, Any, Any], cart_id: FromPath[str],
                              data: JSONBody[ShippingMethodIn]) -> Cart:
        await self._cart(request, cart_id)
        return await engine_of(request).carts.set_shipping_method(cart_id, data.method)

    @get("/{cart_id:str}/explanation", responses=problems(404))
    async def explanation(self, request: Request[Any, Any, Any], cart_id: FromPath[str]
                          ) -> list[ExplanationStep]:
        await self._cart(request, cart_id)
        return await engine_of(request).carts.explain(cart_id)

    @post("/{cart_id:str}/order", status_code=201, responses=problems(402, 404))
    async def place(self, request: Request[Any, Any, Any], cart_id: FromPath[str],
                    data: JSONBody[PlaceCartIn]) -> Order:
        await self._cart(request, cart_id)
        client = client_facts(request, caller(request), data.client)
        return await engine_of(request).carts.place(
            cart_id, payment=data.payment, client=client, actor=caller(request).actor,
            idempotency_key=idempotency_key(request))
