"""Idempotency-Key under faults: what is kept, what is given back, and when.

The rule (README, "Idempotency-Key"): an answer is kept once the request has changed
something; a request refused before it changed anything — invalid input, out of
stock, a refused key, an internal error, a database blip — leaves its key free to be
retried at once. A key is held under a lease on the database's clock, renewed while
its request runs.
"""

from __future__ import annotations

import asyncio
import json
import os
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from ordnung.core import hookimpl
from ordnung.core.domain.payments import GatewayResult, PaymentRequest
from ordnung.core.persistence.plugin_store import PluginStore
from ordnung.core.services.payments import RESUME_AUTHORIZATION_AFTER, STALE_IN_FLIGHT
from ordnung.plugins.payments.sandbox import SandboxGateway
from tests.api_support import (
    Api,
    api_client,
    api_fixture,  # noqa: F401  (the ``api`` fixture)
    expect,
    expect_problem,
    order_body,
)
from tests.support import builtin_plugins

REPLAYED = "idempotent-replayed"
POSTGRES = os.environ.get("ORDNUNG_TEST_DB", "sqlite") == "postgres"


def authorizations(api: Api) -> list[tuple[str, str, int]]:
    return [c for c in api.plugin("sandbox").calls if c[0] == "authorize"]


async def pending_keys(api: Api) -> int:
    rows = await api.engine.db.fetch(
        "SELECT COUNT(*) AS n FROM idempotency_records WHERE state = 'pending'")
    return int(rows[0]["n"])


# ----------------------------------------------------------------- a database blip


class CutsTheDatabaseOnce:
    """Inside the first placement's transaction, the database connection goes away: on
    PostgreSQL every backend of the database is terminated (as a restart or a network
    blip does), on SQLite the transaction's connection is closed under it."""

    def __init__(self, database_url: str) -> None:
        self.database_url = database_url
        self.done = False

    @hookimpl
    async def ordnung_claim_resources(self, order: Any, store: PluginStore) -> None:
        if self.done:
            return
        self.done = True
        if store.db.is_postgres:
            killer = await asyncpg.connect(self.database_url)
            try:
                killed = await killer.fetchval(
                    "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()")
            finally:
                await killer.close()
            assert killed >= 1
        else:
            store.db.in_transaction().connection.raw.close()


async def test_a_database_blip_mid_request_leaves_the_key_free_at_once(
        database_url: str) -> None:
    fault = CutsTheDatabaseOnce(database_url)
    async with api_client(database_url,
                          plugins=[*builtin_plugins(), (fault, "fault")]) as api:
        shop = await api.storefront("web")
        body = order_body(("MUG", 2))
        first = await api.post_order(shop, body, idempotency_key="blip-1")
        assert fault.done
        assert first.status_code >= 500, first.text
        assert first.headers["content-type"].startswith("application/problem+json")
        assert await api.order_count() == 0 and await api.available("MUG") == 100
        # the retry comes at once: no 409 "still being processed", no two-minute wait
        retry = await api.post_order(shop, body, idempotency_key="blip-1")
        assert retry.status_code == 201, retry.text
        assert REPLAYED not in retry.headers
        again = await api.post_order(shop, body, idempotency_key="blip-1")
        assert again.headers[REPLAYED] == "true" and again.content == retry.content
        assert await api.order_count() == 1 and await api.available("MUG") == 98
        assert len(authorizations(api)) == 1
        assert await pending_keys(api) == 0


# ----------------------------------------------------------------- the same request


async def test_the_same_json_serialised_differently_is_the_same_request(api: Api) -> None:
    shop = await api.storefront("web")
    body = order_body(("SHIRT-M", 1), ("MUG", 1), metadata={"note": "Grüße", "n": "1"})
    compact = json.dumps(body, separators=(",", ":"), ensure_ascii=False)
    variants = [
        json.dumps(body, indent=4, ensure_ascii=True),  # whitespace, \u escapes
        json.dumps(dict(reversed(list(body.items()))), sort_keys=False),  # key order
        json.dumps(body, sort_keys=True).replace("/", "\\/"),  # escaped solidus
    ]
    headers = {**shop, "Idempotency-Key": "same-json", "Content-Type": "application/json"}
    first = await api.client.post("/orders", content=compact.encode(), headers=headers)
    assert first.status_code == 201, first.text
    for text in variants:
        again = await api.client.post("/orders", content=text.encode(), headers=headers)
        assert again.status_code == 201, again.text
        assert again.headers[REPLAYED] == "true" and again.content == first.content
    # a different value is a different request
    other = json.dumps({**body, "metadata": {"note": "Grüße", "n": "2"}})
    expect_problem(await api.client.post("/orders", content=other.encode(), headers=headers),
                   422, "idempotency-mismatch")
    assert await api.order_count() == 1 and len(authorizations(api)) == 1


