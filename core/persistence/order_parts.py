"""Shipments and returns across orders: a look-up table beside the order documents.

A shipment or a return lives inside its order's document (one aggregate, one
version check). Staff also ask across orders — every shipment with the carrier
``dhl`` shipped since Monday, every return still ``requested`` — which the
documents cannot answer without reading them all. So each save of an order that has
shipments or returns upserts one row per part into ``order_shipments`` or
``order_returns`` (id, order, status, carrier, created), in the same transaction;
the lists page through those rows and read the parts themselves from their orders.
An order without shipments or returns (every placement) costs nothing here.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ordnung.core.domain.orders import Order
from ordnung.core.persistence.codec import decode
from ordnung.core.persistence.database import Database, Statement, where

_UPSERT = {
    "order_shipments": (
        "INSERT INTO order_shipments (id, order_id, status, carrier, created_at, updated_at) "
        "VALUES {} ON CONFLICT (id) DO UPDATE SET status = excluded.status, "
        "carrier = excluded.carrier, updated_at = excluded.updated_at"),
    "order_returns": (
        "INSERT INTO order_returns (id, order_id, status, created_at, updated_at) "
        "VALUES {} ON CONFLICT (id) DO UPDATE SET status = excluded.status, "
        "updated_at = excluded.updated_at"),
}


_PAGE = "SELECT id, order_id FROM {table}"
_PAGE_END = " ORDER BY id DESC LIMIT {}"
_ORDER_OF = {table: f"SELECT order_id FROM {table} WHERE id = {{}}" for table in _UPSERT}
_ORDERS = "SELECT data FROM orders WHERE id IN ({})"


def _upsert(table: str, rows: list[tuple[Any, ...]]) -> Statement:
    width = len(rows[0])
    values = ", ".join("(" + ", ".join(["{}"] * width) + ")" for _ in rows)
    return _UPSERT[table].format(values), [value for row in rows for value in row]


class OrderPartStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def record(self, order: Order) -> None:
        """Upsert the look-up rows of the order's shipments and returns."""
        await self.db.run_together(self.recording(order))

    @staticmethod
    def recording(order: Order) -> list[Statement]:
        """The statements ``record`` runs (to run with the change's other writes)."""
        statements = []
        if order.shipments:
            statements.append(_upsert("order_shipments", [
                (s.id, order.id, s.status, s.carrier, s.created_at, order.updated_at)
                for s in order.shipments]))
        if order.returns:
            statements.append(_upsert("order_returns", [
                (r.id, order.id, r.status, r.created_at, order.updated_at)
                for r in order.returns]))
        return statements

    async def page(self, table: str, *, status: Sequence[str] | None = None,
                   order_id: str | None = None, carrier: str | None = None,
                   since: datetime | None = None, until: datetime | None = None,
                   after: str | None = None, limit: int = 50) -> list[tuple[str, str]]:
        """(part id, order id) newest first; ``after`` is the last id of the previous page;
        ``since`` inclusive, ``until`` exclusive."""
        clause, args = where(("order_id = {}", order_id), ("carrier = {}", carrier),
                             ("created_at >= {}", since), ("created_at < {}", until),
                             ("id < {}", after), ("status IN ({})", list(status or ())))
        rows = await self.db.run(_PAGE.format(table=table) + clause + _PAGE_END, *args, limit)
        return [(r["id"], r["order_id"]) for r in rows]

    async def order_of(self, table: str, part_id: str) -> str | None:
        rows = await self.db.run(_ORDER_OF[table], part_id)
        return str(rows[0]["order_id"]) if rows else None

    async def orders(self, order_ids: Sequence[str]) -> dict[str, Order]:
        """The orders of a page's parts, by id (one query)."""
        unique = sorted(set(order_ids))
        if not unique:
            return {}
        rows = await self.db.run(_ORDERS.format(", ".join("{}" for _ in unique)), *unique)
        orders = [decode(r["data"], Order) for r in rows]
        return {o.id: o for o in orders}
