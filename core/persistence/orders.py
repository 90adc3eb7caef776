"""Orders: the aggregate document plus the columns we filter and constrain on."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from ordnung.core.domain.orders import Order
from ordnung.core.errors import Conflict, NotFound
from ordnung.core.persistence.changed_columns import ChangedColumns
from ordnung.core.persistence.codec import decode, encode
from ordnung.core.persistence.database import Database, Statement, where


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
#: ``{stamp}``: whether the order has an operation in flight -> the database's now or NULL
_INSERT = (f"INSERT INTO orders ({', '.join(_INSERT_COLUMNS)}, authorizing_since) "
           f"VALUES ({', '.join('{}' for _ in _INSERT_COLUMNS)}, {{stamp}})")
#: a save names the indexed columns only when they change; ``{keep}``: as ``{stamp}``,
#: keeping the time an operation went in flight
_INDEXED = ("status = {}", "priority = {}", "email = {}", "customer_id = {}",
            "authorizing_since = {keep}")
_ALWAYS = ("total = {}, authorized = {}, captured = {}, refunded = {}, data = {}, "
           "version = {}, updated_at = {}")
_GUARD = "WHERE id = {} AND version = {} RETURNING id"
#: what an order's row holds for its indexes (``OrderStore.columns``)
Columns = tuple[str, int, str, str | None, bool]
_STAMP = "CASE WHEN {{}} THEN {now} ELSE NULL END"
_KEEP = "CASE WHEN {{}} THEN COALESCE(authorizing_since, {now}) ELSE NULL END"
_GET = "SELECT data FROM orders WHERE id = {}"
_BY_NUMBER = "SELECT data FROM orders WHERE number = {}"
#: the order list: filters are added in this order, then the status, then ``_PAGE_END``
_PAGE = "SELECT data FROM orders"
_CUSTOMER_IS, _CHANNEL_IS, _BEFORE = ("customer_id = {}", "channel = {}", "id < {}")
_PAGE_END = " ORDER BY id DESC LIMIT {}"
#: a status written into the list's statement as a literal (see ``page_statement``)
_STATUS_LITERAL = "status = '{}'"
_STATUS_IS = "status = {}"
#: state names that are safe as a literal between single quotes: no quote, no backslash,
#: no brace (the statements' placeholders)
_LITERAL_STATE = re.compile(r"[A-Za-z0-9_-]{1,64}")
#: a list over several statuses: one part per status, each a range of ``orders_status_id
#: (status, id)`` read newest first and cut at the page size, merged by id
_PAGE_ROWS = "SELECT data, id FROM orders"
_PAGE_PART = "SELECT * FROM ({part}) AS part{n}"
_PAGE_MERGED = "SELECT data FROM ({parts}) AS merged ORDER BY id DESC LIMIT {{}}"
_AUTHORIZING_BEFORE = ("SELECT id FROM orders WHERE authorizing_since IS NOT NULL "
                       "AND authorizing_since < {} ORDER BY authorizing_since LIMIT {}")
_AUTHORIZING_ORDER = "SELECT data, authorizing_since FROM orders WHERE id = {}"
_CLEAR_AUTHORIZING = ("UPDATE orders SET authorizing_since = NULL "
                      "WHERE id = {} AND version = {}")
_PRIORITY = "SELECT priority FROM orders WHERE id = {}"
#: the fulfilment queue is one statement: each state's part is a range of the index
#: ``orders_queue (status, priority DESC, id)`` read in the queue's order and cut at the
#: page size, and the parts are merged. After a cursor each state has two parts, the rest
#: of the cursor's priority and the lower priorities, so no part reads rows before the
#: cursor however deep the page (a keyset on two directions in one range could not).
_QUEUE_FIRST = ("SELECT data, priority, id FROM orders WHERE status = {} "
                "ORDER BY priority DESC, id LIMIT {}")
#: the cursor's priority is bounded on both sides rather than equated: an equality would
#: let PostgreSQL's generic plan walk the primary key from the cursor (ordered by id too)
#: and filter, instead of the queue index
_QUEUE_SAME = ("SELECT data, priority, id FROM orders WHERE status = {} "
               "AND priority >= (SELECT priority FROM orders WHERE id = {}) "
               "AND priority <= (SELECT priority FROM orders WHERE id = {}) AND id > {} "
               "ORDER BY priority DESC, id LIMIT {}")
_QUEUE_LOWER = ("SELECT data, priority, id FROM orders WHERE status = {} "
                "AND priority < (SELECT priority FROM orders WHERE id = {}) "
                "ORDER BY priority DESC, id LIMIT {}")
_QUEUE = "SELECT data FROM ({parts}) AS queue ORDER BY priority DESC, id LIMIT {{}}"
_QUEUE_PART = "SELECT * FROM ({}) AS part{}"
_RECENT_BY_CUSTOMER = ("SELECT COUNT(*) AS n FROM orders "
                       "WHERE customer_id = {} AND created_at >= {}")
_RECENT_BY_EMAIL = "SELECT COUNT(*) AS n FROM orders WHERE email = {} AND created_at >= {}"
_CUSTOMER_STATS = (
    "SELECT currency, COUNT(*) AS n, COALESCE(SUM(captured - refunded), 0) AS spend "
    "FROM orders WHERE customer_id = {} AND status <> 'cancelled' GROUP BY currency")
_GUEST_IDS = "SELECT id FROM orders WHERE email = {} AND customer_id IS NULL ORDER BY id"
_CUSTOMER_IDS = "SELECT id FROM orders WHERE customer_id = {} ORDER BY id"
_CUSTOMER_AND_GUEST_IDS = ("SELECT id FROM orders WHERE customer_id = {} "
                           "OR (email = {} AND customer_id IS NULL) ORDER BY id")
_REMEMBER_REFERENCE = ("INSERT INTO external_refs (namespace, reference, order_id, entity_id) "
                       "VALUES ({}, {}, {}, {}) ON CONFLICT DO NOTHING")
_FIND_REFERENCE = ("SELECT order_id, entity_id FROM external_refs "
                   "WHERE namespace = {} AND reference = {}")


def page_statement(*, customer_id: str | None = None, status: Sequence[str] | None = None,
                   channel: str | None = None, after: str | None = None,
                   limit: int = 50) -> Statement:
    """The order list's one statement for a page (``OrderStore.page``).

    Each status is written into the statement as a literal, not passed as an argument:
    asyncpg prepares every statement and PostgreSQL may then keep a generic plan, planned
    without the arguments. With the status an argument, that plan cannot tell a rare
    status from a common one and may walk the primary key newest first and filter, which
    reads every newer order of other states (the backlog, thousands) for a page of a rare
    one. With the status in the text, each status has its own statement and plan, and a
    page reads about a page through ``orders_status_id``. The statuses are the lifecycle's
    states (the service refuses others), a small closed set, so the statements stay few;
    a name that could not be quoted safely goes as an argument instead."""
    states = sorted(set(status or ()))
    if len(states) < 2:
        clause, args = _page_filters(customer_id, states[0] if states else None, channel,
                                     after)
        return _PAGE + clause + _PAGE_END, [*args, limit]
    parts: list[str] = []
    args = []
    for n, state in enumerate(states):
        clause, part_args = _page_filters(customer_id, state, channel, after)
        parts.append(_PAGE_PART.format(n=n, part=_PAGE_ROWS + clause + _PAGE_END))
        args += [*part_args, limit]
    return _PAGE_MERGED.format(parts=" UNION ALL ".join(parts)), [*args, limit]


def _page_filters(customer_id: str | None, state: str | None, channel: str | None,
                  after: str | None) -> tuple[str, list[Any]]:
    """`` WHERE ...`` of a page (or a part of one) and its arguments, the state last."""
    clause, args = where((_CUSTOMER_IS, customer_id), (_CHANNEL_IS, channel),
                         (_BEFORE, after))
    if state is None:
        return clause, args
    clause += " AND " if clause else " WHERE "
    if _LITERAL_STATE.fullmatch(state):
        return clause + _STATUS_LITERAL.format(state), args
    return clause + _STATUS_IS, [*args, state]


def queue_statement(states: Sequence[str], *, limit: int = 100,
                    after: str | None = None) -> Statement:
    """The fulfilment queue's one statement for a page of ``states`` (not empty).

    Unlike the order list's, its states stay arguments: each part's only range is
    ``orders_queue (status, priority DESC, id)``, which gives the queue's order itself,
    so even PostgreSQL's generic plan (planned without the arguments) reads a page per
    part there, however rare the state."""
    args: list[Any] = []
    parts: list[str] = []
    for state in states:
        if after is None:
            parts.append(_QUEUE_FIRST)
            args += [state, limit]
        else:
            parts += [_QUEUE_SAME, _QUEUE_LOWER]
            args += [state, after, after, after, limit, state, after, limit]
    sql = _QUEUE.format(parts=" UNION ALL ".join(
        _QUEUE_PART.format(part, n) for n, part in enumerate(parts)))
    return sql, [*args, limit]


class OrderStore:
    """``authorizing_since`` is stamped on the database's clock (as every age decision
    is: servers' clocks drift apart) when an order starts having an operation in flight
    on an unanswered payment, and cleared when it has none."""

    def __init__(self, db: Database) -> None:
        self.db = db
        now = db.sql_now()
        self._insert = _INSERT.replace("{stamp}", _STAMP.format(now=now))
        keep = _KEEP.format(now=now)
        self._saves = ChangedColumns("orders", [part.replace("{keep}", keep)
                                                for part in _INDEXED], _ALWAYS, _GUARD)
        self._get_locked = _GET + db.lock_suffix

    async def insert(self, order: Order) -> None:
        await self.db.run(*self.inserting(order))

    def inserting(self, order: Order) -> Statement:
        """The statement that inserts a new order (to run alone or with its change's other
        writes)."""
        money = _money_columns(order)
        return self._insert, (
            order.id, order.number, order.channel, order.customer_id, order.email,
            order.status, order.currency, order.priority, encode(order), order.version,
            order.created_at, order.updated_at, money["total"], money["authorized"],
            money["captured"], money["refunded"], authorizing(order))

    @staticmethod
    def columns(order: Order) -> Columns:
        """What the row of ``order`` holds for its indexes: taken from the order as
        read, before it changes, it lets a save name only the columns that change."""
        return (order.status, order.priority, order.email, order.customer_id,
                authorizing(order))

    async def save(self, order: Order, expected_version: int, *,
                   stored: Columns | None = None) -> None:
        """Write the new state; refuses if someone else saved since we read (version
        check). ``stored``: the order's ``columns`` as read."""
        sql, args = self.saving(order, expected_version, stored=stored)
        self.saved(order, len(await self.db.run(sql, *args)))

    def saving(self, order: Order, expected_version: int, *,
               stored: Columns | None = None) -> Statement:
        """The statement that saves the order's new state if its version is still
        ``expected_version`` (it returns the row it saved); pass the rows it returned to
        ``saved``. ``stored``: the order's ``columns`` as read."""
        order.version = expected_version + 1
        money = _money_columns(order)
        sql, named = self._saves.update(stored, self.columns(order))
        return sql, (
            *named, money["total"], money["authorized"], money["captured"],
            money["refunded"], encode(order), order.version, order.updated_at, order.id,
            expected_version)

    @staticmethod
    def saved(order: Order, rows: int) -> None:
        """Refuse the change if the save found the order changed since it was read."""
        if not rows:
            raise Conflict(f"order {order.id} was changed concurrently; retry",
                           order_id=order.id)

    async def get(self, order_id: str, *, for_update: bool = False) -> Order:
        rows = await self.db.run(self._get_locked if for_update else _GET, order_id)
        if not rows:
            raise NotFound("order", order_id)
        return decode(rows[0]["data"], Order)

    async def by_number(self, number: str) -> Order:
        row = await self.db.fetch_one(_BY_NUMBER, number)
        if row is None:
            raise NotFound("order", number)
        return decode(row["data"], Order)

    async def page(self, *, customer_id: str | None = None, status: Sequence[str] | None = None,
                   channel: str | None = None, after: str | None = None,
                   limit: int = 50) -> list[Order]:
        """Newest first; ``after`` is the id of the last order of the previous page.

        With several statuses, each status's part is read on its own, newest first and
        cut at the page size, and the parts are merged (``_PAGE_MERGED``): a list of
        common states then reads about a page per state, however many orders of other
        states (the backlog, the history) lie between its matches."""
        sql, args = page_statement(customer_id=customer_id, status=status, channel=channel,
                                   after=after, limit=limit)
        rows = await self.db.run(sql, *args)
        return [decode(r["data"], Order) for r in rows]

    async def authorizing_before(self, cutoff: datetime, limit: int = 100) -> list[str]:
        """Ids of orders with an operation in flight on an unanswered payment since before
        ``cutoff`` (a time on the database's clock), oldest first, through the column's
        partial index."""
        rows = await self.db.run(_AUTHORIZING_BEFORE, cutoff, limit)
        return [str(r["id"]) for r in rows]

    async def authorizing_order(self, order_id: str) -> tuple[Order, datetime | None]:
        """The order and since when (database clock) it has had an operation in flight
        on an unanswered payment."""
        rows = await self.db.run(_AUTHORIZING_ORDER, order_id)
        if not rows:
            raise NotFound("order", order_id)
        since = rows[0]["authorizing_since"]
        if isinstance(since, str):  # SQLite may hand the stored text back
            since = datetime.fromisoformat(since)
        return decode(rows[0]["data"], Order), since

    async def clear_authorizing(self, order: Order) -> None:
        """Nothing is in flight after all (the migration's estimate): unmark the order,
        unless it changed meanwhile."""
        await self.db.run(_CLEAR_AUTHORIZING, order.id, order.version)

    async def queue(self, states: Sequence[str], limit: int = 100,
                    after: str | None = None) -> list[Order]:
        """Orders in states that allow fulfilment: highest priority first, then oldest;
        ``after`` is the id of the last order of the previous page (its priority now
        decides where the page continues)."""
        if not states:
            return []
        sql, args = queue_statement(states, limit=limit, after=after)
        rows = await self.db.run(sql, *args)
        if not rows and after is not None and await self.db.fetch_one(_PRIORITY, after) is None:
            raise NotFound("order", after)
        return [decode(r["data"], Order) for r in rows]

    async def count_recent(self, *, customer_id: str | None, email: str,
                           since: Any) -> tuple[int, int]:
        by_customer = 0
        if customer_id:
            rows = await self.db.run(_RECENT_BY_CUSTOMER, customer_id, since)
            by_customer = rows[0]["n"]
        by_email = 0
        if email:
            rows = await self.db.run(_RECENT_BY_EMAIL, email, since)
            by_email = rows[0]["n"]
        return int(by_customer), int(by_email)

    async def customer_stats(self, customer_id: str) -> tuple[int, dict[str, int]]:
        """Order count and lifetime spend (captured minus refunded) per currency."""
        rows = await self.db.run(_CUSTOMER_STATS, customer_id)
        count = sum(int(r["n"]) for r in rows)
        return count, {r["currency"]: int(r["spend"]) for r in rows}

    async def guest_ids_for_email(self, email: str) -> list[str]:
        """Guest orders (no customer) placed with this e-mail address, oldest first."""
        return [r["id"] for r in await self.db.run(_GUEST_IDS, email)]

    async def ids_for_customer(self, customer_id: str, email: str = "") -> list[str]:
        """The customer's orders, and guest orders placed with their email address."""
        rows = await (self.db.run(_CUSTOMER_AND_GUEST_IDS, customer_id, email) if email
                      else self.db.run(_CUSTOMER_IDS, customer_id))
        return [r["id"] for r in rows]

    # -- external references ---------------------------------------------------------
    @staticmethod
    def remembering(namespace: str, reference: str, order_id: str,
                    entity_id: str) -> Statement:
        """The statement that maps a gateway reference or tracking number to its order
        (first writer wins); written with the change that learnt it
        (``OrderChange.remember``)."""
        return _REMEMBER_REFERENCE, (namespace, reference, order_id, entity_id)

    async def find_reference(self, namespace: str, reference: str) -> tuple[str, str] | None:
        row = await self.db.fetch_one(_FIND_REFERENCE, namespace, reference)
        return (row["order_id"], row["entity_id"]) if row else None
