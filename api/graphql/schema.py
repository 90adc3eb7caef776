"""The GraphQL schema: shop and staff operations over the same ``Engine`` as REST.

One schema at ``/graphql`` for every caller: what a field answers depends on who
calls, exactly as a REST route does. Each resolver first applies the same permission
predicate as the REST route it mirrors (``ordnung.api.auth.require_*``), then calls the
same engine service; the customer's view of an order is made by the same function.
Errors are raised, not returned as typed unions: see ``ordnung.api.graphql.errors``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Any, cast

import msgspec
import strawberry
import structlog
from graphql import GraphQLError
from litestar import Request
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException
from strawberry.extensions import (
    DisableIntrospection,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    QueryDepthLimiter,
    SchemaExtension,
)
from strawberry.extensions.field_extension import FieldExtension
from strawberry.types import ExecutionContext, Info
from strawberry.types.field import StrawberryField
from strawberry.utils.str_converters import to_camel_case

from ordnung.api.auth import (
    cart_channel,
    ensure_owner,
    order_for_caller,
    require_admin,
    require_customer,
    require_customer_or_admin,
    require_order_reader,
    require_shopper_or_admin,
    require_storefront,
)
from ordnung.api.client_ip import client_facts
from ordnung.api.graphql.documents import DocumentCache, KnownDocuments
from ordnung.api.graphql.inputs import (
    AddressInput,
    LineInput,
    PaymentInput,
    ReturnLineInput,
    VariantInput,
    checked,
)
from ordnung.api.graphql.inputs import plain as _plain_input
from ordnung.api.graphql.types import (
    ApiKey,
    Availability,
    Cart,
    Channel,
    CreatedCart,
    Customer,
    CustomerConnection,
    CustomerEdge,
    ExplanationStep,
    IssuedKey,
    ListedReturn,
    ListedShipment,
    Location,
    Money,
    Movement,
    MovementConnection,
    MovementEdge,
    Order,
    OrderConnection,
    OrderEdge,
    PageInfo,
    PaymentMethod,
    Product,
    ProductConnection,
    ProductEdge,
    Registered,
    ReturnConnection,
    ReturnEdge,
    SessionTokens,
    ShipmentConnection,
    ShipmentEdge,
    StockLevel,
    StreamToken,
    TimelineEvent,
)
from ordnung.api.graphql.webhooks import WebhookMutation, WebhookQuery
from ordnung.api.problems import TITLES, facts_of
from ordnung.api.routes.accounts import RESET_ACCEPTED, client_address
from ordnung.api.routes.common import (
    MAX_LIMIT,
    caller,
    check_cursor,
    check_product_cursor,
    engine_of,
    idempotency_key,
)
from ordnung.api.schemas import (
    AddressesIn,
    AdjustIn,
    AuthorizeIn,
    CaptureIn,
    CartIn,
    CodeIn,
    CountIn,
    CustomerIn,
    CustomerPatch,
    KeyIn,
    LineIn,
    NewPasswordIn,
    NoteIn,
    PackIn,
    PasswordResetIn,
    PlaceCartIn,
    QuantityIn,
    ReasonIn,
    ReceiveIn,
    RefreshIn,
    RefundIn,
    RegisterIn,
    ReleaseIn,
    ReturnIn,
    ReturnRefundIn,
    ShipIn,
    ShipmentIn,
    ShippingMethodIn,
    SignInIn,
    SlicesIn,
    TokenIn,
    TransitionIn,
    VerifyEmailIn,
    VoidIn,
)
from ordnung.core import Engine
from ordnung.core.config import env_bool
from ordnung.core.domain.access import Principal
from ordnung.core.domain.access import StreamToken as StreamTokenStruct
from ordnung.core.domain.carts import Cart as CartStruct
from ordnung.core.domain.catalog import Product as ProductStruct
from ordnung.core.domain.inventory import Channel as ChannelStruct
from ordnung.core.domain.inventory import Location as LocationStruct
from ordnung.core.domain.inventory import StockLevel as StockLevelStruct
from ordnung.core.domain.orders import Order as OrderStruct
from ordnung.core.domain.views import customer_event, customer_order, customer_timeline
from ordnung.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from ordnung.core.requests import PlaceOrder
from ordnung.core.services.order_parts import PartFilter
from ordnung.core.validation import NOTE_FIELDS, check_parameter

log = structlog.get_logger("ordnung.graphql")

#: limits against abusive queries (documented in README "GraphQL")
MAX_DEPTH = 10
MAX_ALIASES = 15
MAX_TOKENS = 2000
CART_TOKEN_HEADER = "x-cart-token"


# --------------------------------------------------------------------------- helpers


def _connection(info: Info) -> ASGIConnection[Any, Any, Any, Any]:
    """The HTTP request, or the WebSocket of a subscription."""
    connection: ASGIConnection[Any, Any, Any, Any] = (
        info.context.get("request") or info.context["socket"])
    return connection


def _principal(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    user = connection.scope.get("user")
    if not isinstance(user, Principal):
        raise NotAuthorizedException("send 'Authorization: Bearer <key>'")
    return user


def _request(info: Info) -> Request[Any, Any, Any]:
    request: Request[Any, Any, Any] = info.context["request"]
    return request


def _engine(info: Info) -> Engine:
    return engine_of(_request(info))


def _caller(info: Info) -> Principal:
    return caller(_request(info))


def _first(first: int) -> int:
    """The page-size cap: the same bound as REST's ``limit``."""
    if not 1 <= first <= MAX_LIMIT:
        raise InvalidInput(f"first must be between 1 and {MAX_LIMIT}", field="first")
    return first


async def _cart(info: Info, cart_id: str) -> CartStruct:
    """The cart if the caller holds it (the cart token from ``X-Cart-Token``), else the
    same not-found as REST."""
    principal = _caller(info)
    require_shopper_or_admin(principal, "orders")
    token = _request(info).headers.get(CART_TOKEN_HEADER)
    return await _engine(info).carts.for_caller(cart_id, principal, token)


async def _changed(info: Info, cart_id: str,
                   change: Callable[[CartStruct], Awaitable[CartStruct]]) -> Cart:
    """``change`` made to the cart if the caller holds it, else the same not-found as
    REST (``CartService.change_as``: from the copy this worker kept when it is current)."""
    principal = _caller(info)
    require_shopper_or_admin(principal, "orders")
    token = _request(info).headers.get(CART_TOKEN_HEADER)
    return Cart.of(await _engine(info).carts.change_as(cart_id, principal, token, change))


def _stream_token(t: StreamTokenStruct) -> StreamToken:
    return StreamToken(token=t.token, order_id=t.order_id, expires_at=t.expires_at, url=t.url)


def _level(x: StockLevelStruct) -> StockLevel:
    return StockLevel(sku=x.sku, location_id=x.location_id, on_hand=x.on_hand,
                      reserved=x.reserved, available=x.available)


def _channel(c: ChannelStruct) -> Channel:
    return Channel(id=c.id, name=c.name, kind=c.kind, currency=c.currency, active=c.active,
                   currencies=list(c.currencies))


def _own_customer(principal: Principal, customer_id: str) -> str:
    """As REST's customer routes: ``me`` for a customer token's own id; another
    customer's id is not found."""
    if customer_id == "me" and principal.kind == "customer" and principal.customer_id:
        return principal.customer_id
    if principal.kind == "customer" and customer_id != principal.customer_id:
        raise NotFound("customer", customer_id)
    return customer_id


