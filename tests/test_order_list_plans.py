"""The order list's and the fulfilment queue's plans on PostgreSQL, as a generic plan.

asyncpg prepares every statement, and after five runs PostgreSQL may keep one generic plan
for a prepared statement, planned without its arguments. A status given as an argument
is then only "some status": the planner may walk the primary key newest first and filter,
which for a rare status (the cancelled orders behind the warehouse's backlog) reads
thousands of rows for a page of fifty. These tests plan the statements the stores build,
captured from the running app, with ``plan_cache_mode = force_generic_plan`` and count the
rows each page reads."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg
import pytest

from ordnung.core.persistence.orders import page_statement, queue_statement
from tests.api_support import Api, api_client, expect, held, order_body
from tests.conftest import TEST_DB

postgres_only = pytest.mark.skipif(TEST_DB != "postgres",
                                   reason="PostgreSQL's plan cache (SQLite plans every run)")

#: orders seeded in bulk: the newest ``BACKLOG`` are the warehouse's (processing, some
#: held), the older ones history, 6 % of it cancelled and the rest delivered
ORDERS = 30_000
BACKLOG = 3_000
CUSTOMERS = 997
LIMIT = 50
#: rows a page may read: its matches and a little slack (a plan that reads per status
#: reads about a page per part; one that filters the primary key reads the backlog)
BUDGET = 3 * LIMIT

_SCANS = ("Seq Scan", "Index Scan", "Index Only Scan", "Bitmap Heap Scan")

_SEED = f"""
INSERT INTO orders (id, number, channel, customer_id, email, status, currency, priority,
                    data, version, created_at, updated_at, total, authorized, captured,
                    refunded)
SELECT 'ord_' || lpad(g::text, 26, '0'), 'BULK-' || g,
       (ARRAY['web', 'app', 'etsy'])[g % 3 + 1],
       'cus_bulk_' || lpad((g % {CUSTOMERS})::text, 4, '0'), o.email,
       CASE WHEN g > {ORDERS - BACKLOG} THEN
                CASE WHEN g % 10 = 0 THEN 'on_hold' ELSE 'processing' END
            WHEN g % 100 < 6 THEN 'cancelled' ELSE 'delivered' END,
       o.currency, g % 3, o.data, o.version, o.created_at, o.updated_at, o.total,
       o.authorized, o.captured, o.refunded
FROM orders o, generate_series(1, {ORDERS}) AS g WHERE o.id = $1
"""


@pytest.fixture(name="api")
async def seeded_api(database_url: str) -> AsyncIterator[Api]:
    """The API over a shop of ``ORDERS`` orders, copies of one placed through it."""
    async with held(api_client(database_url)) as api:
        order = await api.place_order(await api.storefront("web"), order_body(("MUG", 1)))
        connection = await asyncpg.connect(database_url)
        try:
            await connection.execute(_SEED, order["id"])
            await connection.execute("ANALYZE orders")
        finally:
            await connection.close()
        yield api


def _literal(value: Any) -> str:
    if isinstance(value, int):
        return str(value)
    return "'" + str(value).replace("'", "''") + "'"


def _rows_read(node: dict[str, Any]) -> int:
    """Rows the plan's table scans produced or threw away, over all their loops."""
    read = 0
    if node["Node Type"] in _SCANS:
        read += (node["Actual Rows"] + node.get("Rows Removed by Filter", 0)
                 + node.get("Rows Removed by Index Recheck", 0)) * node["Actual Loops"]
    return read + sum(_rows_read(child) for child in node.get("Plans", ()))


def _outline(node: dict[str, Any], depth: int = 0) -> str:
    """The plan as indented lines: each node, its index, rows and what it filtered."""
    line = (f"{'  ' * depth}{node['Node Type']} {node.get('Index Name', '')} "
            f"rows={node['Actual Rows']}x{node['Actual Loops']} "
            f"removed={node.get('Rows Removed by Filter', 0)} "
            f"{node.get('Index Cond', '')} {node.get('Filter', '')}")
    return "\n".join([line, *(_outline(c, depth + 1) for c in node.get("Plans", ()))])


