"""The reconciliation job finishes placements a dead process left with an authorization
in flight: it learns the outcome from the gateway by the same idempotency key, or voids
the authorization and cancels the placement; either way the stock, the ledger, the
timeline and the placement's Idempotency-Key end up telling the same story.

The engine-level tests make the process "die" inside the gateway call (an exception
nothing catches, after or before the sandbox carried the authorization out). The
server-level tests at the end SIGKILL a real ``ordnung serve`` while the sandbox's
answer is on its way and let a fresh server finish the placement.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from ordnung.core import hookimpl
from ordnung.core.domain.orders import Order
from ordnung.core.domain.payments import GatewayResult, OperationLookup, PaymentRequest
from ordnung.core.engine import Engine
from ordnung.core.errors import PaymentDeclined
from ordnung.core.persistence.database import Database
from ordnung.core.persistence.leases import JobLeases
from ordnung.core.services.reconcile import NEVER_RECEIVED, UNKNOWN
from ordnung.plugins.payments.sandbox import SandboxGateway
from tests.api_support import (
    PROBLEM_BASE,
    api_client,
    bearer,
    expect,
    expect_problem,
    order_body,
)
from tests.serve_support import ADMIN_KEY, Server, running_server, stop
from tests.support import builtin_plugins, order_request, seed_shop


class ProcessDied(BaseException):
    """Stands for the process dying while it waits for the gateway (nothing catches it)."""


class DiesAfterGateway(SandboxGateway):
    """The sandbox carries the first authorization out, and its answer never arrives."""

    died = False

    @hookimpl
    def ordnung_authorize(self, request: PaymentRequest) -> GatewayResult:
        result = super().ordnung_authorize(request)
        if not self.died:
            self.died = True
            raise ProcessDied
        assert isinstance(result, GatewayResult)
        return result


class DiesBeforeGateway(SandboxGateway):
    """The first authorization never reaches the sandbox."""

    died = False

    @hookimpl
    def ordnung_authorize(self, request: PaymentRequest) -> GatewayResult:
        if not self.died:
            self.died = True
            raise ProcessDied
        result = super().ordnung_authorize(request)
        assert isinstance(result, GatewayResult)
        return result


async def interrupted(make_engine: Any, gateway: type[SandboxGateway], token: str,
                      settings: dict[str, Any] | None = None
                      ) -> tuple[Engine, SandboxGateway, Order]:
    """An engine whose placement (key ``died``, two SHIRT-M) died in the gateway call."""
    engine: Engine = await make_engine(
        plugins=[(gateway, "sandbox", settings or {}), *builtin_plugins()[1:]])
    await seed_shop(engine)
    with pytest.raises(ProcessDied):
        await engine.orders.place(order_request(("SHIRT-M", 2), token=token),
                                  idempotency_key="died")
    [order] = await engine.orders.list()
    assert (order.status, order.payments[0].in_flight) == ("placed", "authorize")
    assert await held(engine) == 2
    return engine, engine.host.pm.get_plugin("sandbox"), order


async def reconcile(engine: Engine) -> dict[str, int]:
    """A round that takes everything in flight for lost (SQLite's clock counts in
    milliseconds: let one pass first)."""
    await asyncio.sleep(0.01)
    return await engine.reconcile.run_once(grace_s=0)


async def held(engine: Engine) -> int:
    return sum(lv.reserved for lv in await engine.inventory.levels(["SHIRT-M"]))


async def reconciled(engine: Engine, order_id: str) -> list[dict[str, Any]]:
    return [dict(e.data) for e in await engine.orders.timeline(order_id)
            if e.kind == "payment.reconciled"]


async def test_within_the_grace_period_the_job_leaves_the_placement_alone(
        make_engine: Any) -> None:
    engine, _, order = await interrupted(make_engine, DiesAfterGateway, "tok_success")
    assert await engine.reconcile.run_once() == {}  # 120 s by default
    assert (await engine.orders.get(order.id)).payments[0].in_flight == "authorize"
    assert await reconciled(engine, order.id) == []


async def test_the_age_of_an_authorization_is_judged_on_the_database_clock(
        make_engine: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The placing server's clock runs an hour behind: by that clock its authorization
    went out an hour ago; by the database's it is young, and is left to run."""
    import ordnung.core.services.orders as orders_module

    behind = orders_module.utcnow() - timedelta(hours=1)
    monkeypatch.setattr(orders_module, "utcnow", lambda: behind)
    engine, _, order = await interrupted(make_engine, DiesAfterGateway, "tok_success")
    monkeypatch.undo()
    assert (await engine.orders.get(order.id)).payments[0].in_flight_since == behind
    assert await engine.reconcile.run_once() == {}
    assert (await engine.orders.get(order.id)).payments[0].in_flight == "authorize"
    assert await reconcile(engine) == {"resumed": 1}  # once it is old on the database clock