def _order_view(info: Info, order: OrderStruct) -> Order:
    return Order.of(order if _caller(info).staff else customer_order(order))


# --------------------------------------------------------------------------- queries


@strawberry.type
class Query(WebhookQuery):
    @strawberry.field(description="The catalogue, a page at a time (REST: GET "
                                  "/catalogue/products).")
    async def products(self, info: Info, first: int = 50,
                       after: str | None = None) -> ProductConnection:
        require_shopper_or_admin(_caller(info), "catalogue")
        limit = _first(first)
        items = await _engine(info).catalog.products(
            await check_product_cursor(_request(info), after), limit)
        return ProductConnection(
            edges=[ProductEdge(cursor=p.id, node=Product.of(p)) for p in items],
            page_info=PageInfo(has_next_page=len(items) == limit,
                               end_cursor=items[-1].id if items else None))

    @strawberry.field(description="One product with its variants.")
    async def product(self, info: Info, id: str) -> Product:
        require_shopper_or_admin(_caller(info), "catalogue")
        return Product.of(await _engine(info).catalog.product(id))

    @strawberry.field(description="A cart the caller holds: a guest cart needs its token "
                                  "in the X-Cart-Token header.")
    async def cart(self, info: Info, id: str) -> Cart:
        return Cart.of(await _cart(info, id))

    @strawberry.field(description="How the cart's price came about, step by step (lines, "
                                  "promotions, shipping, tax).")
    async def cart_explanation(self, info: Info, cart_id: str) -> list[ExplanationStep]:
        cart = await _cart(info, cart_id)
        return [ExplanationStep(step=e.step, source=e.source, message=e.message,
                                line_id=e.line_id,
                                amount=None if e.amount is None
                                else Money.of(e.amount, cart.currency))
                for e in await _engine(info).carts.explain(cart_id, cart=cart)]

    @strawberry.field(description="The ways to pay that the gateway plugins offer for "
                                  "this order (a customer token for its own, or staff "
                                  "with 'payments').")
    async def payment_methods(self, info: Info, order_id: str) -> list[PaymentMethod]:
        principal = _caller(info)
        require_customer_or_admin(principal, "payments")
        order = await _engine(info).orders.get(order_id)
        ensure_owner(principal, "order", order_id, order.customer_id)
        return [PaymentMethod(gateway=m.gateway, method=m.method, name=m.name,
                              grants_terms=m.grants_terms)
                for m in await _engine(info).payments.methods(order_id)]

    @strawberry.field(description="Orders ready to ship: highest priority first, then "
                                  "oldest (staff, 'fulfilment').")
    async def fulfilment_queue(self, info: Info, first: int = 100,
                               after: str | None = None) -> OrderConnection:
        require_admin(_caller(info), "fulfilment")
        limit = _first(first)
        items = await _engine(info).fulfilment.queue(limit=limit,
                                                    after=check_cursor(after, "ord"))
        return OrderConnection(
            edges=[OrderEdge(cursor=o.id, node=Order.of(o)) for o in items],
            page_info=PageInfo(has_next_page=len(items) == limit,
                               end_cursor=items[-1].id if items else None))

    @strawberry.field(description="Shipments across orders, newest first (staff, "
                                  "'fulfilment').")
    async def shipments(self, info: Info, first: int = 50, after: str | None = None,
                        status: list[str] | None = None, order_id: str | None = None,
                        carrier: str | None = None) -> ShipmentConnection:
        require_admin(_caller(info), "fulfilment")
        limit = _first(first)
        items = await _engine(info).fulfilment.shipments(
            PartFilter(status=status, order_id=order_id, carrier=carrier),
            after=check_cursor(after, "shp"), limit=limit)
        return ShipmentConnection(
            edges=[ShipmentEdge(cursor=x.id, node=ListedShipment.of(x)) for x in items],
            page_info=PageInfo(has_next_page=len(items) == limit,
                               end_cursor=items[-1].id if items else None))

    @strawberry.field(description="One shipment with its order (staff, 'fulfilment').")
    async def shipment(self, info: Info, id: str) -> ListedShipment:
        require_admin(_caller(info), "fulfilment")
        return ListedShipment.of(await _engine(info).fulfilment.shipment(id))

    @strawberry.field(description="Returns across orders, newest first (staff, 'orders').")
    async def returns(self, info: Info, first: int = 50, after: str | None = None,
                      status: list[str] | None = None,
                      order_id: str | None = None) -> ReturnConnection:
        require_admin(_caller(info), "orders")
        limit = _first(first)
        items = await _engine(info).returns.list(
            PartFilter(status=status, order_id=order_id),
            after=check_cursor(after, "ret"), limit=limit)
        return ReturnConnection(
            edges=[ReturnEdge(cursor=x.id, node=ListedReturn.of(x)) for x in items],
            page_info=PageInfo(has_next_page=len(items) == limit,
                               end_cursor=items[-1].id if items else None))

    @strawberry.field(name="return", description="One return with its order (staff, "
                                                 "'orders').")
    async def return_(self, info: Info, id: str) -> ListedReturn:
        require_admin(_caller(info), "orders")
        return ListedReturn.of(await _engine(info).returns.get(id))

    @strawberry.field(description="Every key: admin, storefront and staff-issued customer "
                                  "tokens, never secrets (staff, 'keys').")
    async def api_keys(self, info: Info) -> list[ApiKey]:
        require_admin(_caller(info), "keys")
        return [ApiKey.of(k) for k in await _engine(info).access.list()]

    @strawberry.field(description="The installed plugins, their hooks and settings "
                                  "(staff, 'plugins').")
    async def plugins(self, info: Info) -> strawberry.scalars.JSON:
        require_admin(_caller(info), "plugins")
        return cast(Any, msgspec.to_builtins(_engine(info).plugins()))

    @strawberry.field(description="The merged state machines, core plus plugin states "
                                  "(staff, 'plugins').")
    async def lifecycle(self, info: Info) -> strawberry.scalars.JSON:
        require_admin(_caller(info), "plugins")
        return cast(Any, msgspec.to_builtins(_engine(info).lifecycle()))

    @strawberry.field(description="Customers, a page at a time (staff, 'customers').")
    async def customers(self, info: Info, first: int = 50,
                        after: str | None = None) -> CustomerConnection:
        require_admin(_caller(info), "customers")
        limit = _first(first)
        items = await _engine(info).customers.list(check_cursor(after, "cus"), limit)
        return CustomerConnection(
            edges=[CustomerEdge(cursor=c.id, node=Customer.of(c)) for c in items],
            page_info=PageInfo(has_next_page=len(items) == limit,
                               end_cursor=items[-1].id if items else None))

    @strawberry.field(description="A customer: staff any, a customer token its own (id "
                                  "'me' works too).")
    async def customer(self, info: Info, id: str) -> Customer:
        principal = _caller(info)
        require_customer_or_admin(principal, "customers")
        return Customer.of(await _engine(info).customers.get(_own_customer(principal, id)))

    @strawberry.field(description="Everything stored about a customer (data export): staff "
                                  "any, a customer token its own.")
    async def customer_export(self, info: Info, id: str) -> strawberry.scalars.JSON:
        principal = _caller(info)
        require_customer_or_admin(principal, "customers")
        return cast(Any, msgspec.to_builtins(await _engine(info).customers.export(
            _own_customer(principal, id), staff=principal.staff)))

    @strawberry.field(description="Stock locations (staff, 'inventory').")
    async def inventory_locations(self, info: Info) -> list[Location]:
        require_admin(_caller(info), "inventory")
        return [Location(id=x.id, name=x.name, priority=x.priority, active=x.active)
                for x in await _engine(info).inventory.locations()]

    @strawberry.field(description="Stock levels, by SKU and location (staff, 'inventory').")
    async def inventory_levels(self, info: Info, skus: list[str] | None = None,
                               location_id: str | None = None) -> list[StockLevel]:
        require_admin(_caller(info), "inventory")
        return [_level(x) for x in await _engine(info).inventory.levels(skus, location_id)]

    @strawberry.field(description="The stock movement journal, newest first (staff, "
                                  "'inventory').")
    async def inventory_movements(self, info: Info, first: int = 100,
                                  after: str | None = None, sku: str | None = None,
                                  order_id: str | None = None) -> MovementConnection:
        require_admin(_caller(info), "inventory")
        limit = _first(first)
        items = await _engine(info).inventory.movements(
            sku=sku, order_id=order_id, after=check_cursor(after, "mv"), limit=limit)
        return MovementConnection(
            edges=[MovementEdge(cursor=m.id, node=Movement(
                id=m.id, sku=m.sku, location_id=m.location_id, kind=m.kind,
                on_hand_delta=m.on_hand_delta, reserved_delta=m.reserved_delta,
                order_id=m.order_id, reason=m.reason, actor=m.actor, at=m.at))
                   for m in items],
            page_info=PageInfo(has_next_page=len(items) == limit,
                               end_cursor=items[-1].id if items else None))

    @strawberry.field(description="Every sales channel (staff, 'catalogue').")
    async def channels(self, info: Info) -> list[Channel]:
        require_admin(_caller(info), "catalogue")
        return [_channel(c) for c in await _engine(info).channels.list()]

    @strawberry.field(description="Plugin reactions that failed: open ones are still "
                                  "retried with backoff, resolved ones succeeded later "
                                  "(staff, 'plugins').")
    async def reactions(self, info: Info, status: str = "open", first: int = 50,
                        after: str | None = None) -> strawberry.scalars.JSON:
        require_admin(_caller(info), "plugins")
        if status not in ("open", "resolved"):
            raise InvalidInput("status must be 'open' or 'resolved'", field="status")
        limit = _first(first)
        items = await _engine(info).reactions.failed(
            resolved=status == "resolved", after=check_cursor(after, "rf"), limit=limit)
        return cast(Any, {"items": msgspec.to_builtins(items),
                          "next": items[-1].id if len(items) == limit else None})

    @strawberry.field(description="One failed plugin reaction (staff, 'plugins').")
    async def reaction(self, info: Info, id: str) -> strawberry.scalars.JSON:
        require_admin(_caller(info), "plugins")
        return cast(Any, msgspec.to_builtins(await _engine(info).reactions.get(id)))

    @strawberry.field(description="Orders, newest first: a customer's own (in the "
                                  "customer's view), or every order for staff.")
    async def orders(self, info: Info, first: int = 50, after: str | None = None,
                     status: list[str] | None = None, channel: str | None = None,
                     customer_id: str | None = None) -> OrderConnection:
        principal = _caller(info)
        require_customer_or_admin(principal, "orders")
        if principal.kind == "customer":
            customer_id = principal.customer_id
        limit = _first(first)
        items = await _engine(info).orders.list(
            customer_id=customer_id, status=status, channel=channel,
            after=check_cursor(after, "ord"), limit=limit)
        return OrderConnection(
            edges=[OrderEdge(cursor=o.id, node=_order_view(info, o)) for o in items],
            page_info=PageInfo(has_next_page=len(items) == limit,
                               end_cursor=items[-1].id if items else None))

    @strawberry.field(description="Available units per SKU (1 to 100 SKUs): the one "
                                  "number every sales channel sees.")
    async def availability(self, info: Info, skus: list[str]) -> list[Availability]:
        require_shopper_or_admin(_caller(info), "catalogue")
        if not skus or len(skus) > 100:
            raise InvalidInput("ask for 1 to 100 SKUs", field="skus")
        for sku in skus:
            checked(_engine(info), LineIn, sku=sku)
        units = await _engine(info).inventory.available(skus)
        return [Availability(sku=sku, available=n) for sku, n in units.items()]

    @strawberry.field(description="An order by its human-readable number.")
    async def order_by_number(self, info: Info, number: str) -> Order:
        principal = _caller(info)
        require_customer_or_admin(principal, "orders")
        order = await _engine(info).orders.by_number(number)
        ensure_owner(principal, "order", number, order.customer_id)
        return _order_view(info, order)

    @strawberry.field(description="The order's timeline, every event in order (customers "
                                  "get their view of it).")
    async def order_timeline(self, info: Info, order_id: str) -> list[TimelineEvent]:
        principal = _caller(info)
        require_customer_or_admin(principal, "orders")
        engine = _engine(info)
        order = await engine.orders.get(order_id)
        ensure_owner(principal, "order", order_id, order.customer_id)
        events = await engine.orders.timeline(order_id)
        shown = events if principal.staff else customer_timeline(events, order.customer_id)
        return [TimelineEvent.of(e) for e in shown]

    @strawberry.field(description="One order (staff read it whole, everyone else the "
                                  "customer's view).")
    async def order(self, info: Info, id: str) -> Order:
        principal = _caller(info)
        require_customer_or_admin(principal, "orders")
        order = await _engine(info).orders.get(id)
        ensure_owner(principal, "order", id, order.customer_id)
        return _order_view(info, order)


