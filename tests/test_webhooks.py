"""Webhooks through the HTTP API to a real receiver on 127.0.0.1 (SQLite and PostgreSQL).

The receiver verifies every message with the ``standardwebhooks`` verifier; the worker
rounds are driven by the test (``run_once``) so that retries are observable.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import itertools
import json
import os
import signal
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook, WebhookVerificationError

from ordnung.core.persistence import catalog as catalog_store
from ordnung.core.persistence import journal
from ordnung.core.services.webhook_guard import UnsafeUrl, pin_url
from tests.api_support import ADMIN_KEY, Api, api_client, bearer, expect, expect_problem, order_body
from tests.serve_support import ADMIN_KEY as SERVE_KEY
from tests.serve_support import free_port, running_server
from tests.test_crash_recovery import PLUGINS, seed

ADMIN = bearer(ADMIN_KEY)
ADMIN_SERVE = bearer(SERVE_KEY)


class Receiver:
    """An HTTP server recording each request; ``mode``: ok, fail (500), hang, or slow
    (answers 204 after 0.3 s)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.mode = "ok"
        self.received: list[tuple[dict[str, str], str]] = []
        self.server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["content-length"])).decode()
                receiver.received.append(({k.lower(): v for k, v in self.headers.items()},
                                          body))
                if receiver.mode == "hang":
                    time.sleep(2)
                elif receiver.mode == "slow":
                    time.sleep(0.3)
                code = 500 if receiver.mode == "fail" else 204
                self.send_response(code)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                """Quiet: the test reads what arrived, not the server's access log."""

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


@contextmanager
def receiving(port: int | None = None, start: bool = True) -> Iterator[Receiver]:
    receiver = Receiver(port)
    if start:
        receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()


@asynccontextmanager
async def webhook_api(database_url: str, **config: Any) -> AsyncIterator[Api]:
    settings = {"webhooks_allow_private": True, "webhooks_backoff_base_s": 0.05,
                "webhooks_timeout_s": 1.0, **config}
    async with api_client(database_url, **settings) as api:
        yield api


async def endpoint(api: Api, url: str, types: list[str] | None = None,
                   **extra: Any) -> dict[str, Any]:
    made = expect(await api.client.post("/admin/webhooks", headers=ADMIN, json={
        "url": url, "event_types": types or ["order.*", "payment.*"], **extra}), 201)
    assert made["secret"].startswith("whsec_")
    return dict(made)


async def rounds(api: Api, until: Any, limit: int = 60) -> None:
    """Worker rounds until ``until()`` (sync or async) holds."""
    for _ in range(limit):
        await api.engine.webhook_worker.run_once()
        done = until()
        if inspect.isawaitable(done):
            done = await done
        if done:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the condition was not met within the rounds")


def verified(secret: str, headers: dict[str, str], body: str) -> dict[str, Any]:
    result: dict[str, Any] = Webhook(secret).verify(body, {
        "webhook-id": headers["webhook-id"], "webhook-timestamp": headers["webhook-timestamp"],
        "webhook-signature": headers["webhook-signature"]})
    return result


async def test_endpoints_are_managed_by_staff_with_the_webhooks_scope(database_url: str) -> None:
    async with webhook_api(database_url) as api:
        made = await endpoint(api, "http://127.0.0.1:9/hook", description="erp")
        other = await api.admin_with("orders")
        expect_problem(await api.client.get("/admin/webhooks", headers=other), 403, "forbidden")
        listed = expect(await api.client.get("/admin/webhooks", headers=ADMIN), 200)["items"]
        assert [e["id"] for e in listed] == [made["id"]] and "secret" not in listed[0]
        changed = expect(await api.client.patch(f"/admin/webhooks/{made['id']}", headers=ADMIN,
                                                json={"event_types": ["availability.changed"],
                                                      "channels": ["web"],
                                                      "enabled": False}), 200)
        assert changed["event_types"] == ["availability.changed"]
        assert changed["channels"] == ["web"] and changed["enabled"] is False
        for body, kind in (({"event_types": ["nothing.*"]}, "validation"),
                           ({"event_types": []}, "validation"),
                           ({"url": "ftp://example.com/x"}, "webhook-url-refused"),
                           ({"colour": "red"}, "validation")):
            expect_problem(await api.client.patch(f"/admin/webhooks/{made['id']}",
                                                  headers=ADMIN, json=body), 422, kind)
        read = expect(await api.client.get(f"/admin/webhooks/{made['id']}", headers=ADMIN), 200)
        assert read["event_types"] == ["availability.changed"]
        rotated = expect(await api.client.post(f"/admin/webhooks/{made['id']}/rotate",
                                               headers=ADMIN), 200)
        assert rotated["secret"] != made["secret"] and rotated["signing_secrets"] == 2
        expect(await api.client.delete(f"/admin/webhooks/{made['id']}", headers=ADMIN), 204)
        expect_problem(await api.client.get(f"/admin/webhooks/{made['id']}", headers=ADMIN),
                       404, "not-found")


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/hook", "http://localhost/hook", "http://169.254.169.254/latest",
    "http://10.1.2.3/x", "http://[::1]/x", "http://192.168.0.1/x",
    "http://[::ffff:127.0.0.1]/x"])
