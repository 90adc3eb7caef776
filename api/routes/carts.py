"""Carts: lines, addresses, codes, shipping quotes, the pricing explanation, placing.

A guest's cart (created with a storefront key) comes with a secret cart token, in the
creation's answer only; every later call on the cart sends it as ``X-Cart-Token``. A
customer's cart needs that customer's token; staff (an admin key with ``orders``) reach
every cart. Anything else answers 404, exactly as for a cart that does not exist.

A read reads the cart once, for that check. A change or a placement starts from the copy
this worker kept of the cart, if it has one (``CartService.change_as``), else from that
read; the service changes and saves it with the version it was read at.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import msgspec
from litestar import Controller, Request, Response
from litestar.params import FromPath, HeaderParameter, JSONBody

from ordnung.api.auth import cart_channel, shopper_or_admin
from ordnung.api.client_ip import client_facts
from ordnung.api.problems import problems
from ordnung.api.routes.common import (
    LOCATION,
    OrderView,
    caller,
    created,
    engine_of,
    idempotency_key,
    order_view,
)
from ordnung.api.routes.handlers import delete, get, post, put
from ordnung.api.schemas import (
    AddressesIn,
    CartIn,
    CodeIn,
    LineIn,
    PlaceCartIn,
    QuantityIn,
    ShippingMethodIn,
)
from ordnung.core.domain.access import StreamToken
from ordnung.core.domain.carts import Cart
from ordnung.core.domain.orders import Order
from ordnung.core.domain.pricing import ExplanationStep, ShippingQuote
from ordnung.core.errors import Conflict


class QuoteOut(ShippingQuote, kw_only=True, frozen=True):
    method: str


class CreatedCart(Cart, kw_only=True):
    """A new cart. ``cart_token`` (guest carts only) is shown this once: send it as
    ``X-Cart-Token`` with every call on the cart."""

    cart_token: str | None = None


CART_TOKEN_HEADER = "X-Cart-Token"
#: the cart token of a guest cart, on every route that takes a cart id
T = TypeVar("T")

CartToken = Annotated[str | None, HeaderParameter(
    name=CART_TOKEN_HEADER, required=False,
    description="The guest cart's token from its creation. Needed with a storefront key; "
                "a customer's own carts need the customer's token instead, staff need "
                "neither. Without the right one the cart answers 404.")]


class CartController(Controller):
    path = "/carts"
    tags = ["carts"]
    guards = [shopper_or_admin("orders")]

    async def _cart(self, request: Request[Any, Any, Any], cart_id: str,
                    cart_token: str | None) -> Cart:
        """The cart if the caller holds it (see the module docstring), else 404."""
        return await engine_of(request).carts.for_caller(cart_id, caller(request), cart_token)

    async def _change(self, request: Request[Any, Any, Any], cart_id: str,
                      cart_token: str | None, change: Callable[[Cart], Awaitable[T]]
                      ) -> T:
        """``change`` made to the cart if the caller holds it, else 404 (``change_as``:
        from the copy this worker kept when it is current)."""
        return await engine_of(request).carts.change_as(cart_id, caller(request), cart_token,
                                                        change)

    @post("/", status_code=201, responses=problems(404), response_headers=LOCATION)
    async def create(self, request: Request[Any, Any, Any],
                     data: JSONBody[CartIn]) -> Response[CreatedCart]:
        """Create a cart; a guest's (storefront key) comes with its cart token."""
        principal = caller(request)
        channel = cart_channel(principal, data.channel)
        carts = engine_of(request).carts
        token: str | None = None
        if principal.kind == "storefront":
            cart, token = await carts.create_guest(channel=channel, currency=data.currency,
                                                   email=data.email)
        else:
            cart = await carts.create(
                channel=channel, currency=data.currency, email=data.email,
                customer_id=principal.customer_id if principal.kind == "customer" else None)
        return created(CreatedCart(**msgspec.structs.asdict(cart), cart_token=token),
                       f"/carts/{cart.id}")

    @get("/{cart_id:str}", responses=problems(404))
    async def get_cart(self, request: Request[Any, Any, Any], cart_id: FromPath[str],
                       cart_token: CartToken = None) -> Cart:
        """The cart with its priced lines and totals."""
        return await self._cart(request, cart_id, cart_token)

    @post("/{cart_id:str}/lines", status_code=200, responses=problems(404))
    async def add_line(self, request: Request[Any, Any, Any], cart_id: FromPath[str],
                       data: JSONBody[LineIn],
                       cart_token: CartToken = None) -> Cart:
        """Add units of a SKU to the cart (merged with a line of the same SKU)."""
        carts = engine_of(request).carts
        return await self._change(
            request, cart_id, cart_token,
            lambda cart: carts.add_line(cart_id, data.sku, data.quantity, cart=cart))

    @put("/{cart_id:str}/lines/{sku:str}", responses=problems(404, 409))
    async def set_line(self, request: Request[Any, Any, Any], cart_id: FromPath[str],
                       sku: FromPath[str],
                       data: JSONBody[QuantityIn],
                       cart_token: CartToken = None) -> Cart:
        """Set the quantity of a SKU's line in the cart."""
        carts = engine_of(request).carts
        return await self._change(
            request, cart_id, cart_token,
            lambda cart: carts.set_line(cart_id, sku, data.quantity, cart=cart))

    @delete("/{cart_id:str}/lines/{sku:str}", status_code=200, responses=problems(404, 409))
    async def remove_line(self, request: Request[Any, Any, Any], cart_id: FromPath[str],
                          sku: FromPath[str],
                          cart_token: CartToken = None) -> Cart:
        """Remove a SKU's line from the cart."""
        carts = engine_of(request).carts
        return await self._change(
            request, cart_id, cart_token,
            lambda cart: carts.remove_line(cart_id, sku, cart=cart))

    @put("/{cart_id:str}/addresses", responses=problems(404, 409))
    async def addresses(self, request: Request[Any, Any, Any], cart_id: FromPath[str],
                        data: JSONBody[AddressesIn],
                        cart_token: CartToken = None) -> Cart:
        """Set the cart's shipping and billing address and contact e-mail."""
        carts = engine_of(request).carts
        return await self._change(
            request, cart_id, cart_token,
            lambda cart: carts.set_addresses(
                cart_id, shipping=data.shipping, billing=data.billing, email=data.email, cart=cart))

    @post("/{cart_id:str}/codes", status_code=200, responses=problems(404))
    async def apply_code(self, request: Request[Any, Any, Any], cart_id: FromPath[str],
                         data: JSONBody[CodeIn],
                         cart_token: CartToken = None) -> Cart:
        """Apply a promotion code to the cart."""
        carts = engine_of(request).carts
        return await self._change(
            request, cart_id, cart_token,
            lambda cart: carts.apply_code(cart_id, data.code, cart=cart))

    @delete("/{cart_id:str}/codes/{code:str}", status_code=200, responses=problems(404, 409))
    async def remove_code(self, request: Request[Any, Any, Any], cart_id: FromPath[str],
                          code: FromPath[str],
                          cart_token: CartToken = None) -> Cart:
        """Remove a promotion code from the cart."""
        carts = engine_of(request).carts
        return await self._change(
            request, cart_id, cart_token,
            lambda cart: carts.remove_code(cart_id, code, cart=cart))

    @get("/{cart_id:str}/shipping-quotes", responses=problems(404))
    async def quotes(self, request: Request[Any, Any, Any],
                     cart_id: FromPath[str],
                     cart_token: CartToken = None) -> list[QuoteOut]:
        """Shipping options and their prices for the cart as it is now."""
        cart = await self._cart(request, cart_id, cart_token)
        return [QuoteOut(method=m, service=q.service, name=q.name, price=q.price,
                         expected_delivery=q.expected_delivery, tax_class=q.tax_class)
                for m, q in await engine_of(request).carts.quotes(cart_id, cart=cart)]

    @put("/{cart_id:str}/shipping-method", responses=problems(404, 409))
    async def shipping_method(self, request: Request[Any, Any, Any], cart_id: FromPath[str],
                              data: JSONBody[ShippingMethodIn],
                              cart_token: CartToken = None) -> Cart:
        """Choose the cart's shipping method (one of its shipping quotes)."""
        carts = engine_of(request).carts
        return await self._change(
            request, cart_id, cart_token,
            lambda cart: carts.set_shipping_method(cart_id, data.method, cart=cart))

    @get("/{cart_id:str}/explanation", responses=problems(404))
    async def explanation(self, request: Request[Any, Any, Any], cart_id: FromPath[str],
                          cart_token: CartToken = None) -> list[ExplanationStep]:
        """How the cart's price came about, step by step (lines, promotions, shipping, tax)."""
        cart = await self._cart(request, cart_id, cart_token)
        return await engine_of(request).carts.explain(cart_id, cart=cart)

    @post("/{cart_id:str}/order", status_code=201, responses=problems(402, 404),
          response_headers=LOCATION)
    async def place(self, request: Request[Any, Any, Any], cart_id: FromPath[str],
                    data: JSONBody[PlaceCartIn],
                    cart_token: CartToken = None) -> Response[OrderView]:
        """Place the cart as an order, with its payment; the cart is spent."""
        principal = caller(request)
        carts = engine_of(request).carts
        client = client_facts(request, principal, data.client)

        async def place(cart: Cart) -> Order:
            if principal.kind == "customer" and cart.customer_id is None:
                # a guest cart whose token a signed-in customer holds becomes theirs: so
                # does the order, which then shows among the customer's orders
                cart = await carts.adopt(cart_id, principal.customer_id or "")
            return await carts.place(
                cart_id, payment=data.payment, client=client, actor=principal.actor,
                idempotency_key=idempotency_key(request), cart=cart)

        order = await self._change(request, cart_id, cart_token, place)
        return created(order_view(request, order), f"/orders/{order.id}")

    @post("/{cart_id:str}/order/stream-tokens", status_code=201, responses=problems(404, 409),
          response_headers=LOCATION)
    async def order_stream_token(self, request: Request[Any, Any, Any], cart_id: FromPath[str],
                                 cart_token: CartToken = None) -> Response[StreamToken]:
        """Mint a stream token for the order this cart became, so a guest's page (which
        reads no order otherwise) can follow it live; see ``POST
        /orders/{order_id}/stream-tokens``."""
        cart = await self._cart(request, cart_id, cart_token)
        if cart.order_id is None:
            raise Conflict(f"cart {cart_id} has not been placed yet", cart_id=cart_id)
        engine = engine_of(request)
        token = await engine.stream_tokens.mint(await engine.orders.get(cart.order_id))
        return created(token, token.url)