async def test_an_approved_authorization_is_learnt_and_the_placement_goes_on(
        make_engine: Any) -> None:
    engine, gateway, order = await interrupted(make_engine, DiesAfterGateway, "tok_success")
    assert await reconcile(engine) == {"resumed": 1}
    done = await engine.orders.get(order.id)
    payment = done.payments[0]
    assert (done.status, payment.status, payment.in_flight) == ("processing", "authorized", "")
    assert payment.authorized == done.totals.total
    assert payment.reference == gateway.reference_for(payment.id)
    assert [c[0] for c in gateway.calls] == ["authorize"]  # looked up, not sent again
    [event] = await reconciled(engine, order.id)
    assert (event["via"], event["found"], event["outcome"]) == ("lookup", True, "approved")
    assert await held(engine) == 2
    assert await engine.inventory.ledger_discrepancies() == []
    # the placement's key answers the finished order; nothing more reaches the gateway
    again = await engine.orders.place(order_request(("SHIRT-M", 2), token="tok_success"),
                                      idempotency_key="died")
    assert (again.id, again.status) == (order.id, "processing")
    assert await reconcile(engine) == {}
    assert [c[0] for c in gateway.calls] == ["authorize"]
    # ... and it is captured once
    captured = await engine.payments.capture(order.id)
    assert captured.payments[0].captured == done.totals.total
    assert gateway.charge_for(payment.id).captured == done.totals.total  # type: ignore[union-attr]


async def test_a_declined_authorization_is_learnt_and_the_placement_holds_nothing(
        make_engine: Any) -> None:
    engine, _, order = await interrupted(make_engine, DiesAfterGateway, "tok_decline")
    assert await reconcile(engine) == {"declined": 1}
    done = await engine.orders.get(order.id)
    assert (done.status, done.payments[0].status) == ("cancelled", "failed")
    assert done.payments[0].failure_reason == "insufficient funds"
    assert await held(engine) == 0
    assert await engine.inventory.ledger_discrepancies() == []
    [event] = await reconciled(engine, order.id)
    assert (event["via"], event["outcome"]) == ("lookup", "declined")
    with pytest.raises(PaymentDeclined) as declined:
        await engine.orders.place(order_request(("SHIRT-M", 2), token="tok_decline"),
                                  idempotency_key="died")
    assert declined.value.extra["order_id"] == order.id


async def test_an_authorization_the_gateway_never_received_fails_the_placement(
        make_engine: Any) -> None:
    engine, gateway, order = await interrupted(make_engine, DiesBeforeGateway, "tok_success")
    assert await reconcile(engine) == {"declined": 1}
    done = await engine.orders.get(order.id)
    assert (done.status, done.payments[0].status) == ("cancelled", "failed")
    assert done.payments[0].failure_reason == NEVER_RECEIVED
    assert gateway.calls == []  # nothing was charged, nothing needs voiding
    assert await held(engine) == 0
    assert await engine.inventory.ledger_discrepancies() == []
    [event] = await reconciled(engine, order.id)
    assert (event["via"], event["found"], event["outcome"]) == ("lookup", False, "declined")