async def test_the_ssrf_guard_refuses_private_addresses(database_url: str, url: str) -> None:
    async with webhook_api(database_url, webhooks_allow_private=False) as api:
        problem = expect_problem(await api.client.post("/admin/webhooks", headers=ADMIN, json={
            "url": url, "event_types": ["*"]}), 422, "webhook-url-refused")
        assert "refused" in problem["detail"] or "resolves" in problem["detail"]
        assert expect(await api.client.get("/admin/webhooks", headers=ADMIN), 200)["items"] == []


async def test_every_message_is_signed_and_verifies(database_url: str) -> None:
    with receiving() as receiver:
        async with webhook_api(database_url) as api:
            made = await endpoint(api, receiver.url, ["order.*", "payment.*",
                                                      "availability.changed"])
            placed = await api.place_order(await api.storefront(), order_body(("MUG", 2)))
            await rounds(api, lambda: any('"order.placed"' in b for _, b in receiver.received))
            types = set()
            for headers, body in receiver.received:
                message = verified(made["secret"], headers, body)
                assert message["id"] == headers["webhook-id"]
                assert set(message) == {"id", "type", "created_at", "version", "data"}
                types.add(message["type"])
                if message["type"] == "order.placed":
                    assert message["data"]["id"] == placed["id"]
                with pytest.raises(WebhookVerificationError):  # tampered body
                    verified(made["secret"], headers, body.replace('"', "'", 1) + " ")
                with pytest.raises(WebhookVerificationError):  # wrong secret
                    verified("whsec_" + "A" * 32, headers, body)
                stale = str(int((datetime.now(UTC) - timedelta(minutes=10)).timestamp()))
                with pytest.raises(WebhookVerificationError):  # stale timestamp
                    verified(made["secret"], {**headers, "webhook-timestamp": stale}, body)
            assert {"order.placed", "availability.changed"} <= types
            # after a rotation both the new and the old secret verify the next message
            rotated = expect(await api.client.post(f"/admin/webhooks/{made['id']}/rotate",
                                                   headers=ADMIN), 200)
            count = len(receiver.received)
            await api.place_order(await api.storefront(), order_body(("MUG", 1)))
            await rounds(api, lambda: len(receiver.received) > count)
            headers, body = receiver.received[-1]
            assert len(headers["webhook-signature"].split()) == 2
            verified(rotated["secret"], headers, body)
            verified(made["secret"], headers, body)


