"""Orders: the aggregate document plus the columns we filter and constrain on."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ordnung.core.domain.orders import Order
from ordnung.core.errors import Conflict, NotFound
from ordnung.core.persistence.codec import decode, encode
from ordnung.core.persistence.database import Database
from ordnung.core.persistence.tables import OrderRow


def _money_columns(order: Order) -> dict[str, int]:
    return {
        "total": order.totals.total,
        "authorized": sum(p.authorized for p in order.payments),
        "captured": sum(p.captured for p in order.payments),
        "refunded": sum(p.refunded for p in order.payments),
    }


def authorizing(order: Order) -> bool:
    """An operation is in flight on a payment the gateway has not answered yet
    (``pending``: its authorization, or the void of one)."""
    return any(p.in_flight and p.status == "pending" for p in order.payments)


_INSERT_COLUMNS = ("id", "number", "channel", "customer_id", "email", "status", "currency",
                   "priority", "data", "version", "created_at", "updated_at", "total",
                   "authorized", "captured", "refunded")


class OrderStore:
    """``authorizing_since`` is stamped on the database's clock (as every age decision
    is: servers' clocks drift apart) when an order starts having an operation in flight
    on an unanswered payment, and cleared when it has none."""

    def __init__(self, db: Database) -> None:
        self.db = db
        now = ("now()" if db.is_postgres
               else "strftime('%Y-%m-%d %H:%M:%f+00:00', 'now')")
        self._stamp = f"CASE WHEN {{}} THEN {now} ELSE NULL END"
        self._keep = f"CASE WHEN {{}} THEN COALESCE(authorizing_since, {now}) ELSE NULL END"
        self._insert = (f"INSERT INTO orders ({', '.join(_INSERT_COLUMNS)}, authorizing_since) "
                        f"VALUES ({', '.join('{}' for _ in _INSERT_COLUMNS)}, {self._stamp})")

    async def insert(self, order: Order) -> None:
        money = _money_columns(order)
        await self.db.run(
            self._insert, order.id, order.number, order.channel, order.customer_id,
            order.email, order.status, order.currency, order.priority, encode(order),
            order.version, order.created_at, order.updated_at, money["total"],
            money["authorized"], money["captured"], money["refunded"], authorizing(order))

    async def save(self, order: Order, expected_version: int) -> None:
        """Write the new state; refuses if someone else saved since we read (version check)."""
        order.version = expected_version + 1
        money = _money_columns(order)
        rows = await self.db.run(
            "UPDATE orders SET status = {}, priority = {}, email = {}, customer_id = {}, "
            "total = {}, authorized = {}, captured = {}, refunded = {}, data = {}, "
            f"version = {{}}, updated_at = {{}}, authorizing_since = {self._keep} "
            "WHERE id = {} AND version = {} RETURNING id",
            order.status, order.priority, order.email, order.customer_id, money["total"],
            money["authorized"], money["captured"], money["refunded"], encode(order),
            order.version, order.updated_at, authorizing(order), order.id,
            expected_version)
        if not rows:
            raise Conflict(f"order {order.id} was changed concurrently; retry",
                           order_id=order.id)

    async def get(self, order_id: str, *, for_update: bool = False) -> Order:
        lock = " FOR UPDATE" if for_update and self.db.is_postgres else ""
        rows = await self.db.run("SELECT data FROM orders WHERE id = {}" + lock, order_id)
        if not rows:
            raise NotFound("order", order_id)
        return decode(rows[0]["data"], Order)

    async def by_number(self, number: str) -> Order:
        rows = await OrderRow.select(OrderRow.data).where(OrderRow.number == number).run()
        if not rows:
            raise NotFound("order", number)
        return decode(rows[0]["data"], Order)

    async def page(self, *, customer_id: str | None = None, status: Sequence[str] | None = None,
                   channel: str | None = None, after: str | None = None,
                   limit: int = 50) -> list[Order]:
        """Newest first; ``after`` is the id of the last order of the previous page."""
        query = OrderRow.select(OrderRow.data).order_by(OrderRow.id, ascending=False).limit(limit)
        if customer_id is not None:
            query = query.where(OrderRow.customer_id == customer_id)
        if status:
            query = query.where(OrderRow.status.is_in(list(status)))
        if channel is not None:
            query = query.where(OrderRow.channel == channel)
        if after is not None:
            query = query.where(OrderRow.id < after)
        return [decode(r["data"], Order) for r in await query.run()]

    async def authorizing_before(self, cutoff: datetime, limit: int = 100) -> list[str]:
        """Ids of orders with an operation in flight on an unanswered payment since before
        ``cutoff`` (a time on the database's clock), oldest first, through the column's
        partial index."""
        rows = await self.db.run(
            "SELECT id FROM orders WHERE authorizing_since IS NOT NULL "
            "AND authorizing_since < {} ORDER BY authorizing_since LIMIT {}", cutoff, limit)
        return [str(r["id"]) for r in rows]

    async def authorizing_order(self, order_id: str) -> tuple[Order, datetime | None]:
        """The order and since when (database clock) it has had an operation in flight
        on an unanswered payment."""
        rows = await self.db.run(
            "SELECT data, authorizing_since FROM orders WHERE id = {}", order_id)
        if not rows:
            raise NotFound("order", order_id)
        since = rows[0]["authorizing_since"]
        if isinstance(since, str):  # SQLite may hand the stored text back
            since = datetime.fromisoformat(since)
        return decode(rows[0]["data"], Order), since

    async def clear_authorizing(self, order: Order) -> None:
        """Nothing is in flight after all (the migration's estimate): unmark the order,
        unless it changed meanwhile."""
        await self.db.run("UPDATE orders SET authorizing_since = NULL "
                          "WHERE id = {} AND version = {}", order.id, order.version)

    async def queue(self, states: Sequence[str], limit: int = 100,
                    after: str | None = None) -> list[Order]:
        """Orders in states that allow fulfilment: highest priority first, then oldest;
        ``after`` is the id of the last order of the previous page (its priority now
        decides where the page continues)."""
        if not states:
            return []
        query = OrderRow.select(OrderRow.data).where(OrderRow.status.is_in(list(states)))
        if after is not None:
            rows = await self.db.run("SELECT priority FROM orders WHERE id = {}", after)
            if not rows:
                raise NotFound("order", after)
            priority = rows[0]["priority"]
            query = query.where((OrderRow.priority < priority) | (
                (OrderRow.priority == priority) & (OrderRow.id > after)))
        rows = await query.order_by(OrderRow.priority, ascending=False).order_by(
            OrderRow.id).limit(limit).run()
        return [decode(r["data"], Order) for r in rows]

    async def count_recent(self, *, customer_id: str | None, email: str,
                           since: Any) -> tuple[int, int]:
        by_customer = 0
        if customer_id:
            by_customer = await OrderRow.count().where(
                (OrderRow.customer_id == customer_id) & (OrderRow.created_at >= since)).run()
        by_email = 0
        if email:
            by_email = await OrderRow.count().where(
                (OrderRow.email == email) & (OrderRow.created_at >= since)).run()
        return int(by_customer), int(by_email)

    async def customer_stats(self, customer_id: str) -> tuple[int, dict[str, int]]:
        """Order count and lifetime spend (captured minus refunded) per currency."""
        rows = await self.db.fetch(
            "SELECT currency, COUNT(*) AS n, COALESCE(SUM(captured - refunded), 0) AS spend "
            "FROM orders WHERE customer_id = {} AND status <> 'cancelled' GROUP BY currency",
            customer_id)
        count = sum(int(r["n"]) for r in rows)
        return count, {r["currency"]: int(r["spend"]) for r in rows}

    async def guest_ids_for_email(self, email: str) -> list[str]:
        """Guest orders (no customer) placed with this e-mail address, oldest first."""
        rows = await OrderRow.select(OrderRow.id).where(
            (OrderRow.email == email) & OrderRow.customer_id.is_null()).order_by(
            OrderRow.id).run()
        return [r["id"] for r in rows]

    async def ids_for_customer(self, customer_id: str, email: str = "") -> list[str]:
        """The customer's orders, and guest orders placed with their email address."""
        where: Any = OrderRow.customer_id == customer_id
        if email:
            where = where | ((OrderRow.email == email) & OrderRow.customer_id.is_null())
        rows = await OrderRow.select(OrderRow.id).where(where).order_by(OrderRow.id).run()
        return [r["id"] for r in rows]

    # -- external references ---------------------------------------------------------
    async def remember_reference(self, namespace: str, reference: str, order_id: str,
                                 entity_id: str) -> None:
        """Map a gateway reference or tracking number to its order (first writer wins)."""
        await self.db.fetch(
            "INSERT INTO external_refs (namespace, reference, order_id, entity_id) "
            "VALUES ({}, {}, {}, {}) ON CONFLICT DO NOTHING",
            namespace, reference, order_id, entity_id)

    async def find_reference(self, namespace: str, reference: str) -> tuple[str, str] | None:
        rows = await self.db.fetch(
            "SELECT order_id, entity_id FROM external_refs WHERE namespace = {} "
            "AND reference = {}", namespace, reference)
        return (rows[0]["order_id"], rows[0]["entity_id"]) if rows else None
