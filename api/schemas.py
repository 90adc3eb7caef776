"""Request and page bodies of the REST API. Unknown fields are refused everywhere.

There is deliberately no way to send a price, a total, a tax or a status:
the engine computes those.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from ordnung.core.domain.access import ApiKey
from ordnung.core.domain.accounts import SessionTokens
from ordnung.core.domain.addresses import Address
from ordnung.core.domain.carts import Cart
from ordnung.core.domain.catalog import Product
from ordnung.core.domain.customers import Customer
from ordnung.core.domain.events import Event
from ordnung.core.domain.inventory import Movement
from ordnung.core.domain.orders import Order
from ordnung.core.domain.returns import ListedReturn
from ordnung.core.domain.shipments import ListedShipment
from ordnung.core.domain.views import CustomerOrder
from ordnung.core.requests import PaymentInput, ReturnLineInput

#: a string that must not be empty (a required field, or an optional one that, when
#: sent, names something: a channel, a currency, a payment)
NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]


class In(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Base of request bodies."""


# -- inventory -------------------------------------------------------------------------
class AdjustIn(In):
    sku: NonEmpty
    location_id: NonEmpty
    delta: int
    kind: Literal["receive", "adjust"] = "adjust"
    reason: str = ""


class CountIn(In):
    sku: NonEmpty
    location_id: NonEmpty
    counted: int
    reason: str = "count"


class SlicesIn(In):
    sku: NonEmpty
    location_id: NonEmpty
    slices: int


# -- customers ---------------------------------------------------------------------------
class CustomerIn(In):
    email: NonEmpty
    name: str = ""
    phone: str = ""
    tags: list[str] = []
    addresses: list[Address] = []
    consents: dict[str, bool] = {}


class CustomerPatch(In):
    name: str | None = None
    phone: str | None = None
    tags: list[str] | None = None
    addresses: list[Address] | None = None
    consents: dict[str, bool] | None = None


# -- carts ---------------------------------------------------------------------------------
class CartIn(In):
    channel: NonEmpty | None = None
    currency: NonEmpty | None = None
    email: str = ""


class LineIn(In):
    sku: NonEmpty
    quantity: int = 1


class QuantityIn(In):
    quantity: int


class AddressesIn(In):
    shipping: Address | None = None
    billing: Address | None = None
    email: str | None = None


class CodeIn(In):
    code: NonEmpty


class ShippingMethodIn(In):
    method: NonEmpty


class PlaceCartIn(In):
    payment: PaymentInput | None = None
    client: dict[str, str] = {}


# -- orders and payments ------------------------------------------------------------------
class ReasonIn(In):
    reason: str = ""


class ReleaseIn(In):
    note: str = ""


class TransitionIn(In):
    event: NonEmpty
    data: dict[str, Any] = {}


class NoteIn(In):
    note: NonEmpty


class AuthorizeIn(In):
    gateway: NonEmpty
    method: str = ""
    token: str = ""


class CaptureIn(In):
    amount: int | None = None
    payment_id: NonEmpty | None = None


class RefundIn(In):
    amount: int | None = None
    payment_id: NonEmpty | None = None
    reason: str = ""


class VoidIn(In):
    payment_id: NonEmpty | None = None


# -- fulfilment and returns ----------------------------------------------------------------
class ShipmentIn(In):
    lines: dict[str, int] | None = None
    location_id: NonEmpty | None = None


class PackIn(In):
    scans: list[str]


class ShipIn(In):
    tracking_number: str = ""
    carrier: NonEmpty | None = None


class ReturnIn(In):
    lines: list[ReturnLineInput]
    reason: str = ""


class ReceiveIn(In):
    restock: dict[str, bool] | None = None


class ReturnRefundIn(In):
    amount: int | None = None


# -- keys ------------------------------------------------------------------------------------
class KeyIn(In):
    kind: Literal["admin", "storefront"]
    name: str = ""
    scopes: list[str] = []
    channel: NonEmpty | None = None


class TokenIn(In):
    name: str = ""


# -- customer accounts ------------------------------------------------------------------------
class RegisterIn(In):
    email: NonEmpty
    password: NonEmpty
    name: str = ""


class SignInIn(In):
    email: NonEmpty
    password: NonEmpty


class RefreshIn(In):
    refresh_token: NonEmpty


class PasswordResetIn(In):
    email: NonEmpty


class NewPasswordIn(In):
    token: NonEmpty
    password: NonEmpty


class VerifyEmailIn(In):
    token: NonEmpty


# -- pages ---------------------------------------------------------------------------------
class OrderPage(msgspec.Struct, kw_only=True):
    items: list[Order]
    next: str | None = None


class ShipmentPage(msgspec.Struct, kw_only=True):
    items: list[ListedShipment]
    next: str | None = None


class ReturnPage(msgspec.Struct, kw_only=True):
    items: list[ListedReturn]
    next: str | None = None


class CustomerOrderPage(msgspec.Struct, kw_only=True):
    """A page of orders in the customer's view (every caller but staff)."""

    items: list[CustomerOrder]
    next: str | None = None


class ProductPage(msgspec.Struct, kw_only=True):
    items: list[Product]
    next: str | None = None


class CustomerPage(msgspec.Struct, kw_only=True):
    items: list[Customer]
    next: str | None = None


class MovementPage(msgspec.Struct, kw_only=True):
    items: list[Movement]
    next: str | None = None


class EventList(msgspec.Struct, kw_only=True):
    items: list[Event]


class KeyList(msgspec.Struct, kw_only=True):
    items: list[ApiKey]


class Registered(msgspec.Struct, kw_only=True):
    """A new account, signed in: its customer record and its first session's tokens."""

    customer: Customer
    session: SessionTokens


class Accepted(msgspec.Struct, kw_only=True):
    """A request taken: what follows arrives by e-mail, if at all."""

    status: str = "accepted"
    detail: NonEmpty


class SignedOut(msgspec.Struct, kw_only=True):
    sessions_ended: int


class CartView(msgspec.Struct, kw_only=True):
    cart: Cart
    payment_methods: list[str] = []


class StreamedEvent(msgspec.Struct, kw_only=True):
    """One server-sent event of an order's live status: ``event`` is the timeline event's
    kind, ``id`` its sequence number and ``data`` the whole ``Event`` as JSON."""

    id: NonEmpty
    event: NonEmpty
    data: NonEmpty