# --------------------------------------------------------------------------- mutations


@strawberry.type
class ShopMutation:
    @strawberry.mutation(description="Create a cart; a guest's (storefront key) comes "
                                     "with its cart token, shown this once.")
    async def create_cart(self, info: Info, channel: str | None = None,
                          currency: str | None = None, email: str = "") -> CreatedCart:
        principal = _caller(info)
        require_shopper_or_admin(principal, "orders")
        engine = _engine(info)
        data = checked(engine, CartIn, channel=channel, currency=currency, email=email)
        channel = cart_channel(principal, data.channel)
        token: str | None = None
        if principal.kind == "storefront":
            cart, token = await engine.carts.create_guest(channel=channel,
                                                          currency=data.currency,
                                                          email=data.email)
        else:
            cart = await engine.carts.create(
                channel=channel, currency=data.currency, email=data.email,
                customer_id=principal.customer_id if principal.kind == "customer" else None)
        return CreatedCart(cart=Cart.of(cart), cart_token=token)

    @strawberry.mutation(description="Add units of a SKU (merged with its line).")
    async def add_cart_line(self, info: Info, cart_id: str, sku: str,
                            quantity: int = 1) -> Cart:
        async def change(cart: CartStruct) -> CartStruct:
            data = checked(_engine(info), LineIn, sku=sku, quantity=quantity)
            return await _engine(info).carts.add_line(cart_id, data.sku, data.quantity,
                                                      cart=cart)

        return await _changed(info, cart_id, change)

    @strawberry.mutation(description="Set the quantity of a SKU's line.")
    async def set_cart_line(self, info: Info, cart_id: str, sku: str, quantity: int) -> Cart:
        async def change(cart: CartStruct) -> CartStruct:
            data = checked(_engine(info), QuantityIn, quantity=quantity)
            checked(_engine(info), LineIn, sku=sku)
            return await _engine(info).carts.set_line(cart_id, sku, data.quantity, cart=cart)

        return await _changed(info, cart_id, change)

    @strawberry.mutation(description="Remove a SKU's line.")
    async def remove_cart_line(self, info: Info, cart_id: str, sku: str) -> Cart:
        async def change(cart: CartStruct) -> CartStruct:
            checked(_engine(info), LineIn, sku=sku)
            return await _engine(info).carts.remove_line(cart_id, sku, cart=cart)

        return await _changed(info, cart_id, change)

    @strawberry.mutation(description="Set the shipping and billing address and e-mail.")
    async def set_cart_addresses(self, info: Info, cart_id: str,
                                 shipping: AddressInput | None = None,
                                 billing: AddressInput | None = None,
                                 email: str | None = None) -> Cart:
        async def change(cart: CartStruct) -> CartStruct:
            data = checked(_engine(info), AddressesIn, shipping=shipping, billing=billing,
                           email=email)
            return await _engine(info).carts.set_addresses(
                cart_id, shipping=data.shipping, billing=data.billing, email=data.email,
                cart=cart)

        return await _changed(info, cart_id, change)

    @strawberry.mutation(description="Choose the shipping method (one of the cart's "
                                     "shippingQuotes).")
    async def set_cart_shipping_method(self, info: Info, cart_id: str, method: str) -> Cart:
        async def change(cart: CartStruct) -> CartStruct:
            data = checked(_engine(info), ShippingMethodIn, method=method)
            return await _engine(info).carts.set_shipping_method(cart_id, data.method,
                                                                 cart=cart)

        return await _changed(info, cart_id, change)

    @strawberry.mutation(description="Apply a promotion code.")
    async def apply_cart_code(self, info: Info, cart_id: str, code: str) -> Cart:
        async def change(cart: CartStruct) -> CartStruct:
            data = checked(_engine(info), CodeIn, code=code)
            return await _engine(info).carts.apply_code(cart_id, data.code, cart=cart)

        return await _changed(info, cart_id, change)

    @strawberry.mutation(description="Remove a promotion code.")
    async def remove_cart_code(self, info: Info, cart_id: str, code: str) -> Cart:
        async def change(cart: CartStruct) -> CartStruct:
            checked(_engine(info), CodeIn, code=code)
            return await _engine(info).carts.remove_code(cart_id, code, cart=cart)

        return await _changed(info, cart_id, change)

    @strawberry.mutation(description="Place the cart as an order with its payment. Send "
                                     "an Idempotency-Key header to make retries safe.")
    async def checkout(self, info: Info, cart_id: str,
                       payment: PaymentInput | None = None) -> Order:
        principal = _caller(info)
        require_shopper_or_admin(principal, "orders")
        engine = _engine(info)
        request = _request(info)

        async def place(cart: CartStruct) -> OrderStruct:
            data = checked(engine, PlaceCartIn, payment=payment)
            if principal.kind == "customer" and cart.customer_id is None:
                cart = await engine.carts.adopt(cart_id, principal.customer_id or "")
            return await engine.carts.place(
                cart_id, payment=data.payment,
                client=client_facts(request, principal, data.client), actor=principal.actor,
                idempotency_key=idempotency_key(request), cart=cart)

        order = await engine.carts.change_as(cart_id, principal,
                                             request.headers.get(CART_TOKEN_HEADER), place)
        return _order_view(info, order)

    @strawberry.mutation(description="A stream token for this order's live status (a "
                                     "customer token for its own order, or staff).")
    async def order_stream_token(self, info: Info, order_id: str) -> StreamToken:
        principal = _caller(info)
        require_customer_or_admin(principal, "orders")
        engine = _engine(info)
        order = await engine.orders.get(order_id)
        ensure_owner(principal, "order", order_id, order.customer_id)
        return _stream_token(await engine.stream_tokens.mint(order))

    @strawberry.mutation(description="A stream token for the order this cart became, so a "
                                     "guest's page can follow it live.")
    async def cart_order_stream_token(self, info: Info, cart_id: str) -> StreamToken:
        cart = await _cart(info, cart_id)
        if cart.order_id is None:
            raise Conflict(f"cart {cart_id} has not been placed yet", cart_id=cart_id)
        engine = _engine(info)
        return _stream_token(await engine.stream_tokens.mint(
            await engine.orders.get(cart.order_id)))

    @strawberry.mutation(description="Place an order in one request: lines, addresses, "
                                     "shipping choice and payment. Send an Idempotency-Key "
                                     "header to make retries safe.")
    async def place_order(self, info: Info, channel: str, lines: list[LineInput],
                          email: str = "", currency: str | None = None,
                          customer_id: str | None = None,
                          shipping_address: AddressInput | None = None,
                          billing_address: AddressInput | None = None,
                          shipping_method: str | None = None,
                          codes: list[str] | None = None,
                          payment: PaymentInput | None = None,
                          metadata: strawberry.scalars.JSON | None = None) -> Order:
        principal = _caller(info)
        require_shopper_or_admin(principal, "orders")
        engine = _engine(info)
        data = checked(engine, PlaceOrder, channel=channel, lines=lines, email=email,
                       currency=currency, customer_id=customer_id,
                       shipping_address=shipping_address, billing_address=billing_address,
                       shipping_method=shipping_method, codes=codes, payment=payment,
                       metadata=metadata)
        data = order_for_caller(principal, data)
        request = _request(info)
        data = msgspec.structs.replace(
            data, client=client_facts(request, principal, data.client))
        order = await engine.orders.place(data, idempotency_key=idempotency_key(request),
                                          actor=principal.actor)
        return _order_view(info, order)

    @strawberry.mutation(description="Cancel an order (staff, or the customer who owns it).")
    async def cancel_order(self, info: Info, order_id: str, reason: str = "") -> Order:
        principal = _caller(info)
        require_customer_or_admin(principal, "orders")
        engine = _engine(info)
        data = checked(engine, ReasonIn, reason=reason)
        order = await engine.orders.get(order_id)
        ensure_owner(principal, "order", order_id, order.customer_id)
        return _order_view(info, await engine.orders.cancel(order_id, reason=data.reason,
                                                            actor=principal.actor))

    @strawberry.mutation(description="Capture authorized money (staff with 'payments').")
    async def capture_payment(self, info: Info, order_id: str, amount: int | None = None,
                              payment_id: str | None = None) -> Order:
        principal = _caller(info)
        require_admin(principal, "payments")
        engine = _engine(info)
        data = checked(engine, CaptureIn, amount=amount, payment_id=payment_id)
        return Order.of(await engine.payments.capture(
            order_id, amount=data.amount, payment_id=data.payment_id, actor=principal.actor))