async def test_without_lookups_the_authorization_is_voided_and_the_stock_released(
        make_engine: Any) -> None:
    engine, gateway, order = await interrupted(make_engine, DiesAfterGateway, "tok_success",
                                               {"lookups": False})
    assert await reconcile(engine) == {"voided": 1}
    done = await engine.orders.get(order.id)
    payment = done.payments[0]
    assert (done.status, payment.status, payment.in_flight) == ("cancelled", "voided", "")
    assert payment.failure_reason == UNKNOWN
    # the gateway had approved the hold the shop never heard of: it is given back
    assert [c[0] for c in gateway.calls] == ["authorize", "void"]
    charge = gateway.charge_for(payment.id)
    assert charge is not None and (charge.status, charge.captured) == ("voided", 0)
    assert await held(engine) == 0
    assert await engine.inventory.ledger_discrepancies() == []
    [event] = await reconciled(engine, order.id)
    assert (event["via"], event["outcome"]) == ("void", "voided")
    # a late answer of the lost call is not recorded; a repeat is told the decline
    applied, _ = await engine.payments.record_authorization(
        order.id, payment.id, 1, GatewayResult(outcome="approved"), one_shot=True)
    assert not applied
    with pytest.raises(PaymentDeclined) as declined:
        await engine.orders.place(order_request(("SHIRT-M", 2), token="tok_success"),
                                  idempotency_key="died")
    assert declined.value.extra["order_id"] == order.id
    assert await reconcile(engine) == {}
    assert [c[0] for c in gateway.calls] == ["authorize", "void"]


class UnreachableForLookups(DiesAfterGateway):
    """The gateway approved, and cannot be reached to say so afterwards."""

    @hookimpl
    def ordnung_lookup_operation(self, operation: str,
                                 request: PaymentRequest) -> OperationLookup | None:
        raise ConnectionError("gateway unreachable")


async def test_a_gateway_that_cannot_tell_gets_the_authorization_voided(
        make_engine: Any) -> None:
    engine, gateway, order = await interrupted(make_engine, UnreachableForLookups,
                                               "tok_success")
    assert await reconcile(engine) == {"voided": 1}
    done = await engine.orders.get(order.id)
    assert (done.status, done.payments[0].status) == ("cancelled", "voided")
    assert [c[0] for c in gateway.calls] == ["authorize", "void"]
    assert await held(engine) == 0


async def test_an_order_cancelled_while_its_authorization_was_lost_gets_the_hold_voided(
        make_engine: Any) -> None:
    """Staff cancelled the stuck order (stock released); the gateway had approved."""
    engine, gateway, order = await interrupted(make_engine, DiesAfterGateway, "tok_success")
    cancelled = await engine.orders.cancel(order.id, reason="stuck", actor="staff")
    assert cancelled.status == "cancelled" and await held(engine) == 0
    assert [c[0] for c in gateway.calls] == ["authorize"]  # in flight: not voided yet
    assert await reconcile(engine) == {"resumed": 1}
    done = await engine.orders.get(order.id)
    assert (done.status, done.payments[0].status) == ("cancelled", "voided")
    assert [c[0] for c in gateway.calls] == ["authorize", "void"]
    assert gateway.charge_for(done.payments[0].id).status == "voided"  # type: ignore[union-attr]
    assert await held(engine) == 0
    assert await engine.inventory.ledger_discrepancies() == []


async def test_a_later_authorization_that_is_lost_fails_alone(make_engine: Any) -> None:
    """A payment started after placement (not the placement's own) fails without
    cancelling the order."""
    engine: Engine = await make_engine(
        plugins=[(DiesBeforeGateway, "sandbox", {}), *builtin_plugins()[1:]])
    await seed_shop(engine)
    order = await engine.orders.place(order_request(("SHIRT-M", 1), token=None))
    with pytest.raises(ProcessDied):
        await engine.payments.authorize(order.id, gateway="sandbox", token="tok_success")
    assert await reconcile(engine) == {"declined": 1}
    done = await engine.orders.get(order.id)
    assert (done.status, done.payments[0].status) == ("placed", "failed")
    assert await held(engine) == 1


