"""Carts (draft orders): every change re-prices; placing turns one into an order.

A caller that already holds the cart (the API reads it once, to check the caller may use
it, or takes the copy this worker kept: ``change_as``) passes it as ``cart=`` to the
changes and reads below, so a request reads the cart at most once; the save still checks
the version that read found, so a change made meanwhile by another request is a
``Conflict``, as it is without.
"""

from __future__ import annotations

import hmac
import secrets
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ordnung.core.domain.access import Principal
from ordnung.core.domain.addresses import Address
from ordnung.core.domain.carts import Cart, CartLine, PricedCart
from ordnung.core.domain.common import new_id, utcnow
from ordnung.core.domain.orders import Order
from ordnung.core.domain.pricing import ExplanationStep, ShippingQuote
from ordnung.core.errors import (
    Conflict,
    CurrencyMismatch,
    InvalidInput,
    NotForSale,
    NotFound,
    OutOfStock,
    PaymentDeclined,
    ValidationFailed,
)
from ordnung.core.persistence.carts import StaleCopy
from ordnung.core.pricing import Buyer, PricingPipeline
from ordnung.core.requests import PaymentInput, PlaceOrder
from ordnung.core.runtime import Runtime, bound
from ordnung.core.services.access import token_hash
from ordnung.core.services.channels import ChannelService
from ordnung.core.services.customers import CustomerService
from ordnung.core.services.orders import OrderService

#: the prefix of a guest cart's token
CART_TOKEN_PREFIX = "crt_"

#: what a change or a placement refuses before it writes, and a copy behind the stored
#: cart could have caused: decided again on the cart as stored (a ``Conflict`` is a
#: change made during the request: a copy behind it raises ``StaleCopy``)
_RECHECKED = (CurrencyMismatch, InvalidInput, NotForSale, NotFound, OutOfStock,
              ValidationFailed)
T = TypeVar("T")