# ----------------------------------------------------------------- concurrency and leases


class SlowGateway(SandboxGateway):
    """The sandbox, with an authorization that takes as long as the test wants."""

    def __init__(self, settings: SandboxGateway.Settings) -> None:
        super().__init__(settings)
        self.entered = asyncio.Event()
        self.release = asyncio.Event()

    @hookimpl
    async def ordnung_authorize(self, request: PaymentRequest) -> GatewayResult:
        self.entered.set()
        await self.release.wait()
        result: GatewayResult = super().ordnung_authorize(request)
        return result


def slow_plugins() -> list[Any]:
    return [(SlowGateway, "sandbox", {}), *builtin_plugins()[1:]]


async def test_a_duplicate_of_a_running_request_gets_409_with_retry_after(
        database_url: str) -> None:
    async with api_client(database_url, plugins=slow_plugins(),
                          idempotency_lease_seconds=0.6) as api:
        gateway = api.plugin("sandbox")
        shop = await api.storefront("web")
        body = order_body(("POSTER", 1))
        first = asyncio.create_task(api.post_order(shop, body, idempotency_key="slow-1"))
        await asyncio.wait_for(gateway.entered.wait(), 10)
        # the first request outlives several leases: it renews its own, so a duplicate
        # is never let through, however long it runs
        for _ in range(4):
            duplicate = await api.post_order(shop, body, idempotency_key="slow-1")
            problem = expect_problem(duplicate, 409, "conflict")
            assert "retry" in problem["detail"]
            assert int(duplicate.headers["retry-after"]) >= 1
            await asyncio.sleep(0.5)
        gateway.release.set()
        created = await first
        assert created.status_code == 201, created.text
        replay = await api.post_order(shop, body, idempotency_key="slow-1")
        assert replay.headers[REPLAYED] == "true" and replay.content == created.content
        assert await api.order_count() == 1 and len(authorizations(api)) == 1


# ----------------------------------------------------------------- what is kept


async def test_a_request_refused_before_it_changed_anything_can_be_retried_with_its_key(
        api: Api) -> None:
    shop = await api.storefront("web")
    good = order_body(("POSTER", 3))
    key = {"Idempotency-Key": "refused-first"}
    # invalid input (422), another channel (403), too large (413), a bad key (401),
    # a body that is not JSON (422): none of them is kept under the key
    expect_problem(await api.client.post("/orders", json={**good, "lines": "three"},
                                         headers={**shop, **key}), 422, "validation")
    expect_problem(await api.client.post("/orders", json={**good, "channel": "etsy"},
                                         headers={**shop, **key}), 403, "forbidden")
    expect_problem(await api.client.post("/orders", json={**good, "metadata": {
        "x": "y" * (2 * 1024 * 1024)}}, headers={**shop, **key}), 413, "request-too-large")
    expect_problem(await api.client.post("/orders", json=good, headers={
        "Authorization": "Bearer pk_nonsense", **key}), 401, "unauthorized")
    expect_problem(await api.client.post("/orders", content=b"{not json", headers={
        **shop, **key, "Content-Type": "application/json"}), 422, "validation")
    # out of stock (409): the stock comes, the same request with the same key goes through
    poster_stock = await api.available("POSTER")
    too_many = order_body(("POSTER", poster_stock + 1))
    expect_problem(await api.post_order(shop, too_many, idempotency_key="short"), 409,
                   "out-of-stock")
    expect(await api.client.post("/inventory/adjustments", json={
        "sku": "POSTER", "location_id": "wh1", "delta": 5, "kind": "receive",
        "reason": "delivery"}, headers=api.admin), 201)
    restocked = await api.post_order(shop, too_many, idempotency_key="short")
    assert restocked.status_code == 201 and REPLAYED not in restocked.headers, restocked.text

    placed = await api.post_order(shop, good, idempotency_key="refused-first")
    assert placed.status_code == 201 and REPLAYED not in placed.headers, placed.text
    assert await api.order_count() == 2
    assert await pending_keys(api) == 0


class CrashingGateway(SandboxGateway):
    """The sandbox, whose process dies in the middle of an operation the first time
    (a BaseException: nothing in the process answers it or cleans up after it)."""

    crash_on = "authorize"

    def __init__(self, settings: SandboxGateway.Settings) -> None:
        super().__init__(settings)
        self.crashed = False

    def _maybe_crash(self, operation: str) -> None:
        if operation == self.crash_on and not self.crashed:
            self.crashed = True
            raise ProcessDied(operation)

    @hookimpl
    def ordnung_authorize(self, request: PaymentRequest) -> GatewayResult:
        self._maybe_crash("authorize")
        result: GatewayResult = super().ordnung_authorize(request)
        return result

    @hookimpl
    def ordnung_capture(self, request: PaymentRequest) -> GatewayResult:
        self._maybe_crash("capture")
        result: GatewayResult = super().ordnung_capture(request)
        return result


