"""Faults of the database under a real ``ordnung serve``: a frozen server, a restarted
one, and two servers on one database whose clocks disagree by minutes.

- A frozen PostgreSQL (every process SIGSTOPped) is answered ``503
  database-unavailable`` with ``Retry-After`` within the configured timeouts, never a
  hang and never a 500; ``/health/live`` stays 200, ``/health/ready`` says 503.
- After PostgreSQL is restarted (fast and immediate), service returns within about a
  second of the database accepting connections again: the first dead pooled
  connection renews the whole pool, so the stale ones do not fail a request each.
- A server whose own clock is 150 s ahead takes no lease another server holds: its
  outbox sweeper leaves alone the events the other server is still delivering, and the
  times it stamps (on orders, payments in flight ...) are the database's.

The frozen and restarted databases are a private PostgreSQL cluster each test starts
itself (``tests.private_pg``); the clock test runs on the configured test database.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from ordnung.core.persistence.database import Database
from tests.api_support import PROBLEM_BASE, bearer, expect, order_body
from tests.private_pg import private_postgres
from tests.serve_support import ADMIN_KEY, Server, running_server

PLUGINS = "sandbox,manual,flat_rate,table_tax,channel_log"
#: seconds for each database timeout of the server under test (connect, acquire, statement)
TIMEOUT_S = 2.0
TIMEOUTS = {"ORDNUNG_DB_CONNECT_TIMEOUT_S": str(TIMEOUT_S),
            "ORDNUNG_DB_ACQUIRE_TIMEOUT_S": str(TIMEOUT_S),
            "ORDNUNG_DB_STATEMENT_TIMEOUT_S": str(TIMEOUT_S),
            "ORDNUNG_PLUGINS": PLUGINS, "ORDNUNG_IDEMPOTENCY_LEASE_SECONDS": "2"}
#: the longest a request may take while the database is frozen: the waits of one
#: request (a statement, then the acquire of the next) and the machine's slack
FROZEN_ANSWER_WITHIN_S = 3 * TIMEOUT_S + 2.0
SKEW_S = 150
#: Debian's libfaketime, wherever the machine's architecture puts it
FAKETIME = next((str(p) for p in sorted(Path("/usr/lib").glob("*/faketime/libfaketimeMT.so.1"))),
                "/usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1")
TEST_DB = os.environ.get("ORDNUNG_TEST_DB", "sqlite")


async def seed(client: httpx.AsyncClient) -> dict[str, str]:
    """A channel, a location, a product with stock; returns a storefront key's headers."""
    admin = bearer(ADMIN_KEY)
    expect(await client.put("/channels/web", json={"id": "web", "name": "Web"},
                            headers=admin), 200)
    expect(await client.put("/inventory/locations/wh1", json={
        "id": "wh1", "name": "wh1", "priority": 1}, headers=admin), 200)
    expect(await client.put("/catalogue/products/shirt", json={
        "id": "shirt", "name": "Shirt", "variants": [{
            "sku": "SHIRT-M", "product_id": "shirt", "name": "Shirt M",
            "barcode": "4006381333931", "prices": {"EUR": 2500}, "weight_grams": 200}]},
        headers=admin), 200)
    expect(await client.post("/inventory/adjustments", json={
        "sku": "SHIRT-M", "location_id": "wh1", "delta": 100_000, "kind": "receive"},
        headers=admin), 201)
    issued = expect(await client.post("/admin/keys", json={
        "kind": "storefront", "channel": "web", "name": "faults"}, headers=admin), 201)
    return bearer(issued["secret"])


def place(n: int) -> dict[str, Any]:
    return order_body(("SHIRT-M", 1), email=f"db{n}@example.com")


def assert_unavailable(response: httpx.Response) -> None:
    assert response.status_code == 503, (response.request.url.path, response.text)
    body = response.json()
    assert body["type"] == PROBLEM_BASE + "database-unavailable", body
    assert int(response.headers["Retry-After"]) >= 1