async def test_receiver_down_then_up_gets_everything_and_duplicates_share_the_id(
        database_url: str) -> None:
    port = free_port()
    with receiving(port, start=False) as receiver:
        async with webhook_api(database_url) as api:
            made = await endpoint(api, receiver.url, ["order.placed"])
            shop = await api.storefront()
            orders = [(await api.place_order(shop, order_body(("MUG", 1))))["id"]
                      for _ in range(3)]
            for _ in range(3):
                await api.engine.webhook_worker.run_once()
                await asyncio.sleep(0.2)
            page = expect(await api.client.get(f"/admin/webhooks/{made['id']}/deliveries",
                                               headers=ADMIN), 200)["items"]
            assert len(page) == 3 and all(d["status"] == "pending" for d in page)
            assert all(d["attempts"] >= 1 and d["last_error"] for d in page)
            receiver.start()
            await rounds(api, lambda: len({h["webhook-id"] for h, _ in receiver.received}) == 3)
            got = {json.loads(b)["data"]["id"] for _, b in receiver.received}
            assert got == set(orders)
            # a redelivery is a duplicate with the same id
            one = page[0]["id"]
            expect(await api.client.post(
                f"/admin/webhooks/{made['id']}/deliveries/{one}/redeliver", headers=ADMIN), 200)
            await rounds(api, lambda: sum(h["webhook-id"] == one
                                          for h, _ in receiver.received) == 2)
            detail = expect(await api.client.get(
                f"/admin/webhooks/{made['id']}/deliveries/{one}", headers=ADMIN), 200)
            assert detail["status"] == "delivered"
            assert [a["status_code"] for a in detail["attempt_log"]][-2:] == [204, 204]
            assert detail["attempt_log"][0]["status_code"] is None


async def placement_statements(api: Api) -> int:
    await api.engine.runtime.journal.flush_marks()
    with api.engine.db.tally() as spent:
        await api.place_order(await api.storefront(), order_body(("MUG", 1)))
        await api.engine.runtime.journal.flush_marks()
    return spent.statements


async def test_failing_receivers_get_growing_retries_then_give_up_and_placement_is_unaffected(
        database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # what is read again after some time (the active channels, the database's clock)
    # is read once here: a read between would count as one of a placement's statements
    monkeypatch.setattr(catalog_store, "CHANNELS_TTL_S", 3600.0)
    # and delivered events are marked by the one flush counted, not by a timer as well
    monkeypatch.setattr(journal, "MARK_DELAY_S", 3600.0)
    with receiving() as failing, receiving() as hanging:
        failing.mode, hanging.mode = "fail", "hang"
        async with webhook_api(database_url, webhooks_timeout_s=0.3,
                               webhooks_backoff_base_s=0.2, webhooks_retry_for_s=3.0,
                               webhooks_disable_after_s=4.0, db_clock_sync_s=3600.0) as api:
            await placement_statements(api)  # warm caches
            without = await placement_statements(api)
            await api.engine.webhook_worker.run_once()  # those events find no endpoint
            bad = await endpoint(api, failing.url, ["order.placed"])
            slow = await endpoint(api, hanging.url, ["order.placed"])
            await endpoint(api, f"http://127.0.0.1:{free_port()}/down", ["order.placed"])
            with_endpoints = await placement_statements(api)
            assert with_endpoints == without  # nothing of the webhooks on the request path
            service = api.engine.webhooks

            async def given_up() -> bool:
                return bool(await service.deliveries(bad["id"], status="failed"))

            await rounds(api, given_up, limit=200)
            [delivery] = expect(await api.client.get(
                f"/admin/webhooks/{bad['id']}/deliveries?status=failed", headers=ADMIN),
                200)["items"]
            detail = expect(await api.client.get(
                f"/admin/webhooks/{bad['id']}/deliveries/{delivery['id']}",
                headers=ADMIN), 200)
            log = detail["attempt_log"]
            assert len(log) >= 4 and all(a["status_code"] == 500 for a in log)
            assert all(a["answer"] == "" and a["latency_ms"] >= 0 for a in log)
            moments = [datetime.fromisoformat(a["at"]) for a in log]
            gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(moments)]
            # exponential backoff: each wait at least the doubled delay (a loaded machine
            # may stretch a wait, never shorten it, so no order between measured gaps)
            assert all(gap >= 0.95 * 0.2 * 2 ** i for i, gap in enumerate(gaps)), gaps
            slow_log = (await service.deliveries(slow["id"]))[0]
            assert slow_log.last_error is not None and "no answer" in slow_log.last_error
            # failing beyond ``webhooks_disable_after_s``: the next failure disables it
            await api.place_order(await api.storefront(), order_body(("MUG", 1)))

            async def disabled() -> bool:
                return not (await service.get(bad["id"])).enabled

            await rounds(api, disabled, limit=200)
            shown = expect(await api.client.get(f"/admin/webhooks/{bad['id']}",
                                                headers=ADMIN), 200)
            assert shown["enabled"] is False and "HTTP 500" in shown["disabled_reason"]
            # staff fix the receiver, enable the endpoint and redeliver every failed one
            failing.mode, failing.received = "ok", []
            expect(await api.client.patch(f"/admin/webhooks/{bad['id']}", headers=ADMIN,
                                          json={"enabled": True}), 200)
            expect(await api.client.post(f"/admin/webhooks/{bad['id']}/redeliver",
                                         headers=ADMIN), 200)

            async def all_delivered() -> bool:
                return all(d.status == "delivered" for d in await service.deliveries(bad["id"]))

            await rounds(api, all_delivered, limit=200)
            assert delivery["id"] in {h["webhook-id"] for h, _ in failing.received}


