"""Housekeeping: what the engine keeps only for a while is deleted once its time is over.

Rate-limit counters, Idempotency-Key records, customer sessions and one-time tokens and
abandoned carts would otherwise grow with every request. Each test makes rows old the
way time would (moving their times back in the test's own database), runs one pass
(``Engine.run_housekeeping``) and checks what a client sees: what is over is gone, what
is live still works.
"""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ordnung.api.rate_limits import WriteLimits
from ordnung.core import Engine, hookimpl
from ordnung.core.domain.common import clock_offset, set_clock_offset, utcnow
from ordnung.core.persistence.carts import active_hour
from ordnung.core.persistence.rate_limits import DatabaseStorage, Hit
from ordnung.core.services import housekeeping
from ordnung.core.services.idempotency import Busy, Proceed
from tests.api_support import BERLIN, CART_TOKEN, Api, api_client, bearer, expect, expect_problem
from tests.support import builtin_plugins, paid_order, seed_shop
from tests.test_edge_accounts import accounts_api, register, sign_in

LONG_AGO = timedelta(days=400)


async def count(engine: Engine, table: str) -> int:
    rows = await engine.db.fetch(f"SELECT COUNT(*) AS n FROM {table}")
    return int(rows[0]["n"])


async def age(engine: Engine, table: str, column: str, where: str = "", *args: Any) -> None:
    """Move ``column`` of the rows of ``table`` (``where``: which) far into the past."""
    await engine.db.run(f"UPDATE {table} SET {column} = {{}}" + (f" WHERE {where}" if where
                                                               else ""),
                        utcnow() - LONG_AGO, *args)


async def add_line(api: Api, cart_id: str, headers: dict[str, str]) -> int:
    response = await api.client.post(f"/carts/{cart_id}/lines", json={"sku": "MUG"},
                                     headers=headers)
    return response.status_code


async def test_rate_limit_counters_go_once_their_window_is_over(database_url: str) -> None:
    limits = WriteLimits(writes="3/minute", writes_per_key="off", writes_per_address="off")
    async with api_client(database_url, rate_limits=limits) as api:
        shop = await api.storefront("web")
        over = (await api.new_cart(shop))["id"]
        over_headers = api.holding(shop, over)
        for _ in range(3):
            assert await add_line(api, over, over_headers) == 200
        assert await add_line(api, over, over_headers) == 429
        # the window of every counter so far is over
        windows = await count(api.engine, "rate_limits")
        assert windows >= 1
        await age(api.engine, "rate_limits", "expires_at")

        live = (await api.new_cart(shop))["id"]
        live_headers = api.holding(shop, live)
        for _ in range(3):
            assert await add_line(api, live, live_headers) == 200

        done = await api.engine.run_housekeeping()
        assert done["rate_limits"] == windows
        assert await count(api.engine, "rate_limits") >= 1  # the live cart's counter
        # the live counter still counts: the fourth write in its window is refused ...
        assert await add_line(api, live, live_headers) == 429
        # ... and the cart whose window is over writes again, counted from one
        assert await add_line(api, over, over_headers) == 200
        assert (await api.engine.run_housekeeping())["rate_limits"] == 0


async def test_an_idempotency_key_replays_within_its_retention_and_is_new_after(
        database_url: str) -> None:
    async with api_client(database_url) as api:
        shop = await api.storefront("web")
        first = await api.post_order(shop, idempotency_key="order-7")
        order = expect(first, 201)
        # within the retention a repeat replays the same order
        assert (await api.engine.run_housekeeping())["idempotency_records"] == 0
        again = await api.post_order(shop, idempotency_key="order-7")
        assert expect(again, 201)["id"] == order["id"]
        assert again.headers["idempotent-replayed"] == "true"

        # a day later the record is gone, and the same key is a new request
        await age(api.engine, "idempotency_records", "created_at")
        assert (await api.engine.run_housekeeping())["idempotency_records"] == 1
        later = await api.post_order(shop, idempotency_key="order-7")
        assert expect(later, 201)["id"] != order["id"]
        assert "idempotent-replayed" not in later.headers
        assert await api.order_count() == 2


async def test_an_idempotency_record_whose_attempt_runs_is_kept(make_engine: Any) -> None:
    engine: Engine = await make_engine()
    begun = await engine.idempotency.begin("caller:slow-request", "f" * 64)
    assert isinstance(begun, Proceed)
    await age(engine, "idempotency_records", "created_at")

    assert (await engine.run_housekeeping())["idempotency_records"] == 0
    # the attempt still holds its key: a repeat is told to wait, not run twice
    assert isinstance(await engine.idempotency.begin("caller:slow-request", "f" * 64), Busy)