@strawberry.type
class StaffMutation:
    """Holds and fulfilment (staff only): the same engine calls and scopes as REST."""

    @strawberry.mutation(description="Put an order on hold for review (staff, 'orders').")
    async def hold_order(self, info: Info, order_id: str, reason: str) -> Order:
        principal = _caller(info)
        require_admin(principal, "orders")
        data = checked(_engine(info), ReasonIn, reason=reason)
        if not data.reason:
            raise InvalidInput("a hold needs a reason", field="reason")
        return Order.of(await _engine(info).orders.hold(order_id, data.reason,
                                                        actor=principal.actor))

    @strawberry.mutation(description="Release a hold; the order continues (staff, "
                                     "'orders').")
    async def release_order(self, info: Info, order_id: str, note: str = "") -> Order:
        principal = _caller(info)
        require_admin(principal, "orders")
        data = checked(_engine(info), ReleaseIn, note=note)
        return Order.of(await _engine(info).orders.release(order_id, note=data.note,
                                                           actor=principal.actor))

    @strawberry.mutation(description="Create shipments for what is left to ship (staff, "
                                     "'fulfilment'): one per stock location.")
    async def create_shipment(self, info: Info, order_id: str,
                              location_id: str | None = None) -> Order:
        principal = _caller(info)
        require_admin(principal, "fulfilment")
        data = checked(_engine(info), ShipmentIn, location_id=location_id)
        order, _ = await _engine(info).fulfilment.create_shipment(
            order_id, lines=data.lines, location_id=data.location_id, actor=principal.actor)
        return Order.of(order)

    @strawberry.mutation(description="Mark a shipment as picked (staff, 'fulfilment').")
    async def pick_shipment(self, info: Info, order_id: str, shipment_id: str) -> Order:
        principal = _caller(info)
        require_admin(principal, "fulfilment")
        return Order.of(await _engine(info).fulfilment.pick(order_id, shipment_id,
                                                            actor=principal.actor))

    @strawberry.mutation(description="Pack, verifying every scanned SKU or barcode "
                                     "(staff, 'fulfilment').")
    async def pack_shipment(self, info: Info, order_id: str, shipment_id: str,
                            scans: list[str]) -> Order:
        principal = _caller(info)
        require_admin(principal, "fulfilment")
        data = checked(_engine(info), PackIn, scans=scans)
        return Order.of(await _engine(info).fulfilment.pack(order_id, shipment_id, data.scans,
                                                            actor=principal.actor))

    @strawberry.mutation(description="Ship: the carrier plugin makes the label and the "
                                     "tracking number (staff, 'fulfilment').")
    async def ship_shipment(self, info: Info, order_id: str, shipment_id: str,
                            tracking_number: str = "", carrier: str | None = None) -> Order:
        principal = _caller(info)
        require_admin(principal, "fulfilment")
        data = checked(_engine(info), ShipIn, tracking_number=tracking_number, carrier=carrier)
        return Order.of(await _engine(info).fulfilment.ship(
            order_id, shipment_id, tracking_number=data.tracking_number, carrier=data.carrier,
            actor=principal.actor))

    @strawberry.mutation(description="Mark a shipment as delivered (staff, 'fulfilment').")
    async def deliver_shipment(self, info: Info, order_id: str, shipment_id: str) -> Order:
        principal = _caller(info)
        require_admin(principal, "fulfilment")
        return Order.of(await _engine(info).fulfilment.deliver(order_id, shipment_id,
                                                               actor=principal.actor))

    @strawberry.mutation(description="Cancel a shipment that has not shipped (staff, "
                                     "'fulfilment').")
    async def cancel_shipment(self, info: Info, order_id: str, shipment_id: str) -> Order:
        principal = _caller(info)
        require_admin(principal, "fulfilment")
        return Order.of(await _engine(info).fulfilment.cancel_shipment(
            order_id, shipment_id, actor=principal.actor))


