"""A transaction the database aborts to resolve a conflict (a deadlock victim, a
serialization failure) is run again, whole; it never answers 500.

The deadlock is real and deterministic: the test's own connection locks the stock level
of the SKU the server locks second, waits until the server's transaction holds the first
and waits for the second, then asks for the first. Its ``deadlock_timeout`` is longer
than the server's (the default 1 s), so PostgreSQL aborts the server's transaction.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from ordnung.api.cli import main
from ordnung.api.rate_limits import WriteLimits
from ordnung.core import Engine, EngineConfig
from ordnung.core.errors import ConfigError
from ordnung.core.errors_db import TransientConflict
from ordnung.core.persistence import retrying
from ordnung.core.persistence.retrying import in_transaction
from tests.api_support import (
    BERLIN,
    PROBLEM_BASE,
    Api,
    api_client,
    api_fixture,  # noqa: F401
    captured_logs,
    expect,
    expect_problem,
    order_body,
)

POSTGRES = os.environ.get("ORDNUNG_TEST_DB", "sqlite") == "postgres"
needs_postgres = pytest.mark.skipif(not POSTGRES, reason="row locks of a second client")
needs_sqlite = pytest.mark.skipif(POSTGRES, reason="SQLite's one write lock")

#: the server locks stock levels in SKU order: MUG before SHIRT-M
FIRST, SECOND = "MUG", "SHIRT-M"
_LOCK_LEVELS = "SELECT id FROM stock_levels WHERE sku = $1 FOR UPDATE"
_SERVER_WAITING = (
    "SELECT COUNT(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
    "WHERE NOT l.granted AND a.datname = current_database() AND a.pid <> pg_backend_pid()")
RETRY_WARNING = "transaction aborted by the database to resolve a conflict; running it again"
GIVE_UP_WARNING = "transaction aborted by the database on every try; giving up"


@asynccontextmanager
async def other_client(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A second client in a transaction (an operator's SQL session), that PostgreSQL's
    deadlock detector looks at only after 10 s: the server's transaction is the victim."""
    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        await connection.execute("SET deadlock_timeout = '10s'")
        transaction = connection.transaction()
        await transaction.start()
        try:
            yield connection
        finally:
            await transaction.rollback()
    finally:
        await connection.close(timeout=10)


#: a lock statement and its arguments
Lock = tuple[str, tuple[Any, ...]]


async def deadlocked(database_url: str, request: Awaitable[httpx.Response],
                     first: Lock = (_LOCK_LEVELS, (FIRST,)),
                     second: Lock = (_LOCK_LEVELS, (SECOND,))) -> httpx.Response:
    """Send ``request`` into a deadlock over the rows ``first`` and ``second`` lock (the
    server locks them in this order; by default the stock levels of FIRST and SECOND),
    which the server's transaction loses; the request's answer."""
    async with other_client(database_url) as client:
        await client.execute(second[0], *second[1], timeout=10)
        sent = asyncio.ensure_future(request)
        deadline = time.monotonic() + 20
        while not await client.fetchval(_SERVER_WAITING, timeout=10):
            assert not sent.done(), sent.result().text
            assert time.monotonic() < deadline, "the server never waited for the lock"
            await asyncio.sleep(0.02)
        # the server holds FIRST and waits for SECOND: asking for FIRST closes the circle;
        # PostgreSQL aborts the server's transaction and this lock is granted
        await client.execute(first[0], *first[1], timeout=30)
    return await asyncio.wait_for(sent, 30)


def place_mutation() -> dict[str, Any]:
    """A GraphQL ``placeOrder`` of FIRST and SECOND, paid with the sandbox."""
    query = ("mutation($a: AddressInput!) { placeOrder(channel: \"web\", lines: ["
             f"{{sku: \"{FIRST}\", quantity: 1}}, {{sku: \"{SECOND}\", quantity: 1}}], "
             "email: \"erika@example.com\", shippingAddress: $a, shippingMethod: "
             "\"flat_rate:standard\", payment: {gateway: \"sandbox\", token: "
             "\"tok_success\"}) { id } }")
    address = {"name": BERLIN["name"], "line1": BERLIN["line1"], "city": BERLIN["city"],
               "postalCode": BERLIN["postal_code"], "country": BERLIN["country"]}
    return {"query": query, "variables": {"a": address}}