async def test_a_retention_of_zero_keeps_idempotency_records(database_url: str) -> None:
    async with api_client(database_url, idempotency_retention_s=0) as api:
        shop = await api.storefront("web")
        order = await api.place_order(shop, idempotency_key="kept")
        await age(api.engine, "idempotency_records", "created_at")
        assert "idempotency_records" not in await api.engine.run_housekeeping()
        again = await api.post_order(shop, idempotency_key="kept")
        assert expect(again, 201)["id"] == order["id"]


async def test_expired_sessions_and_tokens_go_and_live_ones_work(database_url: str) -> None:
    async with accounts_api(database_url) as (api, mailbox):
        shop = await api.storefront("web")
        expired = (await register(api, shop))["session"]
        signed_out = expect(await sign_in(api, shop), 201)
        expect(await api.client.delete("/accounts/sessions/current",
                                       headers=bearer(signed_out["access_token"])), 204)
        expect(await api.client.post("/accounts/password-reset",
                                     json={"email": "erika@example.com"}, headers=shop), 202)
        old_link = await mailbox.next("password_reset", "erika@example.com")
        # the first session's refresh token ran out long ago, the second was signed out
        # long ago, and the links sent so far (verification, reset) expired
        await age(api.engine, "customer_sessions", "refresh_expires_at", "id = {}",
                  expired["session_id"])
        await age(api.engine, "customer_sessions", "revoked_at", "id = {}",
                  signed_out["session_id"])
        await age(api.engine, "account_tokens", "expires_at")
        live = expect(await sign_in(api, shop), 201)
        expect(await api.client.post("/accounts/password-reset",
                                     json={"email": "erika@example.com"}, headers=shop), 202)
        new_link = await mailbox.next("password_reset", "erika@example.com", seen=1)

        done = await api.engine.run_housekeeping()
        assert (done["sessions_expired"], done["sessions_revoked"], done["account_tokens"]) == (
            1, 1, 2)
        assert await count(api.engine, "customer_sessions") == 1
        # what is gone answers as it did; what lives works
        expect_problem(await api.client.post("/accounts/sessions/refresh", json={
            "refresh_token": expired["refresh_token"]}, headers=shop), 401,
            "invalid-credentials")
        expect_problem(await api.client.post("/accounts/password-reset/confirm", json={
            "token": old_link.token, "password": "staple gun orbit 42"}, headers=shop), 401,
            "invalid-credentials")
        expect(await api.client.get("/customers/me", headers=bearer(live["access_token"])),
               200)
        expect(await api.client.post("/accounts/password-reset/confirm", json={
            "token": new_link.token, "password": "staple gun orbit 42"}, headers=shop), 204)


async def test_an_expired_customer_token_goes_and_a_live_one_works(database_url: str) -> None:
    async with api_client(database_url) as api:
        customer, old = await api.customer()
        await age(api.engine, "api_keys", "expires_at", "kind = {}", "customer")
        live = await api.customer_token(customer["id"])
        keys = await count(api.engine, "api_keys")

        assert (await api.engine.run_housekeeping())["customer_tokens"] == 1
        assert await count(api.engine, "api_keys") == keys - 1
        expect_problem(await api.client.get("/customers/me", headers=old), 401, "unauthorized")
        expect(await api.client.get("/customers/me", headers=live), 200)


async def test_an_abandoned_cart_goes_and_a_recent_one_stays(database_url: str) -> None:
    async with api_client(database_url) as api:
        shop = await api.storefront("web")
        abandoned, abandoned_headers = await api.ready_cart(shop)
        recent, recent_headers = await api.ready_cart(shop)
        placed = await api.placed_cart(shop)
        customer, me = await api.customer("kim@example.com")
        customers = (await api.new_cart(me, {"channel": "web"}))["id"]
        await age(api.engine, "carts", "active_at", "id IN ({}, {}, {})",
                  abandoned, placed, customers)

        done = await api.engine.run_housekeeping()
        assert (done["guest_carts"], done["placed_carts"]) == (2, 0)
        expect_problem(await api.client.get(f"/carts/{abandoned}", headers=abandoned_headers),
                       404, "not-found")
        expect_problem(await api.client.get(f"/carts/{placed}",
                                            headers=api.holding(shop, placed)),
                       404, "not-found")
        assert expect(await api.client.get(f"/carts/{recent}", headers=recent_headers),
                      200)["id"] == recent
        # a customer's open cart is theirs to come back to
        assert expect(await api.client.get(f"/carts/{customers}", headers=me),
                      200)["customer_id"] == customer["id"]
        # the recent cart still orders
        expect(await api.client.post(f"/carts/{recent}/order", json={
            "payment": {"gateway": "sandbox", "token": "tok_success"}},
            headers=recent_headers), 201)
        assert CART_TOKEN in recent_headers