@strawberry.type
class PaymentMutation:
    """Refunds, voids and staff notes (staff only, with the REST routes' scopes)."""

    @strawberry.mutation(description="Refund a captured payment, in full or in part "
                                     "(staff, 'refunds').")
    async def refund_payment(self, info: Info, order_id: str, amount: int | None = None,
                             payment_id: str | None = None, reason: str = "") -> Order:
        principal = _caller(info)
        require_admin(principal, "refunds")
        data = checked(_engine(info), RefundIn, amount=amount, payment_id=payment_id,
                       reason=reason)
        return Order.of(await _engine(info).payments.refund(
            order_id, amount=data.amount, payment_id=data.payment_id, reason=data.reason,
            actor=principal.actor))

    @strawberry.mutation(description="Void an authorization that was not captured "
                                     "(staff, 'payments').")
    async def void_payment(self, info: Info, order_id: str,
                           payment_id: str | None = None) -> Order:
        principal = _caller(info)
        require_admin(principal, "payments")
        data = checked(_engine(info), VoidIn, payment_id=payment_id)
        return Order.of(await _engine(info).payments.void(order_id, payment_id=data.payment_id,
                                                          actor=principal.actor))

    @strawberry.mutation(description="Add a staff note to the timeline, never shown to "
                                     "customers (staff, 'orders').")
    async def add_order_note(self, info: Info, order_id: str, note: str) -> Order:
        principal = _caller(info)
        require_admin(principal, "orders")
        data = checked(_engine(info), NoteIn, note=note)
        return Order.of(await _engine(info).orders.add_note(order_id, data.note,
                                                            actor=principal.actor))


@strawberry.type
class ReturnMutation:
    """Returns: asked for by the customer who owns the order or by staff; the later steps
    by staff, with the REST routes' scopes."""

    @strawberry.mutation(description="Ask to return shipped units of the order.")
    async def request_return(self, info: Info, order_id: str, lines: list[ReturnLineInput],
                             reason: str = "") -> Order:
        principal = _caller(info)
        require_customer_or_admin(principal, "orders")
        engine = _engine(info)
        data = checked(engine, ReturnIn, lines=lines, reason=reason)
        order = await engine.orders.get(order_id)
        ensure_owner(principal, "order", order_id, order.customer_id)
        order, _ = await engine.returns.request(order_id, data.lines, reason=data.reason,
                                                actor=principal.actor)
        return _order_view(info, order)

    @strawberry.mutation(description="Approve a return (staff, 'orders').")
    async def approve_return(self, info: Info, order_id: str, return_id: str) -> Order:
        principal = _caller(info)
        require_admin(principal, "orders")
        return Order.of(await _engine(info).returns.approve(order_id, return_id,
                                                            actor=principal.actor))

    @strawberry.mutation(description="Reject a return (staff, 'orders').")
    async def reject_return(self, info: Info, order_id: str, return_id: str,
                            reason: str = "") -> Order:
        principal = _caller(info)
        require_admin(principal, "orders")
        data = checked(_engine(info), ReasonIn, reason=reason)
        return Order.of(await _engine(info).returns.reject(order_id, return_id,
                                                           reason=data.reason,
                                                           actor=principal.actor))

    @strawberry.mutation(description="Receive the returned units, restocking them unless "
                                     "told otherwise per line (staff, 'fulfilment').")
    async def receive_return(self, info: Info, order_id: str, return_id: str,
                             no_restock: list[str] | None = None) -> Order:
        principal = _caller(info)
        require_admin(principal, "fulfilment")
        restock = {line_id: False for line_id in no_restock or []} or None
        data = checked(_engine(info), ReceiveIn, restock=restock)
        return Order.of(await _engine(info).returns.receive(order_id, return_id,
                                                            restock=data.restock,
                                                            actor=principal.actor))

    @strawberry.mutation(description="Refund a received return (its refund amount unless "
                                     "amount is given; staff, 'refunds').")
    async def refund_return(self, info: Info, order_id: str, return_id: str,
                            amount: int | None = None) -> Order:
        principal = _caller(info)
        require_admin(principal, "refunds")
        data = checked(_engine(info), ReturnRefundIn, amount=amount)
        return Order.of(await _engine(info).returns.refund(order_id, return_id,
                                                           amount=data.amount,
                                                           actor=principal.actor))


