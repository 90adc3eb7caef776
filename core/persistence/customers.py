"""Customers as documents; the email column is kept for look-ups."""

from __future__ import annotations

from ordnung.core.domain.customers import Customer
from ordnung.core.errors import NotFound
from ordnung.core.persistence.codec import decode, encode
from ordnung.core.persistence.database import Database
from ordnung.core.persistence.generations import ACCESS, raise_generation

_INSERT = ("INSERT INTO customers (id, email, erased, data, created_at) "
           "VALUES ({}, {}, {}, {}, {})")
_SAVE = "UPDATE customers SET email = {}, erased = {}, data = {} WHERE id = {}"
_GET = "SELECT data FROM customers WHERE id = {}"
_BY_EMAIL = "SELECT data FROM customers WHERE email = {} AND erased = {}"
_FIRST_PAGE = "SELECT data FROM customers ORDER BY id LIMIT {}"
_NEXT_PAGE = "SELECT data FROM customers WHERE id > {} ORDER BY id LIMIT {}"


class CustomerStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert(self, customer: Customer) -> None:
        await self.db.run(_INSERT, customer.id, customer.email, customer.erased,
                          encode(customer), customer.created_at)

    async def save(self, customer: Customer) -> None:
        """An erased customer's credentials stop working with the erasure: kept copies of
        them are stale."""
        async with self.db.transaction():
            await self.db.run(_SAVE, customer.email, customer.erased, encode(customer),
                              customer.id)
            if customer.erased:
                await raise_generation(self.db, ACCESS)

    async def get(self, customer_id: str) -> Customer:
        row = await self.db.fetch_one(_GET, customer_id)
        if row is None:
            raise NotFound("customer", customer_id)
        return decode(row["data"], Customer)

    async def by_email(self, email: str) -> Customer | None:
        row = await self.db.fetch_one(_BY_EMAIL, email, False)
        return decode(row["data"], Customer) if row else None

    async def list(self, after: str | None = None, limit: int = 50) -> list[Customer]:
        rows = await (self.db.run(_NEXT_PAGE, after, limit) if after
                      else self.db.run(_FIRST_PAGE, limit))
        return [decode(r["data"], Customer) for r in rows]