async def test_a_customers_cart_that_became_an_order_goes_after_the_retention(
        database_url: str) -> None:
    async with api_client(database_url) as api:
        _, me = await api.customer("kim@example.com")
        placed = (await api.new_cart(me, {"channel": "web"}))["id"]
        expect(await api.client.post(f"/carts/{placed}/lines", json={"sku": "MUG"},
                                     headers=me), 200)
        expect(await api.client.put(f"/carts/{placed}/addresses", json={"shipping": BERLIN},
                                    headers=me), 200)
        expect(await api.client.put(f"/carts/{placed}/shipping-method",
                                    json={"method": "flat_rate:standard"}, headers=me), 200)
        order_id = expect(await api.client.post(f"/carts/{placed}/order", json={
            "payment": {"gateway": "sandbox", "token": "tok_success"}}, headers=me),
            201)["id"]
        await age(api.engine, "carts", "active_at")

        assert (await api.engine.run_housekeeping())["placed_carts"] == 1
        expect_problem(await api.client.get(f"/carts/{placed}", headers=me), 404,
                       "not-found")
        # the order it became is history, and stays
        assert (await api.order(order_id))["id"] == order_id


async def test_a_cart_goes_only_once_its_retention_ran_out_after_its_last_change(
        database_url: str) -> None:
    """A cart's row knows the hour of its last change, not the moment (a checkout's
    saves leave its indexes alone): housekeeping keeps a cart whose last change may
    still lie within the retention, and deletes one whose hour is a full hour past it."""
    retention = timedelta(days=2)
    async with api_client(database_url, cart_retention_s=retention.total_seconds()) as api:
        shop = await api.storefront("web")
        maybe, maybe_headers = await api.ready_cart(shop)
        idle, idle_headers = await api.ready_cart(shop)
        cutoff = utcnow() - retention  # a change before it is past the retention
        # the hour of the cutoff (give or take the test's minute): its cart may have
        # changed after the cutoff, and stays
        await age_to(api.engine, maybe, cutoff + timedelta(minutes=1))
        # the hour before: its cart changed before the cutoff, and goes
        await age_to(api.engine, idle, cutoff - timedelta(minutes=1) - HOUR)

        assert (await api.engine.run_housekeeping())["guest_carts"] == 1
        expect(await api.client.get(f"/carts/{maybe}", headers=maybe_headers), 200)
        expect_problem(await api.client.get(f"/carts/{idle}", headers=idle_headers), 404,
                       "not-found")


async def test_a_change_in_a_later_hour_moves_the_carts_hour(database_url: str) -> None:
    """The saves of one hour write the cart's row only; the first save of a later hour
    moves the hour housekeeping goes by (else a cart in use for days would go)."""
    async with api_client(database_url) as api:
        shop = await api.storefront("web")
        cart, headers = await api.ready_cart(shop)
        first = await active_at(api.engine, cart)
        assert await add_line(api, cart, headers) == 200
        if active_hour(utcnow()) == first:  # (unless the hour just turned)
            assert await active_at(api.engine, cart) == first

        later = clock_offset()
        set_clock_offset(later + 3 * HOUR.total_seconds())
        try:
            assert await add_line(api, cart, headers) == 200
            moved = active_hour(utcnow())
        finally:
            set_clock_offset(later)
        assert moved - first >= 3 * HOUR
        assert await active_at(api.engine, cart) == moved
        stored = expect(await api.client.get(f"/carts/{cart}", headers=headers), 200)
        assert active_hour(datetime.fromisoformat(stored["updated_at"])) == moved


HOUR = timedelta(hours=1)


async def age_to(engine: Engine, cart_id: str, at: datetime) -> None:
    """Make the cart's row say it was last changed in the hour of ``at``."""
    await engine.db.run("UPDATE carts SET active_at = {} WHERE id = {}", active_hour(at),
                        cart_id)