@strawberry.type
class KeyMutation:
    """Keys and maintenance (staff), with the REST routes' rules: an admin key gets only
    scopes the calling key holds itself."""

    @strawberry.mutation(description="Create an admin or storefront key; the secret is in "
                                     "this answer only (staff, 'keys').")
    async def issue_key(self, info: Info, kind: str, name: str = "",
                        scopes: list[str] | None = None,
                        channel: str | None = None) -> IssuedKey:
        principal = _caller(info)
        require_admin(principal, "keys")
        engine = _engine(info)
        data = checked(engine, KeyIn, kind=kind, name=name, scopes=scopes, channel=channel)
        if data.kind == "storefront":
            if not data.channel:
                raise InvalidInput("a storefront key needs a channel", field="channel")
            await engine.channels.get(data.channel)
        issued = await engine.access.issue(data.kind, name=data.name, scopes=data.scopes,
                                           channel=data.channel, issuer=principal.scopes)
        return IssuedKey(key=ApiKey.of(issued.key), secret=issued.secret)

    @strawberry.mutation(description="Revoke a key at once, on every worker; only a key "
                                     "whose scopes the calling key holds all of (staff, "
                                     "'keys'). Answers the revoked key's id.")
    async def revoke_key(self, info: Info, key_id: str) -> str:
        principal = _caller(info)
        require_admin(principal, "keys")
        await _engine(info).access.revoke(key_id, issuer=principal.scopes)
        return key_id

    @strawberry.mutation(description="Deliver stranded events and retry failed plugin "
                                     "reactions now (staff, 'plugins').")
    async def run_maintenance(self, info: Info) -> strawberry.scalars.JSON:
        require_admin(_caller(info), "plugins")
        return cast(Any, await _engine(info).run_maintenance())


@strawberry.type
class CustomerMutation:
    """Customers: staff manage them; a customer token edits its own profile."""

    @strawberry.mutation(description="Create a customer (staff, 'customers').")
    async def create_customer(self, info: Info, email: str, name: str = "", phone: str = "",
                              tags: list[str] | None = None,
                              addresses: list[AddressInput] | None = None,
                              consents: strawberry.scalars.JSON | None = None) -> Customer:
        require_admin(_caller(info), "customers")
        data = checked(_engine(info), CustomerIn, email=email, name=name, phone=phone,
                       tags=tags, addresses=addresses, consents=consents)
        return Customer.of(await _engine(info).customers.create(
            email=data.email, name=data.name, phone=data.phone, tags=data.tags,
            addresses=data.addresses, consents=data.consents))

    @strawberry.mutation(description="Change a customer's profile: staff any, a customer "
                                     "token its own (not its tags).")
    async def update_customer(self, info: Info, id: str, name: str | None = None,
                              phone: str | None = None, tags: list[str] | None = None,
                              addresses: list[AddressInput] | None = None,
                              consents: strawberry.scalars.JSON | None = None) -> Customer:
        principal = _caller(info)
        require_customer_or_admin(principal, "customers")
        data = checked(_engine(info), CustomerPatch, name=name, phone=phone, tags=tags,
                       addresses=addresses, consents=consents)
        changes = {k: v for k, v in (("name", data.name), ("phone", data.phone),
                                     ("tags", data.tags), ("addresses", data.addresses),
                                     ("consents", data.consents)) if v is not None}
        if principal.kind == "customer" and "tags" in changes:
            raise InvalidInput("a customer cannot set their own tags; only staff can",
                               field="tags")
        return Customer.of(await _engine(info).customers.update(
            _own_customer(principal, id), **changes))

    @strawberry.mutation(description="Erase a customer's personal data (staff, "
                                     "'customers').")
    async def erase_customer(self, info: Info, id: str) -> Customer:
        principal = _caller(info)
        require_admin(principal, "customers")
        return Customer.of(await _engine(info).customers.erase(id, actor=principal.actor))

    @strawberry.mutation(description="Issue an access token for a customer (staff, "
                                     "'customers'); the secret is in this answer only.")
    async def issue_customer_token(self, info: Info, customer_id: str,
                                   name: str = "") -> IssuedKey:
        require_admin(_caller(info), "customers")
        data = checked(_engine(info), TokenIn, name=name)
        issued = await _engine(info).access.issue("customer", name=data.name,
                                                  customer_id=customer_id)
        return IssuedKey(key=ApiKey.of(issued.key), secret=issued.secret)


@strawberry.type
class InventoryMutation:
    """Stock and channels (staff), with the REST routes' scopes."""

    @strawberry.mutation(description="Create or replace a stock location (staff, "
                                     "'inventory').")
    async def put_location(self, info: Info, id: str, name: str, priority: int = 100,
                           active: bool = True) -> Location:
        require_admin(_caller(info), "inventory")
        data = checked(_engine(info), LocationStruct, id=id, name=name, priority=priority,
                       active=active)
        x = await _engine(info).inventory.upsert_location(data)
        return Location(id=x.id, name=x.name, priority=x.priority, active=x.active)

    @strawberry.mutation(description="Receive or adjust stock by a delta (staff, "
                                     "'inventory'); kind is 'receive' or 'adjust'.")
    async def adjust_inventory(self, info: Info, sku: str, location_id: str, delta: int,
                               kind: str = "adjust", reason: str = "") -> StockLevel:
        principal = _caller(info)
        require_admin(principal, "inventory")
        data = checked(_engine(info), AdjustIn, sku=sku, location_id=location_id, delta=delta,
                       kind=kind, reason=reason)
        return _level(await _engine(info).inventory.adjust(
            data.sku, data.location_id, data.delta, kind=data.kind, reason=data.reason,
            actor=principal.actor))

    @strawberry.mutation(description="Record a stock count (staff, 'inventory').")
    async def count_inventory(self, info: Info, sku: str, location_id: str, counted: int,
                              reason: str = "count") -> StockLevel:
        principal = _caller(info)
        require_admin(principal, "inventory")
        data = checked(_engine(info), CountIn, sku=sku, location_id=location_id,
                       counted=counted, reason=reason)
        return _level(await _engine(info).inventory.count(
            data.sku, data.location_id, data.counted, reason=data.reason,
            actor=principal.actor))

    @strawberry.mutation(description="Cut a stock level into slices (staff, 'inventory'): "
                                     "placements of a hot SKU stop waiting for each other.")
    async def set_inventory_slices(self, info: Info, sku: str, location_id: str,
                                   slices: int) -> StockLevel:
        require_admin(_caller(info), "inventory")
        data = checked(_engine(info), SlicesIn, sku=sku, location_id=location_id,
                       slices=slices)
        return _level(await _engine(info).inventory.set_slices(data.sku, data.location_id,
                                                              data.slices))

    @strawberry.mutation(description="Create or replace a sales channel (staff, "
                                     "'catalogue').")
    async def put_channel(self, info: Info, id: str, name: str, kind: str = "web",
                          currency: str = "EUR", active: bool = True,
                          currencies: list[str] | None = None) -> Channel:
        require_admin(_caller(info), "catalogue")
        data = checked(_engine(info), ChannelStruct, id=id, name=name, kind=kind,
                       currency=currency, active=active, currencies=currencies)
        return _channel(await _engine(info).channels.upsert(data))