@contextlib.contextmanager
def stopped(server: Server) -> Iterator[None]:
    """``server`` SIGSTOPped for the block (a server that stalls): its supervisor first,
    which would otherwise replace the workers that stop answering its health checks."""
    workers = server.workers()
    assert workers, "no workers to stop"
    pids = [server.process.pid, *workers]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        for pid in reversed(pids):
            os.kill(pid, signal.SIGCONT)


# --------------------------------------------------------------------------- frozen


async def test_a_frozen_database_is_answered_503_within_the_timeout(tmp_path: Path) -> None:
    with private_postgres() as pg, running_server(pg.url, tmp_path, workers=1,
                                                  env=TIMEOUTS) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60.0) as client:
            shop = await seed(client)
            order = expect(await client.post("/orders", json=place(0), headers=shop), 201)
            admin = bearer(ADMIN_KEY)

            async def timed(method: str, path: str, **kw: Any) -> tuple[float, httpx.Response]:
                started = time.monotonic()
                response = await client.request(method, path, **kw)
                return time.monotonic() - started, response

            pg.freeze()
            try:
                answers = await asyncio.gather(
                    timed("GET", f"/orders/{order['id']}", headers=admin),
                    timed("POST", "/orders", json=place(1), headers=shop),
                    timed("GET", "/health"),
                    timed("GET", "/health/ready"),
                    timed("GET", "/health/live"),
                    timed("POST", "/orders", json=place(4),
                          headers={**shop, "Idempotency-Key": "frozen-4"}))
                # a second round, on a pool whose connections were found frozen
                again = await asyncio.gather(
                    timed("GET", f"/orders/{order['id']}", headers=admin),
                    timed("POST", "/orders", json=place(2), headers=shop))
            finally:
                pg.thaw()

            print("frozen: answered in", [f"{t:.2f} s" for t, _ in [*answers, *again]])
            for took, response in [*answers, *again]:
                assert took < FROZEN_ANSWER_WITHIN_S, (response.request.url.path, took)
                assert response.status_code != 500, response.text
            (_, read), (_, write), (_, health), (_, ready), (_, live), (_, keyed) = answers
            for response in (read, write, health, keyed, *(r for _, r in again)):
                assert_unavailable(response)
            assert ready.status_code == 503 and ready.headers["Retry-After"]
            assert ready.json()["database"]["reachable"] is False
            assert expect(live, 200) == {"status": "ok"}

            # thawed: served again at once
            deadline = time.monotonic() + 5.0
            while True:
                response = await client.get(f"/orders/{order['id']}", headers=admin)
                assert response.status_code in (200, 503), response.text
                if response.status_code == 200 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
            expect(response, 200)
            body = expect(await client.get("/health/ready"), 200)
            assert body["status"] == "ready" and body["migrations"]["pending"] == []
            assert body["outbox"]["backlog"] >= 0 and body["database"]["reachable"]
            expect(await client.post("/orders", json=place(3), headers=shop), 201)

            # the keyed request that met the frozen database may be retried: at most once
            # its lease runs out (its INSERT may have reached the database after all), it
            # is placed once, and a repeat replays that order
            keyed_again = {**shop, "Idempotency-Key": "frozen-4"}
            deadline = time.monotonic() + 10.0
            while True:
                response = await client.post("/orders", json=place(4), headers=keyed_again)
                assert response.status_code in (201, 409), response.text
                if response.status_code == 201 or time.monotonic() > deadline:
                    break
                assert response.headers["Retry-After"]
                await asyncio.sleep(0.5)
            placed = expect(response, 201)
            replay = expect(await client.post("/orders", json=place(4), headers=keyed_again),
                            201)
            assert replay["id"] == placed["id"]