async def _generic_plan(api: Api, sql: str, args: Sequence[Any]) -> tuple[int, str]:
    """Rows read by the statement's generic plan, run once with ``args``, and the plan."""
    parts = sql.split("{}")
    prepared = parts[0] + "".join(f"${n}{part}" for n, part in enumerate(parts[1:], 1))
    connection = await asyncpg.connect(api.engine.config.database_url)
    try:
        await connection.execute("SET plan_cache_mode = force_generic_plan")
        await connection.execute(f"PREPARE page AS {prepared}")
        explained = await connection.fetchval(
            "EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE page"
            + (f"({', '.join(_literal(a) for a in args)})" if args else ""))
    finally:
        await connection.close()
    plan = explained if isinstance(explained, list) else json.loads(explained)
    return _rows_read(plan[0]["Plan"]), _outline(plan[0]["Plan"])


async def _run_by_app(api: Api, path: str, params: dict[str, Any],
                      starts: str) -> tuple[str, list[Any], list[dict[str, Any]]]:
    """Ask the app for ``path`` and catch the statement it ran that starts with ``starts``
    (the database is not replaced: every statement still runs)."""
    db = api.engine.db
    ran: list[tuple[str, tuple[Any, ...]]] = []
    real = db.run

    async def recording(sql: str, *args: Any) -> list[Any]:
        ran.append((sql, args))
        return await real(sql, *args)

    db.run = recording  # type: ignore[method-assign]
    try:
        items = expect(await api.client.get(path, params=params, headers=api.admin),
                       200)["items"]
    finally:
        del db.run
    caught = [(sql, list(args)) for sql, args in ran if sql.startswith(starts)]
    assert len(caught) == 1, ran
    return caught[0][0], caught[0][1], items


def _order_id(serial: int) -> str:
    """The id of the ``serial``-th seeded order (ids as ``new_id`` spells them)."""
    return f"ord_{serial:026d}"


def _cursor() -> str:
    """An order deep in the history: a page after it is the history's."""
    return _order_id(ORDERS - BACKLOG - 1_000)


LISTS: list[dict[str, Any]] = [
    {"status": ["cancelled"]},
    {"status": ["cancelled"], "channel": "app"},
    {"status": ["cancelled"], "customer_id": "cus_bulk_0042"},
    {"status": ["cancelled"], "after": _cursor()},
    {"status": ["cancelled", "on_hold"]},
    {"status": ["cancelled", "on_hold"], "channel": "etsy"},
    {"status": ["cancelled", "on_hold"], "customer_id": "cus_bulk_0042"},
    {"status": ["cancelled", "on_hold"], "channel": "app", "after": _cursor()},
]


@postgres_only
@pytest.mark.parametrize("query", LISTS, ids=lambda q: "-".join(
    f"{k}={'+'.join(v) if isinstance(v, list) else 'x'}" for k, v in q.items()))
async def test_a_page_of_a_rare_status_reads_about_a_page_in_a_generic_plan(
        api: Api, query: dict[str, Any]) -> None:
    sql, args, items = await _run_by_app(api, "/orders", {**query, "limit": LIMIT},
                                         "SELECT data FROM (" if len(query["status"]) > 1
                                         else "SELECT data FROM orders")
    assert (sql, args) == page_statement(**query, limit=LIMIT)
    assert items  # (the seeded rows are copies of one order's document)
    read, plan = await _generic_plan(api, sql, args)
    assert read <= BUDGET * len(query["status"]), f"{read} rows read:\n{plan}"


@postgres_only
async def test_the_fulfilment_queue_reads_about_a_page_in_a_generic_plan(api: Api) -> None:
    states = api.engine.machines["order"].states_allowing("fulfil")
    for after in (None, _order_id(ORDERS - 100)):
        sql, args = queue_statement(states, limit=100, after=after)
        read, plan = await _generic_plan(api, sql, args)
        assert read <= 3 * 100 * len(states), f"after {after}: {read} rows read:\n{plan}"


def test_only_a_name_that_quotes_safely_is_written_into_the_statement() -> None:
    sql, args = page_statement(status=["on_hold"], channel="web", limit=5)
    assert "status = 'on_hold'" in sql and args == ["web", 5]
    for odd in ("it's", "back\\slash", "{}", "x' OR '1'='1"):
        sql, args = page_statement(status=[odd, "on_hold"], limit=5)
        assert f"'{odd}'" not in sql and "status = 'on_hold'" in sql, sql
        assert sorted(map(str, args)) == sorted([odd, "5", "5", "5"])