async def test_a_round_asked_for_while_another_runs_returns_after_it(
        database_url: str) -> None:
    """The background loop's round and a caller's share this process's lease: the one
    asked for second waits for the first, so when a round returns none of this process's
    requests is still in flight."""
    with receiving() as receiver:
        async with webhook_api(database_url, webhooks_interval_s=3600) as api:
            await endpoint(api, receiver.url)
            receiver.mode = "slow"
            await api.place_order(await api.storefront(), order_body(("MUG", 1)))
            worker = api.engine.webhook_worker
            first = asyncio.create_task(worker.run_once())
            for _ in range(200):  # until the first round's requests are on their way
                if receiver.received:
                    break
                await asyncio.sleep(0.01)
            assert receiver.received, "the first round sent nothing"
            await worker.run_once()
            assert first.done(), "a round returned while another's requests were in flight"
            assert (await first)["sent"] == len(receiver.received)


async def test_each_channel_is_told_its_availability(database_url: str) -> None:
    """500 shirts, 6 sold on Etsy and 10 on eBay: every channel's receiver is told."""
    with receiving() as etsy, receiving() as ebay:
        async with webhook_api(database_url) as api:
            start = await api.available("SHIRT-M")
            for receiver, channel in ((etsy, "etsy"), (ebay, "ebay")):
                await endpoint(api, receiver.url, ["availability.changed"], channels=[channel])
            await api.place_order(await api.storefront("etsy"),
                                  order_body(("SHIRT-M", 6), channel="etsy"))
            await api.place_order(await api.storefront("ebay"),
                                  order_body(("SHIRT-M", 10), channel="ebay"))

            def told(receiver: Receiver) -> list[dict[str, Any]]:
                return [json.loads(b)["data"] for _, b in receiver.received]

            def shirts_now(receiver: Receiver) -> bool:
                # a round's deliveries go out together and arrive in any order (the
                # gift's figure may come first): wait for the shirt's latest figure
                shirts = [d for d in told(receiver) if d["sku"] == "SHIRT-M"]
                return bool(shirts) and shirts[-1]["available"] == start - 16

            await rounds(api, lambda: shirts_now(etsy) and shirts_now(ebay))
            for receiver, channel in ((etsy, "etsy"), (ebay, "ebay")):
                assert {d["channel"] for d in told(receiver)} == {channel}