class CartService:
    def __init__(self, rt: Runtime, pipeline: PricingPipeline, channels: ChannelService,
                 customers: CustomerService, orders: OrderService) -> None:
        self.rt = rt
        self.pipeline = pipeline
        self.channels = channels
        self.customers = customers
        self.orders = orders

    async def create(self, *, channel: str, currency: str | None = None,
                     customer_id: str | None = None, email: str = "") -> Cart:
        """A cart of a customer, or one staff work on. A guest's cart: ``create_guest``."""
        cart, _ = await self._create(channel, currency, customer_id, email, guest=False)
        return cart

    async def create_guest(self, *, channel: str, currency: str | None = None,
                           email: str = "") -> tuple[Cart, str]:
        """A guest's cart and its secret token, returned this once and stored hashed:
        whoever holds the token holds the cart (see ``for_caller``)."""
        cart, token = await self._create(channel, currency, None, email, guest=True)
        assert token is not None
        return cart, token

    async def _create(self, channel: str, currency: str | None, customer_id: str | None,
                      email: str, *, guest: bool) -> tuple[Cart, str | None]:
        ch, currency = await self.channels.currency_for(channel, currency)
        if customer_id:
            await self.customers.active(customer_id)
        now = utcnow()
        cart = Cart(id=new_id("cart"), channel=ch.id, customer_id=customer_id,
                    email=email.strip().lower(), currency=currency,
                    created_at=now, updated_at=now)
        cart.priced = await self._price(cart)
        token = f"{CART_TOKEN_PREFIX}{secrets.token_urlsafe(24)}" if guest else None
        await self.rt.carts.insert(cart, token_hash(token) if token else None)
        return cart, token

    async def get(self, cart_id: str) -> Cart:
        return await self.rt.carts.get(cart_id)

    async def _loaded(self, cart_id: str, cart: Cart | None) -> Cart:
        """``cart`` if the caller read it already, else the cart as stored."""
        if cart is None:
            return await self.rt.carts.get(cart_id)
        if cart.id != cart_id:
            raise ValueError(f"cart {cart.id} passed for cart {cart_id}")
        return cart

    async def for_caller(self, cart_id: str, caller: Principal,
                         cart_token: str | None = None) -> Cart:
        """The cart if ``caller`` may use it, else ``NotFound`` exactly as for a cart that
        does not exist (a caller learns nothing about carts that are not theirs).

        Staff (admin keys; the API checks their scope) may use every cart. A customer
        may use their own carts, and a guest cart whose token they hold. A storefront
        key may use a guest cart of its own channel whose token it sends."""
        cart, stored_hash = await self.rt.carts.get_with_token(cart_id)
        if not self._may_use(cart, stored_hash, caller, cart_token):
            raise NotFound("cart", cart_id)
        return cart

    @staticmethod
    def _may_use(cart: Cart, stored_hash: str | None, caller: Principal,
                 cart_token: str | None) -> bool:
        if caller.kind == "admin":
            return True
        holds_token = bool(stored_hash and cart_token and hmac.compare_digest(
            stored_hash, token_hash(cart_token)))
        if caller.kind == "customer":
            if cart.customer_id is not None and cart.customer_id == caller.customer_id:
                return True
            return cart.customer_id is None and holds_token
        return (caller.kind == "storefront" and cart.channel == caller.channel
                and cart.customer_id is None and holds_token)

    async def change_as(self, cart_id: str, caller: Principal, cart_token: str | None,
                        change: Callable[[Cart], Awaitable[T]]) -> T:
        """Run ``change`` (one of the changes below, or ``place``, given the cart as
        ``cart=``) on the cart if ``caller`` may use it (``for_caller``), else
        ``NotFound``.

        It first runs on the copy this worker kept of the cart (``...kept_carts``), if
        the copy lets the caller in: then the change costs no read, and its write
        matches nothing unless the copy is what is stored. Whatever the copy leads to
        short of a write (a refusal, or a write that matched nothing) counts for
        nothing: the change runs again on the cart as stored, as it would without a
        copy. A declined payment is not such a refusal: the order was placed."""
        current: tuple[Cart, str | None] | None = None
        with self.rt.carts.lending(cart_id) as lent:
            if lent is not None and self._may_use(*lent, caller, cart_token):
                try:
                    return await change(lent[0])
                except StaleCopy as stale:
                    current = stale.current
                except _RECHECKED:
                    pass
        if current is None:
            cart = await self.for_caller(cart_id, caller, cart_token)
        elif self._may_use(*current, caller, cart_token):
            cart = current[0]
        else:
            raise NotFound("cart", cart_id)
        return await change(cart)

    async def adopt(self, cart_id: str, customer_id: str) -> Cart:
        """A signed-in customer takes over a guest cart they hold the token of: the cart
        (and the order it becomes) is theirs, and the guest token stops opening it."""
        cart = await self.set_contact(cart_id, customer_id=customer_id)
        await self.rt.carts.clear_token(cart_id)
        return cart

    async def _price(self, cart: Cart) -> PricedCart:
        customer = await self.customers.get(cart.customer_id) if cart.customer_id else None
        return await self.pipeline.price(cart, Buyer(
            currency=cart.currency, channel=cart.channel, customer=customer, email=cart.email,
            now=utcnow()), strict=False)

    async def _change(self, cart_id: str, mutate: Callable[[Cart], Awaitable[None] | None],
                      loaded: Cart | None = None) -> Cart:
        """Load (unless ``loaded``), change, re-price, save: a failing price leaves the
        stored cart as it was."""
        with bound(cart_id=cart_id):
            cart = await self._loaded(cart_id, loaded)
            if not cart.is_open:
                if self.rt.carts.is_lent(cart):  # the copy may be behind a reopening
                    raise StaleCopy(cart_id, None)
                raise Conflict(f"cart {cart_id} is {cart.status}; it can no longer change",
                               cart_id=cart_id, order_id=cart.order_id)
            version, stored = cart.version, self.rt.carts.columns(cart)
            result = mutate(cart)
            if result is not None:
                await result
            cart.priced = await self._price(cart)
            cart.updated_at = utcnow()
            await self.rt.carts.save(cart, version, stored=stored)
            return cart

    async def set_line(self, cart_id: str, sku: str, quantity: int, *,
                       cart: Cart | None = None) -> Cart:
        """Set the quantity of a SKU (0 removes it). A new SKU is checked by the pricing
        that follows (an unknown one is ``NotFound`` there), so the catalogue is read
        once; only on a full cart is it asked first, so that an unknown SKU stays a 404."""
        most = self.rt.limits.max_quantity_per_line
        if quantity < 0 or quantity > most:
            raise InvalidInput(f"quantity must be between 0 and {most}", field="quantity")

        async def mutate(cart: Cart) -> None:
            if quantity and sku not in {ln.sku for ln in cart.lines}:
                most_lines = self.rt.limits.max_lines_per_cart
                if len(cart.lines) >= most_lines:
                    await self.rt.catalog.variant(sku)
                    raise InvalidInput(f"a cart holds at most {most_lines} lines",
                                       field="lines")
            lines = [ln for ln in cart.lines if ln.sku != sku]
            if quantity:
                position = next((i for i, ln in enumerate(cart.lines) if ln.sku == sku),
                                len(lines))
                lines.insert(position, CartLine(sku=sku, quantity=quantity))
            cart.lines = lines

        return await self._change(cart_id, mutate, cart)

    async def add_line(self, cart_id: str, sku: str, quantity: int = 1, *,
                       cart: Cart | None = None) -> Cart:
        if quantity <= 0:
            raise InvalidInput("quantity must be positive", field="quantity")
        cart = await self._loaded(cart_id, cart)
        current = next((ln.quantity for ln in cart.lines if ln.sku == sku), 0)
        return await self.set_line(cart_id, sku, current + quantity, cart=cart)

    async def remove_line(self, cart_id: str, sku: str, *, cart: Cart | None = None) -> Cart:
        cart = await self._loaded(cart_id, cart)
        if sku not in {ln.sku for ln in cart.lines}:
            raise NotFound("cart line", sku)
        return await self.set_line(cart_id, sku, 0, cart=cart)

    async def set_addresses(self, cart_id: str, *, shipping: Address | None = None,
                            billing: Address | None = None, email: str | None = None,
                            cart: Cart | None = None) -> Cart:
        """Set the addresses and, with ``email``, the contact e-mail: one change, priced
        and saved once."""
        def mutate(cart: Cart) -> None:
            if email is not None:
                cart.email = email.strip().lower()
            if shipping is not None:
                cart.shipping_address = shipping
            if billing is not None:
                cart.billing_address = billing

        return await self._change(cart_id, mutate, cart)

    async def set_contact(self, cart_id: str, *, email: str | None = None,
                          customer_id: str | None = None) -> Cart:
        async def mutate(cart: Cart) -> None:
            if email is not None:
                cart.email = email.strip().lower()
            if customer_id is not None:
                await self.customers.active(customer_id)
                cart.customer_id = customer_id

        return await self._change(cart_id, mutate)

    async def apply_code(self, cart_id: str, code: str, *, cart: Cart | None = None) -> Cart:
        code = code.strip()
        if not code:
            raise InvalidInput("empty code", field="code")

        def mutate(cart: Cart) -> None:
            if code not in cart.codes:
                most = self.rt.limits.max_codes_per_cart
                if len(cart.codes) >= most:
                    raise InvalidInput(f"a cart takes at most {most} codes", field="codes")
                cart.codes = [*cart.codes, code]

        return await self._change(cart_id, mutate, cart)

    async def remove_code(self, cart_id: str, code: str, *, cart: Cart | None = None) -> Cart:
        def mutate(cart: Cart) -> None:
            cart.codes = [c for c in cart.codes if c != code]

        return await self._change(cart_id, mutate, cart)

    async def set_shipping_method(self, cart_id: str, method: str, *,
                                  cart: Cart | None = None) -> Cart:
        cart = await self._loaded(cart_id, cart)
        available = [m for m, _ in (cart.priced.quotes if cart.priced else [])]
        if method not in available:
            raise InvalidInput(f"shipping method {method!r} is not available "
                               f"(available: {', '.join(available) or 'none'})",
                               field="shipping_method")

        def mutate(cart: Cart) -> None:
            cart.shipping_method = method

        return await self._change(cart_id, mutate, cart)

    async def quotes(self, cart_id: str, *, cart: Cart | None = None
                     ) -> list[tuple[str, ShippingQuote]]:
        cart = await self._loaded(cart_id, cart)
        return list(cart.priced.quotes) if cart.priced else []

    async def explain(self, cart_id: str, *, cart: Cart | None = None
                      ) -> list[ExplanationStep]:
        cart = await self._loaded(cart_id, cart)
        return list(cart.priced.explanation) if cart.priced else []

    async def place(self, cart_id: str, *, payment: PaymentInput | None = None,
                    client: dict[str, str] | None = None, idempotency_key: str | None = None,
                    actor: str = "system", cart: Cart | None = None) -> Order:
        """Place the cart as an order. Placing a placed cart again returns its order; if the
        payment is declined the order is cancelled and the cart reopens for another try.

        ``cart``: the cart as the caller has just read it (a route checking who holds
        it), so that it is not read again; its version guards the placement's mark, so a
        cart changed or placed since it was read is refused, not placed as read.

        A copy the worker kept (``change_as``) is as good as a read at the start of the
        request, if it was current then: a cart changed after that is refused as above.
        One that was behind already (changed on another worker) places nothing and says
        so with ``StaleCopy``, and the cart as stored is placed instead."""
        cart = await self._loaded(cart_id, cart)
        lent = self.rt.carts.is_lent(cart)
        if not cart.is_open and cart.order_id:
            if lent:  # the copy may be behind a reopening
                raise StaleCopy(cart_id, None)
            return await self.rt.orders.get(cart.order_id)
        started = utcnow()
        request = PlaceOrder(
            channel=cart.channel, lines=list(cart.lines), currency=cart.currency,
            customer_id=cart.customer_id, email=cart.email,
            shipping_address=cart.shipping_address, billing_address=cart.billing_address,
            shipping_method=cart.shipping_method, codes=list(cart.codes), payment=payment,
            client=dict(client or {}))
        try:
            return await self.orders.place(request, idempotency_key=idempotency_key,
                                           actor=actor, cart_id=cart_id, cart=cart)
        except PaymentDeclined:
            # the order was cancelled and its stock released: let the customer pay again
            cart = await self.rt.carts.get(cart_id)
            version, stored = cart.version, self.rt.carts.columns(cart)
            cart.reopen(utcnow())
            await self.rt.carts.save(cart, version, stored=stored)
            raise
        except Conflict:
            if lent and (await self.rt.carts.get(cart_id)).updated_at < started:
                raise StaleCopy(cart_id, None) from None  # behind before the request began
            raise