def logged(logs: str, event: str) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    return [line for line in lines if line.get("event") == event]


def warnings_of(logs: str) -> list[dict[str, Any]]:
    return logged(logs, RETRY_WARNING)


async def retries_counted(api: Api, sqlstate: str) -> float:
    """The metrics' count of units of work run again after ``sqlstate``."""
    text = (await api.client.get("/metrics", headers=api.admin)).text
    sample = f'ordnung_transaction_retries_total{{sqlstate="{sqlstate}"}} '
    return sum(float(line[len(sample):]) for line in text.splitlines()
               if line.startswith(sample))


async def reserved(api: Api) -> dict[str, int]:
    totals: dict[str, int] = {}
    for (sku, _), (_, held) in (await api.levels()).items():
        totals[sku] = totals.get(sku, 0) + held
    return totals


@needs_postgres
async def test_a_placement_whose_transaction_lost_a_deadlock_is_placed_once(
        api: Api, database_url: str) -> None:
    shop = await api.storefront()
    before = await reserved(api)
    counted = await retries_counted(api, "40P01")
    body = order_body((FIRST, 1), (SECOND, 1))
    with captured_logs("INFO") as logs:
        response = await deadlocked(database_url, api.post_order(
            shop, body, idempotency_key="lost-a-deadlock"))
    order = expect(response, 201)
    assert order["status"] != "cancelled"
    assert await api.order_count() == 1
    # the key names the order the committed try made, not the one the lost try began
    repeat = await api.place_order(shop, body, idempotency_key="lost-a-deadlock")
    assert repeat["id"] == order["id"]
    assert await api.order_count() == 1
    after = await reserved(api)
    assert after[FIRST] == before[FIRST] + 1 and after[SECOND] == before[SECOND] + 1
    moves = await api.engine.inventory.movements(order_id=order["id"])
    assert sorted(m.sku for m in moves) == [FIRST, SECOND]
    assert await api.engine.inventory.ledger_discrepancies() == []
    # the gateway was asked once, after the transaction that finally committed
    assert [call[0] for call in api.plugin("sandbox").calls] == ["authorize"]
    retried = warnings_of(logs.getvalue())
    assert [w["sqlstate"] for w in retried] == ["40P01"], logs.getvalue()
    assert await retries_counted(api, "40P01") == counted + 1


@needs_postgres
async def test_a_cart_placement_that_lost_a_deadlock_at_the_cart_is_placed_once(
        api: Api, database_url: str) -> None:
    """The placement locks the cart's stock, then marks the cart placed; an operator's
    session holding the cart and then asking for the stock makes the mark the victim.
    The placement runs again from the cart as the request read it."""
    shop = await api.storefront()
    cid, headers = await api.ready_cart(shop, FIRST)
    before = await reserved(api)
    cart_row = "SELECT id FROM carts WHERE id = $1 FOR UPDATE"
    with captured_logs("INFO") as logs:
        response = await deadlocked(database_url, api.client.post(
            f"/carts/{cid}/order", json={"payment": {"gateway": "sandbox",
                                                     "token": "tok_success"}},
            headers=headers), second=(cart_row, (cid,)))
    order = expect(response, 201)
    assert await api.order_count() == 1
    cart = expect(await api.client.get(f"/carts/{cid}", headers=headers), 200)
    assert (cart["status"], cart["order_id"]) == ("placed", order["id"])
    assert (await reserved(api))[FIRST] == before[FIRST] + 1
    assert await api.engine.inventory.ledger_discrepancies() == []
    assert [w["sqlstate"] for w in warnings_of(logs.getvalue())] == ["40P01"]