async def test_health_tells_the_process_from_its_dependencies(database_url: str,
                                                              tmp_path: Path) -> None:
    with running_server(database_url, tmp_path, workers=1,
                        env={"ORDNUNG_PLUGINS": PLUGINS}) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30.0) as client:
            assert expect(await client.get("/health/live"), 200) == {"status": "ok"}
            body = expect(await client.get("/health/ready"), 200)
            assert body["status"] == "ready" and body["database"]["reachable"] is True
            assert body["migrations"] == {"pending": []}
            assert body["outbox"] == {"backlog": 0}
            assert expect(await client.get("/health"), 200)["status"] == "ok"

            # a migration this code has and the database lacks: not ready, still alive
            db = Database(database_url, pool_size=1)
            async with db.session():
                rows = await db.fetch("SELECT name FROM migration ORDER BY name DESC")
                last = rows[0]["name"]
                await db.run("DELETE FROM migration WHERE name = {}", last)
            try:
                response = await client.get("/health/ready")
                assert response.status_code == 503, response.text
                assert response.headers["Retry-After"]
                body = response.json()
                assert body["status"] == "not-ready" and body["migrations"]["pending"] == [last]
                assert expect(await client.get("/health/live"), 200) == {"status": "ok"}
            finally:
                async with db.session():
                    await db.run("INSERT INTO migration (name, app_name, ran_on) "
                                 "VALUES ({}, 'ordnung', CURRENT_TIMESTAMP)", last)
            assert expect(await client.get("/health/ready"), 200)["status"] == "ready"


# --------------------------------------------------------------------------- restart


@pytest.mark.parametrize("mode", ["fast", "immediate"])
async def test_service_returns_at_once_after_the_database_restarts(
        tmp_path: Path, mode: str) -> None:
    with private_postgres() as pg, running_server(pg.url, tmp_path, workers=1,
                                                  env=TIMEOUTS) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=60.0) as client:
            shop = await seed(client)
            order = expect(await client.post("/orders", json=place(0), headers=shop), 201)
            admin = bearer(ADMIN_KEY)
            path = f"/orders/{order['id']}"
            # open several pooled connections: each goes stale with the restart
            for _ in range(3):
                await asyncio.gather(*(client.get(path, headers=admin) for _ in range(8)))

            seen: list[tuple[float, int, str]] = []
            up_at: list[float] = []
            done = asyncio.Event()

            async def load(worker: int) -> None:
                n = 0
                while not done.is_set():
                    n += 1
                    if worker == 0:
                        response = await client.post("/orders", json=place(100 + n),
                                                     headers=shop)
                    else:
                        response = await client.get(path, headers=admin)
                    seen.append((time.monotonic(), response.status_code, response.text))
                    await asyncio.sleep(0.02)

            def restart() -> None:
                pg.restart(mode)  # returns once the database accepts connections
                up_at.append(time.monotonic())

            workers = [asyncio.create_task(load(i)) for i in range(4)]
            await asyncio.sleep(0.5)
            await asyncio.to_thread(restart)
            await asyncio.sleep(4.0)
            done.set()
            await asyncio.gather(*workers)

    assert up_at, "the database did not come back"
    errors = [(status, text) for _, status, text in seen if status == 500]
    assert not errors, errors[:3]
    assert all(status in (200, 201, 503) for _, status, _ in seen), \
        {status for _, status, _ in seen}
    after = [(t, status) for t, status, _ in seen if t >= up_at[0]]
    first_ok = next((t for t, status in after if status in (200, 201)), None)
    assert first_ok is not None, "no success after the restart"
    print(f"restart {mode}: first success {first_ok - up_at[0]:.2f} s after the database "
          f"accepted connections; {sum(s == 503 for _, s, _ in seen)} answers 503 while down")
    assert first_ok - up_at[0] < 2.0, f"first success {first_ok - up_at[0]:.2f} s after up"
    late = [status for t, status in after if t > first_ok + 0.5 and status != 200
            and status != 201]
    assert not late, f"failures after service returned: {late}"


# --------------------------------------------------------------------------- clocks


async def outbox(database_url: str) -> list[dict[str, Any]]:
    db = Database(database_url, pool_size=1)
    async with db.session():
        return await db.fetch("SELECT id, attempts, dispatched_at FROM outbox ORDER BY id")