def connection_owner(pids: list[int], remote_port: int) -> int | None:
    """Which of ``pids`` holds an established connection to ``remote_port``."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for row in Path(table).read_text().splitlines()[1:]:
                cols = row.split()
                if int(cols[2].rsplit(":", 1)[1], 16) == remote_port and cols[3] == "01":
                    inodes.add(cols[9])
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    target = os.readlink(fd)
                    if target.startswith("socket:[") and target[8:-1] in inodes:
                        return pid
    return None


async def test_a_worker_killed_while_delivering_leaves_the_delivery_to_another(
        database_url: str, tmp_path: Path) -> None:
    """Real ``ordnung serve`` with two workers delivering in the background: the worker
    whose request hangs is SIGKILLed; another sends the message again, same id."""
    with receiving() as receiver:
        receiver.mode = "hang"
        env = {"ORDNUNG_PLUGINS": PLUGINS, "ORDNUNG_WEBHOOKS_ALLOW_PRIVATE": "true",
               "ORDNUNG_WEBHOOKS_INTERVAL_S": "0.2", "ORDNUNG_WEBHOOKS_TIMEOUT_S": "4"}
        with running_server(database_url, tmp_path, env=env) as server:
            async with httpx.AsyncClient(base_url=server.base_url, timeout=30.0) as client:
                shop = await seed(client)
                made = expect(await client.post("/admin/webhooks", headers=ADMIN_SERVE, json={
                    "url": receiver.url, "event_types": ["order.placed"]}), 201)
                placed = expect(await client.post("/orders", headers=shop, json=order_body(
                    ("CRASH-MUG", 1), token="tok_success")), 201)
                for _ in range(200):
                    if receiver.received:
                        break
                    await asyncio.sleep(0.1)
                assert receiver.received, "the worker never sent the message"
                first_id = receiver.received[0][0]["webhook-id"]
                victim = connection_owner(server.workers(), receiver.port)
                assert victim is not None
                receiver.mode = "ok"
                os.kill(victim, signal.SIGKILL)
                for _ in range(400):
                    if len(receiver.received) >= 2:
                        break
                    await asyncio.sleep(0.1)
                assert len(receiver.received) >= 2, server.logs()[-3000:]
                assert {h["webhook-id"] for h, _ in receiver.received} == {first_id}
                message = json.loads(receiver.received[-1][1])
                assert message["data"]["id"] == placed["id"]
                verified(made["secret"], receiver.received[-1][0], receiver.received[-1][1])
                [delivery] = expect(await client.get(
                    f"/admin/webhooks/{made['id']}/deliveries", headers=ADMIN_SERVE),
                    200)["items"]
                for _ in range(100):
                    delivery = expect(await client.get(
                        f"/admin/webhooks/{made['id']}/deliveries/{delivery['id']}",
                        headers=ADMIN_SERVE), 200)
                    if delivery["status"] == "delivered":
                        break
                    await asyncio.sleep(0.1)
                assert delivery["status"] == "delivered"


async def test_the_guard_also_holds_for_changes_and_before_every_attempt(
        database_url: str) -> None:
    """An endpoint registered while private addresses were allowed is not called once
    they are not: the attempt is refused and logged (as for a name that re-resolves)."""
    with receiving() as receiver:
        async with webhook_api(database_url) as api:
            made = await endpoint(api, receiver.url, ["order.placed"])
            api.engine.config.webhooks_allow_private = False
            expect_problem(await api.client.patch(
                f"/admin/webhooks/{made['id']}", headers=ADMIN,
                json={"url": "http://10.0.0.1/hook"}), 422, "webhook-url-refused")
            assert (await api.engine.webhooks.get(made["id"])).url == receiver.url
            await api.place_order(await api.storefront(), order_body(("MUG", 1)))
            service = api.engine.webhooks

            async def attempted() -> bool:
                return any(d.attempts for d in await service.deliveries(made["id"]))

            await rounds(api, attempted)
            [delivery] = await service.deliveries(made["id"])
            assert delivery.status == "pending" and delivery.last_error is not None
            assert "127.0.0.1" in delivery.last_error and receiver.received == []


async def test_an_orders_life_is_told_by_type(database_url: str) -> None:
    """Placed, held, released, cancelled (and the payment voided): each once, by type."""
    with receiving() as receiver:
        async with webhook_api(database_url) as api:
            await endpoint(api, receiver.url, ["order.*", "payment.*"])
            placed = await api.place_order(await api.storefront(), order_body(("MUG", 1)))
            path = f"/orders/{placed['id']}"
            expect(await api.client.post(f"{path}/hold", headers=ADMIN,
                                         json={"reason": "review"}), 200)
            expect(await api.client.post(f"{path}/release", headers=ADMIN, json={}), 200)
            expect(await api.client.post(f"{path}/cancel", headers=ADMIN, json={}), 200)

            def types() -> list[str]:
                return [json.loads(b)["type"] for _, b in receiver.received]

            await rounds(api, lambda: "order.cancelled" in types())
            order_types = [t for t in types() if t.startswith("order.")]
            # each once (messages are not ordered: a round sends its deliveries at once)
            assert sorted(order_types) == sorted(["order.placed", "order.held",
                                                  "order.released", "order.cancelled"])
            assert "payment.authorized" in types() and "payment.voided" in types()


async def test_a_sent_notification_is_told_with_the_expected_delivery(database_url: str) -> None:
    with receiving() as receiver:
        async with webhook_api(database_url) as api:
            await endpoint(api, receiver.url, ["notification.sent"])
            placed = await api.place_order(await api.storefront(), order_body(("MUG", 1)))
            # what a notifications plugin (``email``) records once the e-mail is out
            await api.engine.orders.record_notification(
                placed["id"], channel="email", notice="confirmation", to="erika@example.com")
            await rounds(api, lambda: bool(receiver.received))
            [(_, body)] = receiver.received
            message = json.loads(body)
            assert message["type"] == "notification.sent"
            assert message["data"]["order_id"] == placed["id"]
            assert message["data"]["notice"] == "confirmation"
            assert message["data"]["expected_delivery"] == \
                placed["shipping"]["expected_delivery"]


async def test_a_name_resolving_to_a_private_address_is_refused_before_any_connection(
        database_url: str) -> None:
    """``localhost`` (a name, not a literal) registered while private addresses were
    allowed: once they are not, the attempt is refused after resolving, and the receiver
    listening on the address the name resolves to is never connected to."""
    with receiving() as receiver:
        async with webhook_api(database_url) as api:
            made = await endpoint(api, f"http://localhost:{receiver.port}/hook",
                                  ["order.placed"])
            api.engine.config.webhooks_allow_private = False
            await api.place_order(await api.storefront(), order_body(("MUG", 1)))
            service = api.engine.webhooks

            async def attempted() -> bool:
                return any(d.attempts for d in await service.deliveries(made["id"]))

            await rounds(api, attempted)
            [delivery] = await service.deliveries(made["id"])
            assert delivery.status == "pending" and delivery.last_error is not None
            assert "'localhost' resolves to" in delivery.last_error, delivery.last_error
            assert receiver.received == []


async def test_an_attempt_connects_to_the_address_that_was_checked(
        database_url: str) -> None:
    """The name is resolved once, by the check; the request goes to that address with
    the name kept in ``Host`` (and, over TLS, as the server name), so a name that
    re-resolves afterwards (DNS rebinding) cannot redirect it."""
    calls: list[str] = []

    async def rebinding(host: str, port: int) -> list[Any]:
        """A public address when checked; a private one for anyone asking again."""
        calls.append(host)
        address = "93.184.215.14" if len(calls) == 1 else "127.0.0.1"
        return [(0, 0, 0, "", (address, port))]

    target = await pin_url("https://hooks.example.com/in?x=1", allow_private=False,
                           resolve=rebinding)
    assert calls == ["hooks.example.com"]  # resolved once; the URL names the address
    assert target.url == "https://93.184.215.14/in?x=1"
    assert target.headers == {"host": "hooks.example.com"}
    assert target.extensions == {"sni_hostname": "hooks.example.com"}
    with pytest.raises(UnsafeUrl):  # the second answer is what a re-resolution would get
        await pin_url("https://hooks.example.com/in", allow_private=False, resolve=rebinding)
    literal = await pin_url("http://[2606:4700::1]:8443/h", allow_private=False)
    assert literal.url == "http://[2606:4700::1]:8443/h" and literal.headers == {}
    # end to end: the receiver (on the address) gets the name in Host
    first = (await asyncio.get_running_loop().getaddrinfo("localhost", 80))[0][4][0]
    if first != "127.0.0.1":  # the receiver listens on IPv4 only
        pytest.skip(f"localhost resolves to {first} first here")
    with receiving() as receiver:
        async with webhook_api(database_url) as api:
            made = await endpoint(api, f"http://localhost:{receiver.port}/hook",
                                  ["order.placed"])
            await api.place_order(await api.storefront(), order_body(("MUG", 1)))
            await rounds(api, lambda: receiver.received)
            headers, body = receiver.received[0]
            assert headers["host"] == f"localhost:{receiver.port}"
            assert verified(made["secret"], headers, body)["type"] == "order.placed"