@needs_postgres
async def test_a_cancellation_whose_transaction_lost_a_deadlock_releases_once(
        api: Api, database_url: str) -> None:
    shop = await api.storefront()
    before = await reserved(api)
    order = await api.place_order(shop, order_body((FIRST, 2), (SECOND, 3)))
    with captured_logs("INFO") as logs:
        response = await deadlocked(database_url, api.client.post(
            f"/orders/{order['id']}/cancel", json={"reason": "changed my mind"},
            headers=api.admin))
    cancelled = expect(response, 200)
    assert cancelled["status"] == "cancelled"
    assert await reserved(api) == before
    moves = await api.engine.inventory.movements(order_id=order["id"])
    assert sorted((m.sku, m.kind) for m in moves) == [
        (FIRST, "release"), (FIRST, "reserve"), (SECOND, "release"), (SECOND, "reserve")]
    assert await api.engine.inventory.ledger_discrepancies() == []
    timeline = expect(await api.client.get(f"/orders/{order['id']}/timeline",
                                           headers=api.admin), 200)
    assert [e["kind"] for e in timeline["items"]].count("order.cancelled") == 1
    voids = [call for call in api.plugin("sandbox").calls if call[0] == "void"]
    assert len(voids) == 1
    assert [w["sqlstate"] for w in warnings_of(logs.getvalue())] == ["40P01"]


@needs_postgres
async def test_a_stock_count_whose_transaction_lost_a_deadlock_is_counted_once(
        api: Api, database_url: str) -> None:
    """An admin's count of a sliced level locks its slices in order; an operator's SQL
    session holding the second and then asking for the first makes the count the
    victim. It is run again, and the ledger holds one count."""
    expect(await api.client.put("/inventory/slices", json={
        "sku": FIRST, "location_id": "wh1", "slices": 2}, headers=api.admin), 200)
    slice_of = "SELECT id FROM stock_levels WHERE sku = $1 AND location_id = $2 " \
               "AND slice = $3 FOR UPDATE"
    before = (await api.levels())[FIRST, "wh1"]
    with captured_logs("INFO") as logs:
        response = await deadlocked(database_url, api.client.post(
            "/inventory/counts", json={"sku": FIRST, "location_id": "wh1",
                                       "counted": before[0] + 7}, headers=api.admin),
            first=(slice_of, (FIRST, "wh1", 0)), second=(slice_of, (FIRST, "wh1", 1)))
    expect(response, 201)
    assert (await api.levels())[FIRST, "wh1"] == (before[0] + 7, before[1])
    counts = [m for m in await api.engine.inventory.movements(sku=FIRST)
              if m.kind == "count"]
    assert [m.on_hand_delta for m in counts] == [7]
    assert await api.engine.inventory.ledger_discrepancies() == []
    assert [w["sqlstate"] for w in warnings_of(logs.getvalue())] == ["40P01"]


@needs_postgres
async def test_a_deadlock_on_every_try_answers_409_and_leaves_nothing(
        database_url: str) -> None:
    # one try in all (``ORDNUNG_TRANSACTION_TRIES=1``): the one deadlock spends them
    async with api_client(database_url, transaction_tries=1) as api:
        shop = await api.storefront()
        before = await api.levels()
        counted = await retries_counted(api, "40P01")
        body = order_body((FIRST, 1), (SECOND, 1))
        with captured_logs("INFO") as logs:
            response = await deadlocked(database_url, api.post_order(
                shop, body, idempotency_key="lost-every-try"))
        problem = expect_problem(response, 409, "conflict")
        assert problem["retry"] is True
        assert response.headers["Retry-After"] == "1"
        assert await api.order_count() == 0
        assert await api.levels() == before
        assert await api.engine.inventory.ledger_discrepancies() == []
        assert api.plugin("sandbox").calls == []
        # the configured number was honoured: not run again, given up after one try
        assert warnings_of(logs.getvalue()) == []
        assert [line["tries"] for line in logged(logs.getvalue(), GIVE_UP_WARNING)] == [1]
        assert await retries_counted(api, "40P01") == counted
        # nothing was changed, so the key was given back: the same request goes through
        placed = await api.place_order(shop, body, idempotency_key="lost-every-try")
        assert await api.order_count() == 1 and placed["status"] != "cancelled"


@needs_postgres
async def test_the_configured_tries_are_the_tries_a_unit_of_work_gets(
        database_url: str) -> None:
    """Two tries: the deadlock that one try could not survive costs a second, then the
    placement goes through; the warning names the configured number."""
    async with api_client(database_url, transaction_tries=2) as api:
        shop = await api.storefront()
        counted = await retries_counted(api, "40P01")
        with captured_logs("INFO") as logs:
            response = await deadlocked(database_url, api.post_order(
                shop, order_body((FIRST, 1), (SECOND, 1))))
        expect(response, 201)
        assert await api.order_count() == 1
        retried = warnings_of(logs.getvalue())
        assert [(w["attempt"], w["tries"]) for w in retried] == [(2, 2)], logs.getvalue()
        assert logged(logs.getvalue(), GIVE_UP_WARNING) == []
        assert await retries_counted(api, "40P01") == counted + 1


