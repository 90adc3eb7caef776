"""GraphQL output types: the engine's domain structs, seen through GraphQL.

Each type is built from the domain struct the REST API answers with (``Product``,
``Cart``, ``Order`` or the customer's view ``CustomerOrder``), so both adapters show
the same data. Money is an object of minor units, currency and a formatted string.
Staff-only facts of an order are ``null`` unless the caller is staff: the customer's
view is made by ``ordnung.core.domain.views.customer_order``, as in REST.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any, cast

import msgspec
import strawberry

from ordnung.core.domain.access import ApiKey as ApiKeyStruct
from ordnung.core.domain.accounts import SessionTokens as SessionTokensStruct
from ordnung.core.domain.addresses import Address as AddressStruct
from ordnung.core.domain.carts import Cart as CartStruct
from ordnung.core.domain.catalog import Product as ProductStruct
from ordnung.core.domain.customers import Customer as CustomerStruct
from ordnung.core.domain.events import Event as EventStruct
from ordnung.core.domain.money import Money as MoneyValue
from ordnung.core.domain.orders import Order as OrderStruct
from ordnung.core.domain.pricing import Totals as TotalsStruct
from ordnung.core.domain.returns import ListedReturn as ListedReturnStruct
from ordnung.core.domain.shipments import ListedShipment as ListedShipmentStruct
from ordnung.core.domain.views import CustomerOrder


@strawberry.type(description="An amount of money: minor units (cents), currency, and a "
                             "locale-free formatted form such as 'EUR 12.50'.")
class Money:
    amount: int
    currency: str
    formatted: str

    @classmethod
    def of(cls, amount: int, currency: str) -> Money:
        return cls(amount=amount, currency=currency,
                   formatted=MoneyValue(amount, currency).format())


@strawberry.type
class Price:
    currency: str
    amount: Money


@strawberry.type
class Variant:
    sku: str
    name: str
    prices: list[Price]
    active: bool
    allow_backorder: bool


@strawberry.type
class Product:
    id: str
    name: str
    description: str
    variants: list[Variant]

    @classmethod
    def of(cls, p: ProductStruct) -> Product:
        return cls(id=p.id, name=p.name, description=p.description, variants=[
            Variant(sku=v.sku, name=v.name, active=v.active, allow_backorder=v.allow_backorder,
                    prices=[Price(currency=c, amount=Money.of(a, c))
                            for c, a in sorted(v.prices.items())])
            for v in p.variants])


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class ProductEdge:
    cursor: str
    node: Product


@strawberry.type
class ProductConnection:
    edges: list[ProductEdge]
    page_info: PageInfo


@strawberry.type
class Address:
    name: str
    line1: str
    line2: str
    city: str
    postal_code: str
    region: str
    country: str
    email: str
    phone: str
    company: str
    vat_id: str

    @classmethod
    def of(cls, a: AddressStruct | None) -> Address | None:
        if a is None:
            return None
        return cls(name=a.name, line1=a.line1, line2=a.line2, city=a.city,
                   postal_code=a.postal_code, region=a.region, country=a.country,
                   email=a.email, phone=a.phone, company=a.company, vat_id=a.vat_id)


@strawberry.type
class Totals:
    subtotal: Money
    discounts: Money
    shipping: Money
    tax: Money
    total: Money
    paid: Money
    balance: Money

    @classmethod
    def of(cls, t: TotalsStruct, currency: str) -> Totals:
        return cls(subtotal=Money.of(t.subtotal, currency),
                   discounts=Money.of(t.discounts, currency),
                   shipping=Money.of(t.shipping, currency), tax=Money.of(t.tax, currency),
                   total=Money.of(t.total, currency), paid=Money.of(t.paid, currency),
                   balance=Money.of(t.balance, currency))


@strawberry.type
class CartLine:
    sku: str
    name: str
    quantity: int
    unit_price: Money
    line_total: Money


@strawberry.type
class ShippingQuote:
    method: str
    name: str
    price: Money
    #: the carrier plugin's promise, as in REST's quote and the order's shipping
    expected_delivery: date | None = None


@strawberry.type
class Cart:
    id: str
    channel: str
    currency: str
    email: str
    status: str
    codes: list[str]
    shipping_method: str | None
    shipping_address: Address | None
    billing_address: Address | None
    order_id: str | None
    lines: list[CartLine]
    totals: Totals | None
    shipping_quotes: list[ShippingQuote]

    @classmethod
    def of(cls, c: CartStruct) -> Cart:
        priced = c.priced
        cur = c.currency
        return cls(
            id=c.id, channel=c.channel, currency=cur, email=c.email, status=c.status,
            codes=list(c.codes), shipping_method=c.shipping_method,
            shipping_address=Address.of(c.shipping_address),
            billing_address=Address.of(c.billing_address), order_id=c.order_id,
            lines=[CartLine(sku=ln.sku, name=ln.name, quantity=ln.quantity,
                            unit_price=Money.of(ln.unit_price, cur),
                            line_total=Money.of(ln.line_total, cur))
                   for ln in (priced.lines if priced else [])],
            totals=Totals.of(priced.totals, cur) if priced else None,
            shipping_quotes=[ShippingQuote(method=m, name=q.name, price=Money.of(q.price, cur),
                                           expected_delivery=q.expected_delivery)
                             for m, q in (priced.quotes if priced else [])])


@strawberry.type(description="A new cart; cartToken (guest carts only) is shown this once: "
                             "send it as the X-Cart-Token header or the cartToken argument.")
class CreatedCart:
    cart: Cart
    cart_token: str | None


@strawberry.type
class OrderLine:
    id: str
    sku: str
    name: str
    quantity: int
    unit_price: Money
    line_total: Money
    tax: Money
    shipped: int
    cancelled: int


@strawberry.type
class Payment:
    id: str
    gateway: str
    method: str
    status: str
    amount: Money
    captured: Money
    refunded: Money


@strawberry.type
class ShipmentLine:
    line_id: str
    sku: str
    quantity: int


@strawberry.type
class Shipment:
    id: str
    status: str
    carrier: str
    tracking_number: str
    lines: list[ShipmentLine]


@strawberry.type
class ReturnLine:
    line_id: str
    sku: str
    quantity: int


@strawberry.type(description="A return of shipped units.")
class Return:
    id: str
    status: str
    reason: str
    refund_amount: Money
    lines: list[ReturnLine]


@strawberry.type(description="An order: staff read it whole; everyone else reads the "
                             "customer's view, in which the staff-only fields are null.")
class Order:
    id: str
    number: str
    channel: str
    customer_id: str | None
    email: str
    status: str
    currency: str
    codes: list[str]
    lines: list[OrderLine]
    payments: list[Payment]
    shipments: list[Shipment]
    returns: list[Return]
    totals: Totals
    shipping_address: Address | None
    created_at: datetime
    #: the chosen shipping method, its price and expected delivery (REST's ``shipping``)
    shipping: ShippingQuote | None = None
    #: staff only
    hold_reason: str | None = None
    risk_score: int | None = None
    cancel_reason: str | None = None
    metadata: strawberry.scalars.JSON | None = None

    @classmethod
    def of(cls, o: OrderStruct | CustomerOrder) -> Order:
        cur = o.currency
        whole = o if isinstance(o, OrderStruct) else None
        return cls(
            id=o.id, number=o.number, channel=o.channel, customer_id=o.customer_id,
            email=o.email, status=o.status, currency=cur, codes=list(o.codes),
            lines=[OrderLine(id=ln.id, sku=ln.sku, name=ln.name, quantity=ln.quantity,
                             unit_price=Money.of(ln.unit_price, cur),
                             line_total=Money.of(ln.line_total, cur), tax=Money.of(ln.tax, cur),
                             shipped=ln.shipped, cancelled=ln.cancelled) for ln in o.lines],
            payments=[Payment(id=p.id, gateway=p.gateway, method=p.method, status=p.status,
                              amount=Money.of(p.amount, cur), captured=Money.of(p.captured, cur),
                              refunded=Money.of(p.refunded, cur)) for p in o.payments],
            shipments=[Shipment(id=s.id, status=s.status, carrier=s.carrier,
                                tracking_number=s.tracking_number,
                                lines=[ShipmentLine(line_id=sl.line_id, sku=sl.sku,
                                                    quantity=sl.quantity) for sl in s.lines])
                       for s in o.shipments],
            returns=[Return(id=r.id, status=r.status, reason=r.reason,
                            refund_amount=Money.of(r.refund_amount, cur),
                            lines=[ReturnLine(line_id=rl.line_id, sku=rl.sku,
                                              quantity=rl.quantity) for rl in r.lines])
                     for r in o.returns],
            totals=Totals.of(o.totals, cur), shipping_address=Address.of(o.shipping_address),
            created_at=o.created_at,
            shipping=None if o.shipping is None else ShippingQuote(
                method=o.shipping.method, name=o.shipping.name,
                price=Money.of(o.shipping.price, cur),
                expected_delivery=o.shipping.expected_delivery),
            metadata=cast(Any, dict(o.metadata)),
            hold_reason=whole.hold_reason if whole else None,
            risk_score=whole.risk_score if whole else None,
            cancel_reason=whole.cancel_reason if whole else None)


@strawberry.type(description="One step of how a cart's price came about.")
class ExplanationStep:
    step: str
    source: str
    message: str
    amount: Money | None
    line_id: str | None


@strawberry.type(description="A way to pay that a gateway plugin offers for an order.")
class PaymentMethod:
    gateway: str
    method: str
    name: str
    grants_terms: bool


@strawberry.type(description="A short-lived token for one order's live status (the SSE "
                             "stream), to put in a page's EventSource URL.")
class StreamToken:
    token: str
    order_id: str
    expires_at: datetime
    url: str


@strawberry.type(description="A shipment in a list across orders, with its order.")
class ListedShipment:
    id: str
    status: str
    carrier: str
    tracking_number: str
    order_id: str
    order_number: str
    created_at: datetime
    lines: list[ShipmentLine]

    @classmethod
    def of(cls, s: ListedShipmentStruct) -> ListedShipment:
        return cls(id=s.id, status=s.status, carrier=s.carrier,
                   tracking_number=s.tracking_number, order_id=s.order_id,
                   order_number=s.order_number, created_at=s.created_at,
                   lines=[ShipmentLine(line_id=ln.line_id, sku=ln.sku, quantity=ln.quantity)
                          for ln in s.lines])


@strawberry.type(description="A return in a list across orders, with its order.")
class ListedReturn:
    id: str
    status: str
    reason: str
    order_id: str
    order_number: str
    created_at: datetime
    lines: list[ReturnLine]

    @classmethod
    def of(cls, r: ListedReturnStruct) -> ListedReturn:
        return cls(id=r.id, status=r.status, reason=r.reason, order_id=r.order_id,
                   order_number=r.order_number, created_at=r.created_at,
                   lines=[ReturnLine(line_id=ln.line_id, sku=ln.sku, quantity=ln.quantity)
                          for ln in r.lines])


@strawberry.type
class ShipmentEdge:
    cursor: str
    node: ListedShipment


@strawberry.type
class ShipmentConnection:
    edges: list[ShipmentEdge]
    page_info: PageInfo


@strawberry.type
class ReturnEdge:
    cursor: str
    node: ListedReturn


@strawberry.type
class ReturnConnection:
    edges: list[ReturnEdge]
    page_info: PageInfo


@strawberry.type(description="A key as listed to admins: never the secret.")
class ApiKey:
    id: str
    kind: str
    name: str
    scopes: list[str]
    channel: str | None
    customer_id: str | None
    created_at: datetime
    revoked_at: datetime | None
    expires_at: datetime | None

    @classmethod
    def of(cls, k: ApiKeyStruct) -> ApiKey:
        return cls(id=k.id, kind=k.kind, name=k.name, scopes=list(k.scopes),
                   channel=k.channel, customer_id=k.customer_id, created_at=k.created_at,
                   revoked_at=k.revoked_at, expires_at=k.expires_at)


@strawberry.type(description="A new key: secret is shown this once.")
class IssuedKey:
    key: ApiKey
    secret: str


@strawberry.type
class Customer:
    id: str
    email: str
    name: str
    phone: str
    tags: list[str]
    addresses: list[Address]
    consents: strawberry.scalars.JSON
    lifetime_spend: list[Money]
    order_count: int
    registered: bool
    email_verified: bool
    erased: bool
    created_at: datetime

    @classmethod
    def of(cls, c: CustomerStruct) -> Customer:
        return cls(id=c.id, email=c.email, name=c.name, phone=c.phone, tags=list(c.tags),
                   addresses=[a for a in (Address.of(x) for x in c.addresses) if a],
                   consents=cast(Any, dict(c.consents)),
                   lifetime_spend=[Money.of(v, k) for k, v in sorted(c.lifetime_spend.items())],
                   order_count=c.order_count, registered=c.registered,
                   email_verified=c.email_verified, erased=c.erased, created_at=c.created_at)


@strawberry.type
class CustomerEdge:
    cursor: str
    node: Customer


@strawberry.type
class CustomerConnection:
    edges: list[CustomerEdge]
    page_info: PageInfo


@strawberry.type(description="A stock location; lower priority is reserved from first.")
class Location:
    id: str
    name: str
    priority: int
    active: bool


@strawberry.type(description="Stock of a SKU at a location: available is on hand less "
                             "reserved.")
class StockLevel:
    sku: str
    location_id: str
    on_hand: int
    reserved: int
    available: int


@strawberry.type(description="One entry of the stock ledger.")
class Movement:
    id: str
    sku: str
    location_id: str
    kind: str
    on_hand_delta: int
    reserved_delta: int
    order_id: str | None
    reason: str
    actor: str
    at: datetime


@strawberry.type
class MovementEdge:
    cursor: str
    node: Movement


@strawberry.type
class MovementConnection:
    edges: list[MovementEdge]
    page_info: PageInfo


@strawberry.type(description="A sales channel with its currencies.")
class Channel:
    id: str
    name: str
    kind: str
    currency: str
    active: bool
    currencies: list[str]


@strawberry.type(description="A signed-in customer's tokens, shown this once: send "
                             "accessToken as 'Authorization: Bearer'; refreshToken buys a "
                             "new pair.")
class SessionTokens:
    customer_id: str
    session_id: str
    token_type: str
    access_token: str
    expires_in: int
    expires_at: datetime
    refresh_token: str
    refresh_expires_in: int
    refresh_expires_at: datetime

    @classmethod
    def of(cls, t: SessionTokensStruct) -> SessionTokens:
        return cls(customer_id=t.customer_id, session_id=t.session_id,
                   token_type=t.token_type, access_token=t.access_token,
                   expires_in=t.expires_in, expires_at=t.expires_at,
                   refresh_token=t.refresh_token, refresh_expires_in=t.refresh_expires_in,
                   refresh_expires_at=t.refresh_expires_at)


@strawberry.type(description="A new account, signed in.")
class Registered:
    customer: Customer
    session: SessionTokens


@strawberry.type
class Availability:
    sku: str
    available: int


@strawberry.type(description="One event of an order's timeline.")
class TimelineEvent:
    id: str
    seq: int
    kind: str
    machine: str | None
    from_state: str | None
    to_state: str | None
    transition: str | None
    actor: str
    at: datetime
    data: strawberry.scalars.JSON

    @classmethod
    def of(cls, e: EventStruct) -> TimelineEvent:
        return cls(id=e.id, seq=e.seq, kind=e.kind, machine=e.machine,
                   from_state=e.from_state, to_state=e.to_state, transition=e.transition,
                   actor=e.actor, at=e.at, data=cast(Any, msgspec.to_builtins(e.data)))


@strawberry.type
class OrderEdge:
    cursor: str
    node: Order


@strawberry.type
class OrderConnection:
    edges: list[OrderEdge]
    page_info: PageInfo