class ProcessDied(BaseException):
    """Stands for the process dying: not an Exception, so no handler in the server catches it."""


async def send_dying(api: Api, path: str, body: dict[str, Any], headers: dict[str, str]
                     ) -> None:
    """Send a request whose handling dies (the in-process client sees the exception)."""
    with pytest.raises(ProcessDied):
        await api.client.post(path, json=body, headers=headers)


async def test_a_repeat_after_a_crash_past_the_order_answers_the_order(
        database_url: str) -> None:
    async with api_client(database_url,
                          plugins=[(CrashingGateway, "sandbox", {}),
                                   *builtin_plugins()[1:]]) as api:
        shop = await api.storefront("web")
        body = order_body(("SHIRT-M", 2))
        headers = {**shop, "Idempotency-Key": "crash-after-record"}
        await send_dying(api, "/orders", body, headers)
        assert await api.order_count() == 1  # the order was recorded before the crash
        # the repeat needs no wait: the key was left for it, and the engine's placement
        # record answers with the order the crashed attempt made
        repeat = await api.client.post("/orders", json=body, headers=headers)
        assert repeat.status_code == 201, repeat.text
        order = repeat.json()
        # its authorization is still in flight: the order is answered as it is, and that
        # answer is not kept, for the outcome is not final yet
        assert "in_flight" not in order["payments"][0]  # the storefront's view; staff's:
        assert (await api.order(order["id"]))["payments"][0]["in_flight"] == "authorize"
        assert await api.order_count() == 1
        assert await api.available("SHIRT-M") == 498
        # once the authorization has been in flight for long enough, a repeat finishes it
        # (the gateway gets the same idempotency key) and that answer is kept
        await age_in_flight_marks(api, RESUME_AUTHORIZATION_AFTER)
        final = await api.client.post("/orders", json=body, headers=headers)
        assert final.status_code == 201 and REPLAYED not in final.headers, final.text
        assert final.json()["id"] == order["id"]
        assert final.json()["status"] == "processing"
        again = await api.client.post("/orders", json=body, headers=headers)
        assert again.headers[REPLAYED] == "true" and again.content == final.content
        assert len(authorizations(api)) == 1
        assert await pending_keys(api) == 0


async def test_a_repeat_finds_the_order_of_a_cart_whose_placement_wrote_before_its_order(
        database_url: str) -> None:
    """A customer placing a guest cart adopts it first (a write of its own, before the
    placement's transaction, which proves the claim already): the placement still notes
    its order on the key's record, and the repeat after the crash answers that order
    and places no other."""
    async with api_client(database_url,
                          plugins=[(CrashingGateway, "sandbox", {}),
                                   *builtin_plugins()[1:]]) as api:
        shop = await api.storefront("web")
        cart_id, _ = await api.ready_cart(shop)
        _, signed_in = await api.customer()
        headers = {**api.holding(signed_in, cart_id), "Idempotency-Key": "adopt-and-place"}
        path = f"/carts/{cart_id}/order"
        body = {"payment": {"gateway": "sandbox", "token": "tok_success"}}
        await send_dying(api, path, body, headers)
        assert await api.order_count() == 1
        order_id = (await api.engine.db.fetch("SELECT id FROM orders"))[0]["id"]
        noted = await api.engine.db.fetch(
            "SELECT result FROM idempotency_records WHERE state = 'pending'")
        assert [row["result"] for row in noted] == [order_id]
        repeat = await api.client.post(path, json=body, headers=headers)
        assert repeat.status_code == 201, repeat.text
        assert await api.order_count() == 1
        assert repeat.json()["id"] == order_id