async def test_one_process_at_a_time_holds_the_job(database_url: str,
                                                   make_engine: Any) -> None:
    engine: Engine = await make_engine()
    leases = JobLeases(engine.db)
    assert await leases.take("job", "a", 0.5)
    assert await leases.take("job", "a", 0.5)  # renewed
    assert not await leases.take("job", "b", 0.5)
    await asyncio.sleep(0.8)  # the holder died: its lease runs out on the database clock
    assert await leases.take("job", "b", 0.5)
    assert not await leases.take("job", "a", 0.5)
    await leases.release("job", "b")
    assert await leases.take("job", "a", 0.5)
    # the engine's own job does not run while another process holds it
    assert await leases.take("reconcile", "elsewhere", 60)
    assert await reconcile(engine) == {}


# -- cancelling voids every open authorization (over HTTP) ----------------------------------


async def test_cancelling_an_order_voids_its_authorization_with_the_gateway(
        database_url: str) -> None:
    async with api_client(database_url) as api:
        shop = await api.storefront("web")
        placed = await api.place_order(shop, order_body(("SHIRT-M", 2)))
        assert placed["payments"][0]["status"] == "authorized"
        before = await api.available("SHIRT-M")
        cancelled = expect(await api.client.post(f"/orders/{placed['id']}/cancel",
                                                 json={"reason": "customer called"},
                                                 headers=api.admin), 200)
        assert cancelled["status"] == "cancelled"
        assert [p["status"] for p in cancelled["payments"]] == ["voided"]
        gateway = api.plugin("sandbox")
        payment_id = placed["payments"][0]["id"]
        assert [c[:2] for c in gateway.calls] == [("authorize", payment_id),
                                                  ("void", payment_id)]
        assert gateway.charge_for(payment_id).status == "voided"
        assert await api.available("SHIRT-M") == before + 2
        kinds = [e["kind"] for e in expect(await api.client.get(
            f"/orders/{placed['id']}/timeline", headers=api.admin), 200)["items"]]
        assert "payment.voided" in kinds


# -- a real server killed with an authorization in flight -----------------------------------

PLUGINS = "sandbox,manual,flat_rate,table_tax"
SKU = "RECON-TEE"


async def seed(client: httpx.AsyncClient) -> dict[str, str]:
    admin = bearer(ADMIN_KEY)
    expect(await client.put("/channels/web", json={"id": "web", "name": "Web"},
                            headers=admin), 200)
    expect(await client.put("/inventory/locations/main", json={
        "id": "main", "name": "main", "priority": 1}, headers=admin), 200)
    expect(await client.put(f"/catalogue/products/{SKU.lower()}", json={
        "id": SKU.lower(), "name": SKU, "variants": [{
            "sku": SKU, "product_id": SKU.lower(), "name": SKU, "barcode": "4000000999001",
            "prices": {"EUR": 2500}, "weight_grams": 300}]}, headers=admin), 200)
    expect(await client.post("/inventory/adjustments", json={
        "sku": SKU, "location_id": "main", "delta": 10, "kind": "receive"}, headers=admin), 201)
    issued = expect(await client.post("/admin/keys", json={
        "kind": "storefront", "channel": "web", "name": "recon"}, headers=admin), 201)
    return bearer(issued["secret"])


def server_env(journal: Path, **sandbox: Any) -> dict[str, str]:
    """Both servers run the job every half second (its lease lasts a few rounds)."""
    return {"ORDNUNG_PLUGINS": PLUGINS,
            "ORDNUNG_PLUGIN_SETTINGS": json.dumps({"sandbox": {"journal": str(journal),
                                                               **sandbox}}),
            "ORDNUNG_IDEMPOTENCY_LEASE_SECONDS": "1", "ORDNUNG_RECONCILE_INTERVAL_S": "0.5"}