def clock_ahead(how: str) -> dict[str, str]:
    """Environment that puts a server's clock ``SKEW_S`` ahead: the test setting (the
    process's clock as the engine reads it), or libfaketime (every clock call of the
    process, the C library's included; the monotonic clock is left alone)."""
    if how == "setting":
        return {"ORDNUNG_TEST_CLOCK_SKEW_S": str(SKEW_S)}
    if TEST_DB != "postgres":
        pytest.skip("with SQLite the database's clock is each process's own: a process "
                    "whose system clock is wrong reads the wrong time from it too")
    if not Path(FAKETIME).exists():
        pytest.skip("libfaketime is not installed (apt-get install faketime)")
    return {"LD_PRELOAD": FAKETIME, "FAKETIME": f"+{SKEW_S}s",
            "FAKETIME_DONT_FAKE_MONOTONIC": "1"}


@pytest.mark.parametrize("how", ["setting", "faketime"])
async def test_a_server_with_its_clock_ahead_steals_no_lease(database_url: str,
                                                            tmp_path: Path, how: str) -> None:
    env = {"ORDNUNG_PLUGINS": PLUGINS}
    ahead = {**env, **clock_ahead(how)}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with running_server(database_url, tmp_path / "a", env=env) as first:
        async with httpx.AsyncClient(base_url=first.base_url, timeout=60.0) as client:
            shop = await seed(client)
            with running_server(database_url, tmp_path / "b", env=ahead) as second:
                assert "clock differs from the database's" in second.logs()
                held = 0
                for n in range(5):
                    # the first server delivers the order's events, and is stopped before
                    # it marks them delivered: their lease is held (30 s) while the other
                    # server's sweeper runs
                    expect(await client.post("/orders", json=place(n), headers=shop), 201)
                    with stopped(first):
                        rows = await outbox(database_url)
                        undelivered = [r for r in rows if r["dispatched_at"] is None]
                        if not undelivered:
                            continue  # marked before the stop: try again
                        held += 1
                        await asyncio.sleep(11.0)  # two rounds of every sweeper
                        taken = [r for r in await outbox(database_url)
                                 if r["id"] in {u["id"] for u in undelivered}
                                 and r["attempts"] != 1]
                        assert not taken, f"a held lease was taken over: {taken}"
                    break
                assert held, "no event was caught in delivery"
                # the server ahead stamps what it does with the database's time, so its
                # leases and ages in documents (an authorization in flight ...) agree too
                async with httpx.AsyncClient(base_url=second.base_url, timeout=60.0) as other:
                    before = datetime.now(UTC)
                    order = expect(await other.post("/orders", json=place(99), headers=shop),
                                   201)
                    after = datetime.now(UTC)
                stamped = datetime.fromisoformat(order["created_at"])
                assert before - timedelta(seconds=2) <= stamped <= after + timedelta(seconds=2), (
                    before, stamped, after)
            # the first server marks what it delivered; nothing was delivered twice
            for _ in range(50):
                rows = await outbox(database_url)
                if all(r["dispatched_at"] is not None for r in rows):
                    break
                await asyncio.sleep(0.2)
            assert rows and all(r["dispatched_at"] is not None for r in rows), rows
            assert all(r["attempts"] == 1 for r in rows), rows


async def test_a_pooled_connection_comes_back_with_no_transaction_open(
        database_url: str) -> None:
    """The pool takes no reset step on release (the engine keeps no session state); a
    connection a failure left inside a transaction must still not serve again with it
    open, so the next user neither sees nor commits its writes."""
    if not database_url.startswith("postgres"):
        pytest.skip("the pool's release step is PostgreSQL's")
    db = Database(database_url, pool_size=1)
    await db.start()
    try:
        pool = db.engine.pool
        async with pool.acquire() as connection:
            await connection.execute("CREATE TABLE pool_probe (n int)")
        async with pool.acquire() as connection:  # the pool's only connection
            await connection.execute("BEGIN")
            await connection.execute("INSERT INTO pool_probe VALUES (1)")
        async with pool.acquire() as connection:
            assert connection.is_in_transaction() is False
            await connection.execute("INSERT INTO pool_probe VALUES (2)")
            assert await connection.fetchval("SELECT count(*) FROM pool_probe") == 1
            await connection.execute("DROP TABLE pool_probe")
    finally:
        await db.stop()