@strawberry.type
class MoreMutation:
    """Payment authorisation, plugin transitions, product upserts and reaction retries."""

    @strawberry.mutation(description="Pay (again) for what the order's payments do not "
                                     "cover yet (the customer who owns it, or staff with "
                                     "'payments').")
    async def authorize_payment(self, info: Info, order_id: str,
                                payment: PaymentInput) -> Order:
        principal = _caller(info)
        require_customer_or_admin(principal, "payments")
        engine = _engine(info)
        data = checked(engine, AuthorizeIn, **_plain_input(payment))
        order = await engine.orders.get(order_id)
        ensure_owner(principal, "order", order_id, order.customer_id)
        return _order_view(info, await engine.payments.authorize(
            order_id, gateway=data.gateway, method=data.method, token=data.token,
            actor=principal.actor))

    @strawberry.mutation(description="Fire a plugin-defined order event, e.g. "
                                     "'age_verified' (staff, 'orders').")
    async def transition_order(self, info: Info, order_id: str, event: str,
                               data: strawberry.scalars.JSON | None = None) -> Order:
        principal = _caller(info)
        require_admin(principal, "orders")
        checked_ = checked(_engine(info), TransitionIn, event=event, data=data)
        return Order.of(await _engine(info).orders.transition(
            order_id, checked_.event, data=checked_.data, actor=principal.actor))

    @strawberry.mutation(description="Create or replace a product and its variants "
                                     "(staff, 'catalogue').")
    async def put_product(self, info: Info, id: str, name: str, description: str = "",
                          variants: list[VariantInput] | None = None) -> Product:
        require_admin(_caller(info), "catalogue")
        product = checked(_engine(info), ProductStruct, id=id, name=name,
                          description=description,
                          variants=[{**_plain_input(v), "product_id": id}
                                    for v in variants or []])
        return Product.of(await _engine(info).catalog.upsert_product(product))

    @strawberry.mutation(description="Retry a failed plugin reaction now: it is resolved, "
                                     "or carries the new error (staff, 'plugins').")
    async def retry_reaction(self, info: Info, reaction_id: str) -> strawberry.scalars.JSON:
        require_admin(_caller(info), "plugins")
        return cast(Any, msgspec.to_builtins(await _engine(info).reactions.retry(reaction_id)))


@strawberry.type
class AccountMutation:
    """Customer accounts, with the REST routes' callers: a storefront key acts for someone
    not signed in, a signed-in customer's token for that customer."""

    @strawberry.mutation(description="Create an account and sign in (storefront key).")
    async def register(self, info: Info, email: str, password: str,
                       name: str = "") -> Registered:
        principal = _caller(info)
        require_storefront(principal)
        data = checked(_engine(info), RegisterIn, email=email, password=password, name=name)
        customer, session = await _engine(info).accounts.register(
            email=data.email, password=data.password, name=data.name,
            channel=principal.channel, client_address=client_address(_request(info)))
        return Registered(customer=Customer.of(customer), session=SessionTokens.of(session))

    @strawberry.mutation(description="Sign in with e-mail and password (storefront key).")
    async def sign_in(self, info: Info, email: str, password: str) -> SessionTokens:
        principal = _caller(info)
        require_storefront(principal)
        data = checked(_engine(info), SignInIn, email=email, password=password)
        return SessionTokens.of(await _engine(info).accounts.sign_in(
            email=data.email, password=data.password, channel=principal.channel,
            client_address=client_address(_request(info))))

    @strawberry.mutation(description="A new token pair for a refresh token (storefront "
                                     "key); the refresh token is spent.")
    async def refresh_session(self, info: Info, refresh_token: str) -> SessionTokens:
        require_storefront(_caller(info))
        data = checked(_engine(info), RefreshIn, refresh_token=refresh_token)
        return SessionTokens.of(await _engine(info).accounts.refresh(data.refresh_token))

    @strawberry.mutation(description="End this session (a signed-in customer's token).")
    async def sign_out(self, info: Info) -> bool:
        principal = _caller(info)
        require_customer(principal)
        if not principal.session:
            raise Forbidden("this customer token was issued by staff, not by signing in; "
                            "staff revoke it")
        await _engine(info).accounts.sign_out(principal.key_id)
        return True

    @strawberry.mutation(description="End every session of the customer; answers how "
                                     "many ended.")
    async def sign_out_everywhere(self, info: Info) -> int:
        principal = _caller(info)
        require_customer(principal)
        return await _engine(info).accounts.sign_out_everywhere(principal.customer_id or "")

    @strawberry.mutation(description="E-mail a link to choose a new password (storefront "
                                     "key); the same answer whether or not the address "
                                     "has an account.")
    async def request_password_reset(self, info: Info, email: str) -> str:
        principal = _caller(info)
        require_storefront(principal)
        data = checked(_engine(info), PasswordResetIn, email=email)
        await _engine(info).accounts.request_password_reset(
            data.email, channel=principal.channel,
            client_address=client_address(_request(info)))
        return RESET_ACCEPTED

    @strawberry.mutation(description="Choose a new password with the e-mailed token "
                                     "(storefront key); every session ends.")
    async def reset_password(self, info: Info, token: str, password: str) -> bool:
        require_storefront(_caller(info))
        data = checked(_engine(info), NewPasswordIn, token=token, password=password)
        await _engine(info).accounts.reset_password(data.token, data.password)
        return True

    @strawberry.mutation(description="E-mail a link that verifies the address (a signed-in "
                                     "customer's token).")
    async def request_email_verification(self, info: Info) -> str:
        principal = _caller(info)
        require_customer(principal)
        sent = await _engine(info).accounts.request_verification(
            principal.customer_id or "", channel=principal.channel)
        return "a verification link is on its way" if sent \
            else "the address is verified already"

    @strawberry.mutation(description="Verify the address with the e-mailed token "
                                     "(storefront key).")
    async def confirm_email(self, info: Info, token: str) -> bool:
        require_storefront(_caller(info))
        data = checked(_engine(info), VerifyEmailIn, token=token)
        await _engine(info).accounts.verify_email(data.token)
        return True

    @strawberry.mutation(description="Attach the guest orders placed with the verified "
                                     "address to the account; answers their ids.")
    async def claim_orders(self, info: Info) -> list[str]:
        principal = _caller(info)
        require_customer(principal)
        claimed = await _engine(info).accounts.claim_orders(principal.customer_id or "",
                                                            actor=principal.actor)
        return list(claimed.order_ids)


@strawberry.type
class Mutation(ShopMutation, StaffMutation, PaymentMutation, ReturnMutation, KeyMutation,
               CustomerMutation, InventoryMutation, MoreMutation, AccountMutation,
               WebhookMutation):
    """Every mutation: the shop's and staff's."""