@needs_postgres
async def test_graphql_answers_the_exhausted_retries_as_rest_does(database_url: str) -> None:
    async with api_client(database_url, transaction_tries=1) as api:
        shop = await api.storefront()
        response = await deadlocked(database_url, api.client.post(
            "/graphql", json=place_mutation(), headers=shop))
        body = expect(response, 200)
        assert len(body["errors"]) == 1, body
        extensions = body["errors"][0]["extensions"]
        assert extensions["type"] == PROBLEM_BASE + "conflict", body
        assert extensions["status"] == 409 and extensions["retry"] is True, body
        assert await api.order_count() == 0


@pytest.mark.parametrize("tries", [1, 3])
async def test_a_unit_of_work_is_run_as_often_as_configured_and_no_more(
        make_engine: Any, tries: int) -> None:
    """Every caller of ``retrying`` on the engine's database gets the configured tries
    (here a unit that loses every time, on either database)."""
    engine: Engine = await make_engine(transaction_tries=tries)
    runs = 0

    async def unit() -> None:
        nonlocal runs
        runs += 1
        await engine.db.fetch("SELECT 1 AS one")
        raise TransientConflict("40P01")

    with pytest.raises(TransientConflict):
        await in_transaction(engine.db, unit)
    assert runs == tries


@pytest.mark.parametrize("raw, tries", [("1", 1), (" 6 ", 6)])
def test_transaction_tries_is_read_from_its_variable(
        monkeypatch: pytest.MonkeyPatch, raw: str, tries: int) -> None:
    monkeypatch.setenv("ORDNUNG_TRANSACTION_TRIES", raw)
    assert EngineConfig.from_env().transaction_tries == tries
    monkeypatch.delenv("ORDNUNG_TRANSACTION_TRIES")
    assert EngineConfig.from_env().transaction_tries == retrying.TRIES == 4


@pytest.mark.parametrize("raw", ["0", "-2", "two", "2.5"])
def test_a_transaction_tries_that_cannot_work_is_refused_naming_the_variable(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path,
        raw: str) -> None:
    monkeypatch.setenv("ORDNUNG_TRANSACTION_TRIES", raw)
    with pytest.raises(ConfigError) as refused:
        EngineConfig.from_env()
    assert refused.value.setting == "ORDNUNG_TRANSACTION_TRIES"
    # a server (or any command) does not start with it, and says why in one line
    monkeypatch.setenv("ORDNUNG_DATABASE_URL", "sqlite:///never-created.db")
    monkeypatch.chdir(tmp_path)
    assert main(["housekeeping"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ordnung housekeeping: ORDNUNG_TRANSACTION_TRIES: "), err
    assert list(tmp_path.iterdir()) == []


@needs_sqlite
async def test_sqlite_writer_that_never_gets_the_write_lock_is_unavailable_not_500(
        database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """SQLite's equivalent: another process holds the one write lock for longer than the
    lock timeout. REST and GraphQL both answer database-unavailable, never internal."""
    monkeypatch.setenv("ORDNUNG_SQLITE_LOCK_TIMEOUT_SECONDS", "0.3")
    unlimited = WriteLimits(writes="off", writes_per_key="off", writes_per_address="off")
    async with api_client(database_url, rate_limits=unlimited) as api:
        shop = await api.storefront()
        holder = sqlite3.connect(database_url.removeprefix("sqlite:///"),
                                 isolation_level=None, timeout=10)
        try:
            holder.execute("BEGIN IMMEDIATE")
            rest = await api.post_order(shop, order_body((FIRST, 1), (SECOND, 1)))
            graphql = await api.client.post("/graphql", json=place_mutation(), headers=shop)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        expect_problem(rest, 503, "database-unavailable")
        assert rest.headers["Retry-After"] == "2"
        body = expect(graphql, 200)
        extensions = body["errors"][0]["extensions"]
        assert extensions["type"] == PROBLEM_BASE + "database-unavailable", body
        assert extensions["status"] == 503, body
        assert await api.order_count() == 0
