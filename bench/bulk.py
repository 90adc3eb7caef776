"""Bulk seeding for the growth scenario: copies of the template orders' rows, written straight
into the tables in big batches (PostgreSQL ``COPY``, SQLite ``executemany`` with syncing off),
one transaction per batch, so a million orders seed in minutes.

Every string a template's rows hold is compiled once into a format string whose fields are
the template's *tokens*: ids (a prefix, ``_`` and 26 base-32 characters, gateway
references included), tracking numbers, order numbers, the template's e-mail address and
timestamps. A copy computes each token's value once (ids renamed, timestamps moved to the
copy's age, the e-mail and customer of the copy's shopper) and formats its rows with them.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bench.templates import Template
from ordnung.core.config import EngineConfig

#: the tables a placed order writes to, and the column naming the order
ORDER_TABLES: dict[str, str] = {
    "orders": "id", "events": "order_id", "outbox": "order_id", "order_shipments": "order_id",
    "order_returns": "order_id", "external_refs": "order_id", "stock_movements": "order_id"}
#: outbox marks a copy carries as done, or the restarted server would publish the history
OUTBOX_DONE = ("dispatched_at", "webhooks_at", "broker_at")
#: a shop's outbox holds the events of its last days only: the housekeeping pass deletes
#: a row once every worker is done with it and it is older than the outbox retention
#: (``EngineConfig.outbox_retention_s``), so older copies get none, as in a running shop
#: (otherwise the first passes of the bench's server would delete the history's rows
#: while the reads are timed)
OUTBOX_KEPT = timedelta(seconds=EngineConfig().outbox_retention_s)

_ALPHABET = "0123456789abcdefghjkmnpqrstvwxyz"
_TOKEN = re.compile(
    r"(?P<id>(?<![0-9a-z])[a-z]{2,5}_[0-9a-z]{26}(?![0-9a-z]))"
    r"|(?P<number>ORD-[0-9A-Z]{4}-[0-9A-Z]{4})"
    r"|(?P<tracking>FR[0-9A-F]{10})"
    r"|(?P<email>tpl[0-9a-f]{8}@example\.com)"
    r"|(?P<time>\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:?\d\d)?)")

#: seconds between two seeded orders: a million orders are about a year of history
SPACING_S = 30
#: how many of the newest orders are the warehouse's backlog (paid or held)
BACKLOG = 1_000
#: registered shoppers' share of orders, and orders per registered customer
REGISTERED_SHARE = 0.7
ORDERS_PER_CUSTOMER = 4
#: the serials a customer's orders are spread over (a power of two)
CUSTOMER_WINDOW = 4096


def base32(value: int, width: int) -> str:
    chars = []
    for _ in range(width):
        value, rem = divmod(value, 32)
        chars.append(_ALPHABET[rem])
    return "".join(reversed(chars))


@dataclass
class Copy:
    """One seeded order: its serial (0 is the newest), its age and its shopper."""

    serial: int
    customer: int | None
    moved_by: timedelta
    millis: str  # the 10-character time part of the copy's ids
    serial_code: str  # the serial in 13 base-32 characters
    seconds: dict[int, str] = field(default_factory=dict)

    def email(self) -> str:
        if self.customer is not None:
            return f"customer{self.customer}@example.org"
        return f"guest{self.serial}@example.org"

    def second(self, original: datetime, layout: str) -> str:
        """A template timestamp's whole second, moved (the copies move by whole seconds,
        so the fraction stays; the many timestamps of one template share few seconds)."""
        key = int(original.timestamp()) * 2 + (layout[8] == "T")
        known = self.seconds.get(key)
        if known is None:
            known = self.seconds[key] = (original + self.moved_by).strftime(layout)
        return known


Token = Callable[[Copy], str]


def _token(match: re.Match[str], position: int, customer_ids: frozenset[str]) -> Token:
    token = match.group()
    slot = base32(position, 3)
    if match.group("id"):
        prefix = token.split("_", 1)[0]
        if token in customer_ids:
            return lambda c: (f"{prefix}_0000000000c{base32(c.customer, 15)}"
                              if c.customer is not None else token)
        return lambda c: f"{prefix}_{c.millis}{slot}{c.serial_code}"
    if match.group("number"):
        return lambda c: f"ORD-{c.serial_code[5:9].upper()}-{c.serial_code[9:].upper()}"
    if match.group("tracking"):
        return lambda c: f"FR{slot[1:]}{c.serial_code[5:]}".upper()
    if match.group("email"):
        return Copy.email
    return _time_token(token)


def _time_token(token: str) -> Token:
    """A timestamp written as the template wrote it (separator, fraction, zone)."""
    original = datetime.fromisoformat(token.replace("Z", "+00:00"))
    layout = f"%Y-%m-%d{token[10]}%H:%M:%S"
    tail = token[19:]
    return lambda c: c.second(original, layout) + tail


class Tokens:
    """A template's distinct tokens, numbered in the order they are met."""

    def __init__(self, customer_ids: frozenset[str]) -> None:
        self.customer_ids = customer_ids
        self.index: dict[str, int] = {}
        self.makers: list[Token] = []

    def compile(self, text: str) -> str | None:
        """``text`` as a format string over the tokens (None: nothing in it changes)."""
        parts: list[str] = []
        last = 0
        for match in _TOKEN.finditer(text):
            parts.append(text[last:match.start()].replace("{", "{{").replace("}", "}}"))
            number = self.index.get(match.group())
            if number is None:
                number = self.index[match.group()] = len(self.makers)
                self.makers.append(_token(match, number, self.customer_ids))
            parts.append(f"{{{number}}}")
            last = match.end()
        if not parts:
            return None
        parts.append(text[last:].replace("{", "{{").replace("}", "}}"))
        return "".join(parts)


