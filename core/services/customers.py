"""Customers: registration, look-up, loyalty figures, data export and erasure."""

from __future__ import annotations

import builtins
from typing import Any

import msgspec

from ordnung.core.domain.addresses import Address
from ordnung.core.domain.common import new_id, utcnow
from ordnung.core.domain.customers import Customer
from ordnung.core.domain.events import Event
from ordnung.core.domain.views import customer_order
from ordnung.core.errors import Conflict, InvalidInput, NotFound
from ordnung.core.persistence.journal import event
from ordnung.core.runtime import Runtime

ERASED = "erased"


class CustomerService:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def create(self, *, email: str, name: str = "", phone: str = "",
                     tags: list[str] | None = None, addresses: list[Address] | None = None,
                     consents: dict[str, bool] | None = None,
                     registered: bool = True) -> Customer:
        email = email.strip().lower()
        if "@" not in email or len(email) > 320:
            raise InvalidInput("a valid email address is required", field="email")
        if await self.rt.customers.by_email(email):
            raise Conflict(f"a customer with email {email} exists", field="email")
        customer = Customer(id=new_id("cus"), email=email, name=name, phone=phone,
                            tags=list(tags or []), addresses=list(addresses or []),
                            consents=dict(consents or {}), registered=registered,
                            created_at=utcnow())
        await self.rt.customers.insert(customer)
        return customer

    async def get(self, customer_id: str) -> Customer:
        """The customer with current loyalty figures (order count, lifetime spend)."""
        customer = await self.rt.customers.get(customer_id)
        count, spend = await self.rt.orders.customer_stats(customer_id)
        customer.order_count = count
        customer.lifetime_spend = spend
        return customer

    async def active(self, customer_id: str) -> Customer:
        """The customer, unless erased: an erased customer places no orders and owns no
        new carts (``NotFound``, as if they had never existed). With loyalty figures."""
        customer = await self.get(customer_id)
        if customer.erased:
            raise NotFound("customer", customer_id)
        return customer

    async def by_email(self, email: str) -> Customer | None:
        return await self.rt.customers.by_email(email.strip().lower())

    async def list(self, after: str | None = None, limit: int = 50) -> list[Customer]:
        return await self.rt.customers.list(after, limit)

    async def update(self, customer_id: str, **changes: Any) -> Customer:
        allowed = {"name", "phone", "tags", "addresses", "consents"}
        unknown = set(changes) - allowed
        if unknown:
            raise InvalidInput(f"cannot change {', '.join(sorted(unknown))}",
                               field=sorted(unknown)[0])
        customer = await self.rt.customers.get(customer_id)
        customer = msgspec.structs.replace(customer, **changes)
        await self.rt.customers.save(customer)
        return await self.get(customer_id)

    async def export(self, customer_id: str, *, staff: bool = True) -> dict[str, Any]:
        """Everything we hold about a customer, as JSON-ready data (GDPR art. 15/20).
        Asked for by the customer (``staff=False``), orders come in the customer's view
        (``core/domain/views.py``), like everywhere else a customer reads them."""
        customer = await self.get(customer_id)
        orders = []
        for order_id in await self.rt.orders.ids_for_customer(customer_id, customer.email):
            order = await self.rt.orders.get(order_id)
            orders.append(msgspec.to_builtins(order if staff else customer_order(order)))
        carts = [msgspec.to_builtins(c) for c in await self.rt.carts.for_customer(customer_id)]
        plugins = {name: answer for name, answer in await self.rt.plugins.call(
            "ordnung_export_customer_data", customer=customer)}
        return {"customer": msgspec.to_builtins(customer), "orders": orders, "carts": carts,
                "plugins": plugins, "exported_at": utcnow().isoformat()}

    async def erase(self, customer_id: str, *, actor: str = "system") -> Customer:
        """Anonymise a customer and their orders; the financial record stays (GDPR art. 17)."""
        customer = await self.rt.customers.get(customer_id)
        if customer.erased:
            return customer
        await self.rt.plugins.call("ordnung_erase_customer_data", customer=customer)
        erased, events = await self.rt.transactionally(
            lambda: self._erase(customer, actor))
        await self.rt.deliver(events, None)
        return erased

    async def _erase(self, customer: Customer, actor: str
                     ) -> tuple[Customer, builtins.list[Event]]:
        """The erasure's writes, in its transaction (run again whole if the database
        aborts it for a concurrent one): every order and cart read afresh here."""
        customer_id = customer.id
        events: builtins.list[Event] = []
        for order_id in await self.rt.orders.ids_for_customer(customer_id, customer.email):
            order = await self.rt.orders.get(order_id, for_update=True)
            version, stored = order.version, self.rt.orders.columns(order)
            order.email = ""
            order.shipping_address = _anonymise(order.shipping_address)
            order.billing_address = _anonymise(order.billing_address)
            order.event_seq += 1
            ev = event("customer.erased", order_id=order.id, seq=order.event_seq,
                       actor=actor, entity_id=customer_id,
                       data={"note": "personal data anonymised; financial record kept"})
            events.append(ev)
            order.updated_at = utcnow()
            await self.rt.orders.save(order, version, stored=stored)
        for cart in await self.rt.carts.for_customer(customer_id):
            cart_version, cart_stored = cart.version, self.rt.carts.columns(cart)
            cart.email = ""
            cart.shipping_address = _anonymise(cart.shipping_address)
            cart.billing_address = _anonymise(cart.billing_address)
            cart.updated_at = utcnow()
            await self.rt.carts.save(cart, cart_version, stored=cart_stored)
        # in the same transaction: once the erasure is committed no token, session,
        # password or e-mailed link of the customer opens anything, on any worker
        await self.rt.accounts.revoke_everything(customer_id, reason="erased")
        erased = Customer(id=customer.id, email=f"{customer.id}@erased.invalid",
                          name="", phone="", tags=[], addresses=[], consents={},
                          registered=False, erased=True, created_at=customer.created_at)
        await self.rt.customers.save(erased)
        events.append(event("customer.erased", actor=actor, entity_id=customer_id))
        await self.rt.journal.append(events)
        return erased, events


def _anonymise(address: Address | None) -> Address | None:
    """Keep what the accounts need (country, region for tax); drop who and where exactly."""
    if address is None:
        return None
    return Address(name=ERASED, line1=ERASED, city=ERASED, country=address.country,
                   region=address.region, postal_code="")