async def active_at(engine: Engine, cart_id: str) -> datetime:
    rows = await engine.db.fetch("SELECT active_at FROM carts WHERE id = {}", cart_id)
    value = rows[0]["active_at"]
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)


async def aged_counters(engine: Engine, n: int) -> None:
    """``n`` rate-limit counters whose window is over, as the limiter writes them."""
    await DatabaseStorage(engine.db).incr_many([Hit(f"test/{i}", 60) for i in range(n)])
    await age(engine, "rate_limits", "expires_at")


async def test_two_engines_on_one_database_delete_each_row_once(make_engine: Any) -> None:
    first: Engine = await make_engine()
    second: Engine = await make_engine()
    await aged_counters(first, 40)

    results = await asyncio.gather(first.run_housekeeping(), second.run_housekeeping())

    assert sum(r.get("rate_limits", 0) for r in results) == 40
    assert [bool(r) for r in results].count(True) == 1  # one holds the job's lease
    assert await count(first, "rate_limits") == 0


async def test_a_pass_deletes_in_bounded_batches(make_engine: Any,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    engine: Engine = await make_engine(housekeeping_batch=10)
    await aged_counters(engine, 25)

    with engine.db.tally() as tally:
        assert (await engine.run_housekeeping())["rate_limits"] == 25
    assert await count(engine, "rate_limits") == 0
    # three deletes of at most ten rows (10, 10, 5) took them, among the pass's statements
    assert tally.statements >= 3

    # a pass stops after its bound of statements per kind; the next goes on from there
    monkeypatch.setattr(housekeeping, "MAX_BATCHES", 2)
    await aged_counters(engine, 25)
    assert (await engine.run_housekeeping())["rate_limits"] == 20
    assert (await engine.run_housekeeping())["rate_limits"] == 5
    assert await count(engine, "rate_limits") == 0


async def test_the_background_maintenance_runs_the_pass(make_engine: Any) -> None:
    writer: Engine = await make_engine()
    await aged_counters(writer, 5)
    await DatabaseStorage(writer.db).incr_many([Hit("test/live", 60)])

    server: Engine = await make_engine(background_tasks=True)
    for _ in range(200):  # its first maintenance round runs a pass at once
        if await count(server, "rate_limits") == 1:
            break
        await asyncio.sleep(0.05)
    rows = await server.db.fetch("SELECT key FROM rate_limits")
    assert [r["key"] for r in rows] == ["test/live"]


class Unreachable:
    """Tells every event to a service that is down: each reaction fails, is recorded and
    retried later."""

    def __init__(self) -> None:
        self.down = True
        self.told: list[str] = []

    @hookimpl
    async def ordnung_on_event(self, event: Any) -> None:
        if self.down and event.kind == "order.placed":
            raise ConnectionError("the service is down")
        self.told.append(event.kind)


async def test_outbox_rows_go_once_done_and_a_failed_reaction_keeps_its_own(
        make_engine: Any) -> None:
    unreachable = Unreachable()
    plugins = [*builtin_plugins(), (unreachable, "forwarder")]
    keeper: Engine = await make_engine(plugins=plugins)
    await seed_shop(keeper)
    order = await paid_order(keeper, ("MUG", 1))
    await keeper.runtime.journal.flush_marks()
    rows = await count(keeper, "outbox")
    timeline = len(await keeper.runtime.journal.timeline(order.id))
    assert rows > 1

    # a week by default: the events of a moment ago keep their rows
    assert (await keeper.run_housekeeping())["outbox"] == 0
    await keeper.housekeeping.release()

    # with a retention of a millisecond every row its workers are done with goes: not
    # those the webhook worker has yet to take, nor the failed reaction's event, which
    # its retry needs
    sweeper: Engine = await make_engine(plugins=plugins, outbox_retention_s=0.001)
    await asyncio.sleep(0.01)
    untold = len(await sweeper.runtime.outbox.untold(100))
    assert untold >= 1
    assert (await sweeper.run_housekeeping())["outbox"] == rows - untold
    await sweeper.webhook_worker.fan_out()  # no endpoint: the events are told to none
    assert await sweeper.runtime.outbox.untold(100) == []
    assert (await sweeper.run_housekeeping())["outbox"] == untold - 1
    assert await count(sweeper, "outbox") == 1
    # the timeline is history and stays whole
    assert len(await sweeper.runtime.journal.timeline(order.id)) == timeline
    # staff still see what failed, and the retry delivers it once the service is back
    failed = await sweeper.runtime.journal.failures(resolved=False)
    assert [(f["kind"], f["order_id"]) for f in failed] == [("order.placed", order.id)]
    unreachable.down = False
    await sweeper.db.run("UPDATE reaction_failures SET next_attempt_at = {}",
                         utcnow() - timedelta(seconds=1))
    assert (await sweeper.run_maintenance())["retried_ok"] == 1
    assert "order.placed" in unreachable.told


async def test_a_cart_order_repeated_after_its_key_went_answers_the_same_order(
        database_url: str) -> None:
    async with api_client(database_url) as api:
        shop = await api.storefront("web")
        cid, headers = await api.ready_cart(shop)
        body = {"payment": {"gateway": "sandbox", "token": "tok_success"}}
        keyed = {**headers, "Idempotency-Key": "cart-order-1"}
        order = expect(await api.client.post(f"/carts/{cid}/order", json=body,
                                             headers=keyed), 201)
        # a day on, the key's record is gone but the cart (kept 30 days) still knows its
        # order: the repeat is a new request, and it answers that order, not a second one
        await age(api.engine, "idempotency_records", "created_at")
        done = await api.engine.run_housekeeping()
        assert (done["idempotency_records"], done["guest_carts"]) == (1, 0)
        again = expect(await api.client.post(f"/carts/{cid}/order", json=body,
                                             headers=keyed), 201)
        assert again["id"] == order["id"]
        assert await api.order_count() == 1


async def deleted_counted(api: Api) -> dict[str, float]:
    """``ordnung_housekeeping_deleted_total`` by kind, as ``GET /metrics`` answers it."""
    response = await api.client.get("/metrics", headers=api.admin)
    assert response.status_code == 200, response.text
    return {sample.labels["kind"]: sample.value
            for family in text_string_to_metric_families(response.text)
            for sample in family.samples
            if sample.name == "ordnung_housekeeping_deleted_total"}


async def test_metrics_count_what_each_pass_deleted_by_kind(database_url: str) -> None:
    async with api_client(database_url) as api:
        shop = await api.storefront("web")
        await api.new_cart(shop)
        await age(api.engine, "carts", "active_at")
        await aged_counters(api.engine, 7)
        before = await deleted_counted(api)

        done = await api.engine.run_housekeeping()
        assert done["guest_carts"] == 1 and done["rate_limits"] >= 7

        after = await deleted_counted(api)
        # every kind the pass looked at has its series, the ones it found nothing of too
        assert set(done) <= set(after)
        assert {kind: after[kind] - before.get(kind, 0.0) for kind in done} == done
        # a pass that finds nothing adds nothing
        assert not any((await api.engine.run_housekeeping()).values())
        assert await deleted_counted(api) == after


def run_housekeeping_command(database_url: str) -> subprocess.CompletedProcess[str]:
    """``ordnung housekeeping`` as an operator runs it, with nothing but the database's
    address from the environment (a developer's own ``ORDNUNG_*`` must not leak in)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORDNUNG_")}
    env["ORDNUNG_DATABASE_URL"] = database_url
    return subprocess.run([sys.executable, "-m", "ordnung.api.cli", "housekeeping"],
                          capture_output=True, text=True, env=env, timeout=120)


async def test_the_housekeeping_command_runs_one_pass_and_prints_it(make_engine: Any) -> None:
    server: Engine = await make_engine()
    # a running server's process holds the job: the command leaves the rows to it
    assert await server.run_housekeeping()
    await aged_counters(server, 3)
    held = await asyncio.to_thread(run_housekeeping_command, server.config.database_url)
    assert held.returncode == 0, held.stderr
    assert "nothing done: another process holds the housekeeping lease" in held.stdout
    assert await count(server, "rate_limits") == 3

    await server.housekeeping.release()  # the server stopped
    result = await asyncio.to_thread(run_housekeeping_command, server.config.database_url)
    assert result.returncode == 0, result.stderr
    assert "deleted 3 row(s) past their time:" in result.stdout
    assert re.search(r"^  rate_limits: +3$", result.stdout, re.MULTILINE), result.stdout
    assert re.search(r"^  guest_carts: +0$", result.stdout, re.MULTILINE), result.stdout
    assert await count(server, "rate_limits") == 0
    # the command gave the lease back: the next server's pass does not wait for it
    assert await server.run_housekeeping()
