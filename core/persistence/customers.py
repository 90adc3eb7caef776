"""Customers as documents; the email column is kept for look-ups."""

from __future__ import annotations

from ordnung.core.domain.customers import Customer
from ordnung.core.errors import NotFound
from ordnung.core.persistence.codec import decode, encode
from ordnung.core.persistence.database import Database
from ordnung.core.persistence.tables import CustomerRow


class CustomerStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert(self, customer: Customer) -> None:
        await CustomerRow.insert(CustomerRow(id=customer.id, email=customer.email,
                                             erased=customer.erased, data=encode(customer),
                                             created_at=customer.created_at)).run()

    async def save(self, customer: Customer) -> None:
        await CustomerRow.update({CustomerRow.email: customer.email,
                                  CustomerRow.erased: customer.erased,
                                  CustomerRow.data: encode(customer)}).where(
            CustomerRow.id == customer.id).run()

    async def get(self, customer_id: str) -> Customer:
        rows = await CustomerRow.select(CustomerRow.data).where(
            CustomerRow.id == customer_id).run()
        if not rows:
            raise NotFound("customer", customer_id)
        return decode(rows[0]["data"], Customer)

    async def by_email(self, email: str) -> Customer | None:
        rows = await CustomerRow.select(CustomerRow.data).where(
            (CustomerRow.email == email) & (CustomerRow.erased == False)  # noqa: E712
        ).run()
        return decode(rows[0]["data"], Customer) if rows else None

    async def list(self, after: str | None = None, limit: int = 50) -> list[Customer]:
        query = CustomerRow.select(CustomerRow.data).order_by(CustomerRow.id).limit(limit)
        if after:
            query = query.where(CustomerRow.id > after)
        return [decode(r["data"], Customer) for r in await query.run()]