async def wait_for(what: str, check: Any, within: float = 30.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        result = await check()
        if result:
            return result
        assert time.monotonic() < deadline, f"{what}: not within {within:.0f} s"
        await asyncio.sleep(0.2)


async def kill_mid_authorization(database_url: str, workdir: Path, journal: Path
                                 ) -> tuple[dict[str, str], str]:
    """A server whose sandbox carries the authorization out and answers 60 s later; the
    whole server is SIGKILLed in between. Returns the storefront key and the order id."""
    fresh_dir(workdir)
    env = server_env(journal, authorize_delay=60)
    with running_server(database_url, workdir, workers=1, env=env) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=90.0) as client:
            shop = await seed(client)
            body = order_body((SKU, 3), email="kill@example.com")
            placing = asyncio.create_task(client.post(
                "/orders", json=body, headers={**shop, "Idempotency-Key": "killed"}))

            async def in_flight() -> str | None:
                listed = expect(await client.get("/orders", headers=bearer(ADMIN_KEY)),
                                200)["items"]
                if listed and journal_lines(journal):
                    return str(listed[0]["id"])
                return None

            order_id: str = await wait_for("the authorization in flight", in_flight)
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait(10)
            with pytest.raises(httpx.TransportError):
                await placing
    return shop, order_id


async def finish_on_fresh_server(database_url: str, workdir: Path, journal: Path,
                                 shop: dict[str, str], order_id: str, **sandbox: Any
                                 ) -> tuple[dict[str, Any], list[dict[str, Any]],
                                            httpx.Response, Server]:
    fresh_dir(workdir)
    env = {**server_env(journal, **sandbox), "ORDNUNG_RECONCILE_GRACE_S": "1"}
    with running_server(database_url, workdir, workers=1, env=env) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30.0) as client:
            admin = bearer(ADMIN_KEY)

            async def finished() -> dict[str, Any] | None:
                order = expect(await client.get(f"/orders/{order_id}", headers=admin), 200)
                return None if order["payments"][0]["in_flight"] else order

            order = await wait_for("the reconciliation", finished)
            timeline = expect(await client.get(f"/orders/{order_id}/timeline",
                                               headers=admin), 200)["items"]
            body = order_body((SKU, 3), email="kill@example.com")
            retried = await client.post("/orders", json=body,
                                        headers={**shop, "Idempotency-Key": "killed"})
            again = await client.post("/orders", json=body,
                                      headers={**shop, "Idempotency-Key": "killed"})
            assert (again.status_code, again.json()) == (retried.status_code, retried.json())
            if order["status"] == "processing":  # captured once, however often asked
                path = f"/orders/{order_id}/payments/capture"
                order["captured"] = expect(await client.post(path, json={}, headers=admin),
                                           200)["payments"][0]["captured"]
                assert (await client.post(path, json={}, headers=admin)).status_code in (
                    409, 422)
            levels = expect(await client.get("/inventory/levels", params={"sku": SKU},
                                             headers=admin), 200)
            order["levels"] = levels
        stop(server.process)
    return order, timeline, retried, server


def journal_lines(journal: Path) -> list[dict[str, Any]]:
    """The operations the sandbox wrote down (the gateway's side of the books)."""
    if not journal.exists():
        return []
    return [json.loads(line) for line in journal.read_text().splitlines()]


def fresh_dir(path: Path) -> Path:
    path.mkdir()
    return path


async def pending_keys_and_ledger(database_url: str) -> tuple[list[str], list[Any]]:
    """Idempotency-Key records not done; stock levels that disagree with the ledger."""
    async with Database(database_url).session() as db:
        keys = [r["key"] for r in await db.fetch(
            "SELECT key FROM idempotency_records WHERE state <> 'done'")]
        levels = {(r["sku"], r["location_id"]): (int(r["on_hand"]), int(r["reserved"]))
                  for r in await db.fetch(
                      "SELECT sku, location_id, on_hand, reserved FROM stock_levels")}
        ledger: dict[tuple[str, str], tuple[int, int]] = {}
        for m in await db.fetch("SELECT sku, location_id, on_hand_delta, reserved_delta "
                                "FROM stock_movements"):
            on_hand, reserved = ledger.get((m["sku"], m["location_id"]), (0, 0))
            ledger[(m["sku"], m["location_id"])] = (on_hand + int(m["on_hand_delta"]),
                                                    reserved + int(m["reserved_delta"]))
    return keys, sorted(set(levels.items()) ^ set(ledger.items()))