#: how a column's value is made for a copy: kept, formatted over the tokens, or moved
KEEP, FORMAT, MOVE = 0, 1, 2


@dataclass
class RowTemplate:
    table: str
    columns: list[str]
    cells: list[tuple[int, Any]]

    def fill(self, values: list[str], moved_by: timedelta) -> tuple[Any, ...]:
        return tuple(v if how == KEEP else v.format(*values) if how == FORMAT else v + moved_by
                     for how, v in self.cells)


@dataclass
class OrderTemplate:
    """One template order's rows, ready to copy."""

    template: Template
    tokens: Tokens
    rows: list[RowTemplate]
    customer_row: RowTemplate | None


def compile_rows(template: Template, rows: dict[str, list[dict[str, Any]]],
                 customer_ids: frozenset[str]) -> OrderTemplate:
    """``rows``: per table, the template's rows as column -> value."""
    tokens = Tokens(customer_ids)
    compiled: list[RowTemplate] = []
    customer: RowTemplate | None = None
    for table, table_rows in rows.items():
        for row in table_rows:
            if table == "outbox":
                row = {**row, **{c: row["created_at"] for c in OUTBOX_DONE
                                 if c in row and row[c] is None}}
            cells: list[tuple[int, Any]] = []
            for value in row.values():
                if isinstance(value, datetime):
                    cells.append((MOVE, value))
                elif isinstance(value, str) and (text := tokens.compile(value)) is not None:
                    cells.append((FORMAT, text))
                else:
                    cells.append((KEEP, value))
            compiled_row = RowTemplate(table, list(row), cells)
            if table == "customers":
                customer = compiled_row
            else:
                compiled.append(compiled_row)
    return OrderTemplate(template, tokens, compiled, customer)


@dataclass
class Plan:
    """Which template each seeded order copies, its age and its shopper."""

    templates: list[OrderTemplate]
    now: datetime
    by_kind: dict[tuple[str, str, bool], OrderTemplate] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for candidate in self.templates:
            t = candidate.template
            self.by_kind[(t.state, t.channel, t.customer_id is not None)] = candidate

    def pick(self, serial: int) -> tuple[OrderTemplate, int | None]:
        """The newest orders are the backlog; behind them the history. A registered
        customer has ``ORDERS_PER_CUSTOMER`` slots spread over a window of serials (a
        permutation of the window), whatever the size of the database."""
        mix = (serial * 2654435761) % 1000
        registered = mix < REGISTERED_SHARE * 1000
        if serial < BACKLOG:
            state = "on_hold" if mix % 20 == 0 else "processing"
        elif serial < 3 * BACKLOG and mix % 4 == 0:
            state = "fulfilled"
        else:
            state = "cancelled" if mix % 16 == 0 else "delivered"
        channel = "app" if mix % 5 == 0 else "web"
        customer = None
        if registered:
            window, offset = divmod(serial, CUSTOMER_WINDOW)
            customer = window * (CUSTOMER_WINDOW // ORDERS_PER_CUSTOMER) + \
                (offset * 40503 % CUSTOMER_WINDOW) // ORDERS_PER_CUSTOMER
        return self.by_kind[(state, channel, registered)], customer


def copies(plan: Plan, serials: range) -> Iterator[tuple[OrderTemplate, Copy]]:
    for serial in serials:
        template, customer = plan.pick(serial)
        moved_by = timedelta(seconds=-SPACING_S * serial - 60)
        millis = int((plan.now + moved_by).astimezone(UTC).timestamp() * 1000)
        yield template, Copy(serial, customer, moved_by, base32(millis, 10),
                             base32(serial, 13))


def batch_rows(plan: Plan, serials: range,
               seen_customers: set[int]) -> dict[str, tuple[list[str], list[tuple[Any, ...]]]]:
    """The rows of one batch per table, with each customer's row the first time one of
    their orders is seeded."""
    out: dict[str, tuple[list[str], list[tuple[Any, ...]]]] = {}
    for template, copy in copies(plan, serials):
        values = [make(copy) for make in template.tokens.makers]
        rows = template.rows
        if copy.customer is not None and copy.customer not in seen_customers:
            seen_customers.add(copy.customer)
            assert template.customer_row is not None
            rows = [*rows, template.customer_row]
        for row in rows:
            if row.table == "outbox" and -copy.moved_by > OUTBOX_KEPT:
                continue  # housekeeping deleted it long ago
            entry = out.get(row.table)
            if entry is None:
                entry = out[row.table] = (row.columns, [])
            entry[1].append(row.fill(values, copy.moved_by))
    return out


def insert_sql(table: str, columns: Sequence[str]) -> str:
    names = ", ".join(columns)
    marks = ", ".join("?" for _ in columns)
    return f"INSERT INTO {table} ({names}) VALUES ({marks})"
