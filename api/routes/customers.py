"""Customers: admin management, a customer's own profile, data export and erasure."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response
from litestar.params import FromPath, FromQuery, JSONBody

from ordnung.api.auth import admin, customer_or_admin
from ordnung.api.problems import problems
from ordnung.api.routes.common import (
    LOCATION,
    caller,
    check_cursor,
    check_limit,
    created,
    engine_of,
)
from ordnung.api.routes.handlers import delete, get, patch, post
from ordnung.api.schemas import CustomerIn, CustomerPage, CustomerPatch, TokenIn
from ordnung.core.domain.access import IssuedKey
from ordnung.core.domain.customers import Customer
from ordnung.core.errors import InvalidInput, NotFound


def _own(request: Request[Any, Any, Any], customer_id: str) -> str:
    principal = caller(request)
    if customer_id == "me" and principal.kind == "customer" and principal.customer_id:
        return principal.customer_id
    if principal.kind == "customer" and customer_id != principal.customer_id:
        raise NotFound("customer", customer_id)
    return customer_id


class CustomerController(Controller):
    path = "/customers"
    tags = ["customers"]

    @get("/", guards=[admin("customers")])
    async def list_customers(self, request: Request[Any, Any, Any],
                             after: FromQuery[str | None] = None,
                             limit: FromQuery[int] = 50) -> CustomerPage:
        """Customers, a page at a time."""
        items = await engine_of(request).customers.list(check_cursor(after, "cus"),
                                                        check_limit(limit))
        return CustomerPage(items=items, next=items[-1].id if len(items) == limit else None)

    @post("/", guards=[admin("customers")], status_code=201, response_headers=LOCATION)
    async def create(self, request: Request[Any, Any, Any], data: JSONBody[CustomerIn]
                     ) -> Response[Customer]:
        """Create a customer record (staff); customers register themselves via /accounts."""
        customer = await engine_of(request).customers.create(
            email=data.email, name=data.name, phone=data.phone, tags=data.tags,
            addresses=data.addresses, consents=data.consents)
        return created(customer, f"/customers/{customer.id}")

    @get("/{customer_id:str}", guards=[customer_or_admin("customers")],
         responses=problems(404))
    async def get_customer(self, request: Request[Any, Any, Any], customer_id: FromPath[str]
                           ) -> Customer:
        """One customer; a customer token reads its own record only."""
        return await engine_of(request).customers.get(_own(request, customer_id))

    @patch("/{customer_id:str}", guards=[customer_or_admin("customers")],
           responses=problems(404))
    async def update(self, request: Request[Any, Any, Any], customer_id: FromPath[str],
                     data: JSONBody[CustomerPatch]) -> Customer:
        """Change a customer's name, phone, addresses or consents; tags are staff's to set."""
        changes = {k: v for k, v in (("name", data.name), ("phone", data.phone),
                                     ("tags", data.tags), ("addresses", data.addresses),
                                     ("consents", data.consents)) if v is not None}
        if caller(request).kind == "customer" and "tags" in changes:
            # tiers and tags are the shop's to give: refused, never silently dropped
            raise InvalidInput("a customer cannot set their own tags; only staff can",
                               field="tags")
        return await engine_of(request).customers.update(_own(request, customer_id),
                                                         **changes)

    @get("/{customer_id:str}/export", guards=[customer_or_admin("customers")],
         responses=problems(404))
    async def export(self, request: Request[Any, Any, Any], customer_id: FromPath[str]
                     ) -> dict[str, Any]:
        """Everything held about the customer, as JSON (GDPR art. 15/20)."""
        return await engine_of(request).customers.export(_own(request, customer_id),
                                                         staff=caller(request).staff)

    @delete("/{customer_id:str}", guards=[admin("customers")], status_code=200,
            responses=problems(404))
    async def erase(self, request: Request[Any, Any, Any], customer_id: FromPath[str]) -> Customer:
        """Erase personal data; orders stay for the accounts, anonymised."""
        return await engine_of(request).customers.erase(customer_id,
                                                        actor=caller(request).actor)

    @post("/{customer_id:str}/tokens", guards=[admin("customers")], status_code=201,
          responses=problems(404), response_headers=LOCATION)
    async def issue_token(self, request: Request[Any, Any, Any], customer_id: FromPath[str],
                          data: JSONBody[TokenIn]) -> Response[IssuedKey]:
        """A customer token: that customer's carts and orders, nothing else (revoked like
        any key, at its ``Location``)."""
        issued = await engine_of(request).access.issue("customer", name=data.name,
                                                       customer_id=customer_id)
        return created(issued, f"/admin/keys/{issued.key.id}")