async def test_a_repeat_after_a_crash_that_cannot_be_resolved_is_refused_not_redone(
        database_url: str) -> None:
    CrashingCapture = type("CrashingCapture", (CrashingGateway,), {"crash_on": "capture"})
    async with api_client(database_url,
                          plugins=[(CrashingCapture, "sandbox", {}),
                                   *builtin_plugins()[1:]]) as api:
        shop = await api.storefront("web")
        order = await api.place_order(shop, order_body(("MUG", 2)))
        path = f"/orders/{order['id']}/payments/capture"
        headers = {**api.admin, "Idempotency-Key": "capture-crash"}
        await send_dying(api, path, {"amount": 500}, headers)
        # the dead attempt's capture is still marked in flight: that is what a repeat is
        # told for now (and it is not kept: it changes once the mark is cleared or stale)
        for _ in range(2):
            busy = await api.client.post(path, json={"amount": 500}, headers=headers)
            expect_problem(busy, 409, "conflict")
            assert REPLAYED not in busy.headers
        # once the mark is stale, a capture could start again; the repeat must not be it
        await age_in_flight_marks(api, STALE_IN_FLIGHT)
        repeat = await api.client.post(path, json={"amount": 500}, headers=headers)
        problem = expect_problem(repeat, 409, "idempotency-interrupted")
        assert "new key" in problem["detail"]
        again = await api.client.post(path, json={"amount": 500}, headers=headers)
        assert again.headers[REPLAYED] == "true" and again.content == repeat.content
        captures = [c for c in api.plugin("sandbox").calls if c[0] == "capture"]
        assert captures == []  # the crash came before the gateway captured anything
        assert (await api.order(order["id"]))["totals"]["paid"] == 0


async def age_in_flight_marks(api: Api, by: timedelta) -> None:
    """Make every payment's in-flight mark ``by`` older, as time would."""
    for row in await api.engine.db.fetch("SELECT id, data FROM orders"):
        order = json.loads(row["data"])
        for payment in order["payments"]:
            if payment["in_flight_since"]:
                since = datetime.fromisoformat(payment["in_flight_since"])
                payment["in_flight_since"] = (since - by).isoformat()
        await api.engine.db.run("UPDATE orders SET data = {} WHERE id = {}",
                                json.dumps(order), row["id"])


# ----------------------------------------------------------------- a worker that died


@pytest.mark.skipif(not POSTGRES, reason="holds a row lock from outside the server")
async def test_a_key_whose_worker_was_killed_is_free_after_one_lease(
        database_url: str, tmp_path: Any) -> None:
    """A real server's workers are SIGKILLed while one holds a key (its placement waits
    for a stock row the test has locked). After one lease the repeat goes through."""
    import signal
    import time

    from tests.serve_support import ADMIN_KEY, running_server

    lease = 1.5
    with running_server(database_url, tmp_path, "--demo", workers=2,
                        env={"ORDNUNG_IDEMPOTENCY_LEASE_SECONDS": str(lease)}) as server:
        admin = {"Authorization": f"Bearer {ADMIN_KEY}"}
        body = order_body(("MUG", 1))
        headers = {**admin, "Idempotency-Key": "killed-1"}
        locker = await asyncpg.connect(database_url)
        try:
            lock = locker.transaction()
            await lock.start()
            await locker.execute("SELECT * FROM stock_levels WHERE sku = 'MUG' FOR UPDATE")
            async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
                stuck = asyncio.create_task(client.post("/orders", json=body,
                                                        headers=headers))
                deadline = time.monotonic() + 20
                while not await locker.fetchval(
                        "SELECT COUNT(*) FROM pg_locks l JOIN pg_stat_activity a "
                        "ON a.pid = l.pid WHERE NOT l.granted "
                        "AND a.datname = current_database()"):
                    assert time.monotonic() < deadline, "the placement never got stuck"
                    await asyncio.sleep(0.05)
                workers = server.workers()
                assert workers
                for worker in workers:  # whichever holds the key dies with no clean-up
                    os.kill(worker, signal.SIGKILL)
                with pytest.raises(httpx.TransportError):
                    await stuck
            await lock.rollback()
        finally:
            await locker.close()
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
            started = time.monotonic()
            while True:  # the supervisor starts new workers; the key is pending until then
                try:
                    response = await client.post("/orders", json=body, headers=headers)
                except httpx.TransportError:
                    response = None
                if response is not None and response.status_code != 409:
                    break
                assert time.monotonic() - started < 30, response and response.text
                await asyncio.sleep(0.2)
            assert response.status_code == 201, response.text
            assert REPLAYED not in response.headers
            listed = (await client.get("/orders", headers=admin)).json()["items"]
            assert [o["id"] for o in listed] == [response.json()["id"]]


def test_the_lease_setting_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    from ordnung.core import EngineConfig
    from ordnung.core.errors import ConfigError

    monkeypatch.setenv("ORDNUNG_IDEMPOTENCY_LEASE_SECONDS", "2.5")
    assert EngineConfig.from_env().idempotency_lease_seconds == 2.5
    for wrong in ("soon", "0"):
        monkeypatch.setenv("ORDNUNG_IDEMPOTENCY_LEASE_SECONDS", wrong)
        with pytest.raises(ConfigError, match="ORDNUNG_IDEMPOTENCY_LEASE_SECONDS"):
            EngineConfig.from_env()