async def test_a_server_killed_mid_authorization_is_finished_by_a_fresh_one(
        database_url: str, tmp_path: Path) -> None:
    journal = tmp_path / "gateway.jsonl"
    shop, order_id = await kill_mid_authorization(database_url, tmp_path / "a", journal)
    order, timeline, retried, server = await finish_on_fresh_server(
        database_url, tmp_path / "b", journal, shop, order_id)
    assert (order["status"], order["payments"][0]["status"]) == ("processing", "authorized")
    assert order["payments"][0]["authorized"] == order["totals"]["total"]
    [event] = [e for e in timeline if e["kind"] == "payment.reconciled"]
    assert (event["actor"], event["data"]["via"], event["data"]["outcome"]) == (
        "system:reconcile", "lookup", "approved")
    # the gateway carried out the authorization the killed server sent, and one capture
    assert [line["key"].split(":", 1)[0] for line in journal_lines(journal)] == [
        "authorize", "capture"]
    assert order["captured"] == order["totals"]["total"]
    # the placement's key answers the finished order, for good
    assert retried.status_code == 201, retried.text
    assert (retried.json()["id"], retried.json()["status"]) == (order_id, "processing")
    assert await pending_keys_and_ledger(database_url) == ([], [])
    [level] = order["levels"]
    assert (level["on_hand"], level["reserved"]) == (10, 3)
    assert "Traceback" not in server.logs(), server.logs()


async def test_a_server_killed_mid_authorization_gets_it_voided_without_lookups(
        database_url: str, tmp_path: Path) -> None:
    journal = tmp_path / "gateway.jsonl"
    shop, order_id = await kill_mid_authorization(database_url, tmp_path / "a", journal)
    order, timeline, retried, server = await finish_on_fresh_server(
        database_url, tmp_path / "b", journal, shop, order_id, lookups=False)
    assert (order["status"], order["payments"][0]["status"]) == ("cancelled", "voided")
    [event] = [e for e in timeline if e["kind"] == "payment.reconciled"]
    assert (event["data"]["via"], event["data"]["outcome"]) == ("void", "voided")
    assert [line["key"].split(":", 1)[0] for line in journal_lines(journal)] == [
        "authorize", "void"]
    # the placement's key answers the decline, naming the order, for good
    problem = expect_problem(retried, 402, "payment-declined")
    assert problem["order_id"] == order_id
    assert problem["type"] == PROBLEM_BASE + "payment-declined"
    assert await pending_keys_and_ledger(database_url) == ([], [])
    [level] = order["levels"]
    assert (level["on_hand"], level["reserved"]) == (10, 0)
    assert "Traceback" not in server.logs(), server.logs()


def test_sandboxes_sharing_a_journal_share_one_gateway_memory(tmp_path: Path) -> None:
    """What one process's sandbox carried out, another's knows: a lookup finds it, a
    repeat of its key gets the same answer and charges nothing more."""
    settings = SandboxGateway.Settings(journal=str(tmp_path / "gateway.jsonl"))
    first, second = SandboxGateway(settings), SandboxGateway(settings)
    request = PaymentRequest(payment_id="pay_1", order_id="ord_1", order_number="1001",
                             amount=5000, currency="EUR", token="tok_success",
                             idempotency_key="pay_1:authorize:1")
    answer = first.ordnung_authorize(request)
    assert isinstance(answer, GatewayResult) and answer.outcome == "approved"
    found = second.ordnung_lookup_operation("authorize", request)
    assert found is not None and (found.found, found.result) == (True, answer)
    assert second.ordnung_authorize(request) == answer
    assert second.calls == []  # answered from the journal, not carried out again
    other = msgspec.structs.replace(request, idempotency_key="pay_1:authorize:2")
    missing = second.ordnung_lookup_operation("authorize", other)
    assert missing is not None and not missing.found
    # without lookups, the sandbox is a gateway that cannot tell
    blind = SandboxGateway(SandboxGateway.Settings(journal=settings.journal, lookups=False))
    assert blind.ordnung_lookup_operation("authorize", request) is None