# --------------------------------------------------------------------------- subscriptions

#: how long one subscription to an order's events lasts at most, and how often it looks
#: (the SSE stream's figures: ``ordnung.api.routes.orders``)
STREAM_SECONDS = 300.0
POLL_SECONDS = 0.5


@strawberry.type
class Subscription:
    @strawberry.subscription(description="Follow an order live (graphql-transport-ws): "
                                         "each timeline event as it happens, in the "
                                         "customer's view for non-staff, after afterSeq. "
                                         "Ends when the order reaches a terminal state or "
                                         "after five minutes. Same callers as the SSE "
                                         "stream: a customer token (own orders) or staff.")
    async def order_events(self, info: Info, order_id: str,
                           after_seq: int = 0) -> AsyncGenerator[TimelineEvent, None]:
        connection = _connection(info)
        principal = _principal(connection)
        require_order_reader(principal, "orders")
        engine: Engine = connection.app.state.engine
        # a subscription takes no field extension: its one argument is checked here
        check_parameter("orderId", order_id, engine.config.limits)
        order = await engine.orders.get(order_id)
        if principal.kind == "stream":
            if principal.order_id != order_id:
                raise NotFound("order", order_id)
        else:
            ensure_owner(principal, "order", order_id, order.customer_id)
        terminal = {s for s, spec in engine.machines["order"].states.items() if spec.terminal}
        finished = order.status in terminal
        seen = after_seq
        deadline = time.monotonic() + STREAM_SECONDS
        while time.monotonic() < deadline:
            events = [e for e in await engine.orders.timeline(order_id) if e.seq > seen]
            for ev in events:
                seen = ev.seq
                view = ev if principal.staff else customer_event(ev, order.customer_id)
                if view is not None:
                    yield TimelineEvent.of(view)
            if finished or any(e.to_state in terminal and e.machine == "order"
                               for e in events):
                return
            await asyncio.sleep(POLL_SECONDS)


# --------------------------------------------------------------------------- errors


class OrdnungSchema(strawberry.Schema):
    """Engine, permission and validation errors become GraphQL errors whose
    ``extensions`` carry the problem ``type`` (the same URI as REST), its ``status`` in
    REST and its facts, from the one mapping in ``ordnung.api.problems.facts_of``.
    Anything else is a bug: logged with its traceback, answered as ``internal`` with no
    detail."""

    def process_errors(self, errors: list[GraphQLError],
                       execution_context: ExecutionContext | None = None) -> None:
        for error in errors:
            original = error.original_error
            facts = facts_of(original) if original is not None else None
            if facts is None and (original is None or error.path is None
                                  or isinstance(original, GraphQLError)):
                # a syntax or validation error of the query itself, or a variable that
                # does not fit its type (``"2"`` for an Int: graphql-core keeps the
                # scalar's own error as the original); no resolver ran
                error.extensions = {"type": "https://ordnung.dev/problems/graphql-validation",
                                    "status": 400, **(error.extensions or {})}
                continue
            if facts is None:
                assert original is not None
                log.error("unhandled error in a resolver", path=error.path,
                          exc_info=original)
                error.message = "an internal error occurred; it has been logged"
                error.extensions = {"type": "https://ordnung.dev/problems/internal",
                                    "status": 500, "title": TITLES["internal"]}
                continue
            error.message = facts.detail
            error.extensions = {"type": facts.type_uri, "title": TITLES.get(facts.kind,
                                                                              facts.kind),
                                "status": facts.status,
                                **msgspec.to_builtins(facts.extra)}


class CheckArguments(FieldExtension):
    """The text rules of REST's path and query parameters for every plain string argument
    of a root field (ids, SKUs, codes, cursors): no control character, a length bound
    (``check_parameter``). Without it an id with a NUL would reach PostgreSQL, which
    refuses it, where SQLite would look it up. Notes and reasons (which may span lines)
    and input objects go through ``check_input`` in the resolvers instead.

    A field extension on the root fields only (``build_schema`` adds it): a schema
    extension's ``resolve`` would wrap every nested field of every answer as well."""

    def __init__(self) -> None:
        #: python argument name -> the name the caller wrote (errors name the latter)
        self.names: dict[str, str] = {}

    def apply(self, field: StrawberryField) -> None:
        self.names = {a.python_name: a.graphql_name or to_camel_case(a.python_name)
                      for a in field.arguments}

    def check(self, info: Info, kwargs: dict[str, Any]) -> None:
        if not kwargs:
            return
        limits = _connection(info).app.state.engine.config.limits
        for name, value in kwargs.items():
            if name in NOTE_FIELDS:
                continue
            for text in value if isinstance(value, list) else [value]:
                if isinstance(text, str):
                    check_parameter(self.names.get(name, name), text, limits)

    def resolve(self, next_: Any, source: Any, info: Info, **kwargs: Any) -> Any:
        self.check(info, kwargs)
        return next_(source, info, **kwargs)

    async def resolve_async(self, next_: Any, source: Any, info: Info, **kwargs: Any) -> Any:
        self.check(info, kwargs)
        return await next_(source, info, **kwargs)


def _check_root_arguments(*roots: type) -> None:
    """Put ``CheckArguments`` on every field of the root types, once (not on
    subscriptions: strawberry's field extensions do not wrap async generators)."""
    for root in roots:
        for field in root.__strawberry_definition__.fields:  # type: ignore[attr-defined]
            if not any(isinstance(e, CheckArguments) for e in field.extensions):
                field.extensions.append(CheckArguments())


def introspection_allowed() -> bool:
    """``ORDNUNG_GRAPHQL_INTROSPECTION`` (default on): off hides the schema from
    introspection queries (the SDL is in the repository, ``schema.graphql``)."""
    raw = os.environ.get("ORDNUNG_GRAPHQL_INTROSPECTION", "1")
    return env_bool("ORDNUNG_GRAPHQL_INTROSPECTION", raw)


def _shared(extension: SchemaExtension) -> Any:
    """A factory that hands out the same stateless extension for every request."""
    return lambda: extension


def build_schema(*, introspection: bool | None = None,
                 max_depth: int = MAX_DEPTH) -> OrdnungSchema:
    """The schema with its limits; introspection from the setting unless given."""
    # The limiters hold no state of a request: one of each serves every request (through
    # a factory, as strawberry asks). They must stay the same objects, because their
    # validation rules are part of the validation cache's key (below): a fresh limiter
    # per request would miss the cache every time.
    limiters = (QueryDepthLimiter(max_depth=max_depth),
                MaxAliasesLimiter(max_alias_count=MAX_ALIASES),
                MaxTokensLimiter(max_token_count=MAX_TOKENS))
    extensions: list[Any] = [_shared(limiter) for limiter in limiters]
    _check_root_arguments(Query, Mutation)
    allowed = introspection_allowed() if introspection is None else introspection
    if not allowed:
        extensions.append(DisableIntrospection)
    # a storefront sends the same few documents over and over: parsing and validating
    # each happens once per document text (api/graphql/documents.py). The cache is
    # bounded; the limits above still apply, as the token limit is a parse option and
    # the others are validation rules, all fixed for this schema.
    documents = DocumentCache()
    extensions.append(lambda: KnownDocuments(documents))
    return OrdnungSchema(query=Query, mutation=Mutation, subscription=Subscription,
                         extensions=extensions)
