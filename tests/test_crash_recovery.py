"""Crash proof: a worker of a real ``ordnung serve --workers 2`` is SIGKILLed in the middle
of concurrent one-shot placements; the client retries what got no answer, and the database
is checked afterwards.

Whatever the kill interrupted, afterwards:

- every order a client was told about exists, whole: its lines, its payment, totals that
  add up; and every order that exists was told to a client (nothing lost, nothing extra);
- no order is half-written: its timeline events, their outbox rows and its reservations
  are all there, and nothing in those tables points at an order that does not exist;
- the levels' reserved units are exactly what the open orders hold (the killed request
  leaked nothing), the ledger balances and nothing is oversold;
- the events the killed worker committed but never delivered are delivered by the
  sweeper once their lease has run out.

uvicorn's supervisor restarts the killed worker. Once the load is over the other original
worker is killed too, so every later request (the retries, the sweep) is answered by a
worker started after the crash. A crashed request's ``Idempotency-Key`` is free again once
its lease (``KEY_LEASE``, short here) has run out, as it would be on any server. The other
waits it imposes — an authorization it left in flight may be resumed only after
``RESUME_AUTHORIZATION_AFTER``, its events wait for their outbox lease — are skipped by
ageing those rows in the database, as time would.

The in-process tests at the end pin down, deterministically, the two engine behaviours the
crash depends on and the kill only sometimes hits.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from ordnung.core import hookimpl
from ordnung.core.domain.common import utcnow
from ordnung.core.domain.events import Event
from ordnung.core.domain.payments import GatewayResult, PaymentRequest
from ordnung.core.domain.webhooks import tells_webhooks
from ordnung.core.errors import PaymentDeclined
from ordnung.core.persistence.codec import decode
from ordnung.core.persistence.database import Database
from ordnung.core.services.payments import RESUME_AUTHORIZATION_AFTER
from ordnung.plugins.payments.sandbox import SandboxGateway
from tests.api_support import (
    BASE_URL,
    PROBLEM_BASE,
    api_client,
    bearer,
    expect,
    expect_problem,
    order_body,
)
from tests.serve_support import ADMIN_KEY, Server, running_server, stop
from tests.support import builtin_plugins, order_request, seed_shop

PLUGINS = "sandbox,manual,flat_rate,table_tax,free_gift,channel_log"
GIFT = "CRASH-GIFT"
GIFT_SETTINGS = {"free_gift": {"tiers": [{"threshold": 6000, "currency": "EUR", "sku": GIFT,
                                          "name": "crash gift"}]}}
LOCATIONS = {"north": 1, "south": 2}  # id -> priority (reservations try north first)
#: sku -> (price in cents, units per location): scarce, so that some placements run out
STOCK: dict[str, tuple[int, dict[str, int]]] = {
    "CRASH-TEE": (1500, {"north": 70, "south": 50}),
    "CRASH-MUG": (900, {"north": 60, "south": 30}),
    "CRASH-CAP": (2200, {"north": 60}),
    "CRASH-BAG": (3900, {"south": 45}),
    GIFT: (0, {"north": 6}),
}
SELLABLE = [sku for sku in STOCK if sku != GIFT]
ATTEMPTS = 140
CONCURRENCY = 24
#: the kill comes after this many acknowledged orders, while this many requests are open
KILL_AFTER = 30
KILL_IN_FLIGHT = 16
#: seconds an Idempotency-Key is held without renewal: a dead worker's keys are free after it
KEY_LEASE = 2.0
#: answers that end an attempt: placed, declined (order cancelled), out of stock
FINAL = {201, 402, 409}


@dataclass
class Attempt:
    """One placement as a client makes it: one Idempotency-Key, retried until answered."""

    key: str
    body: dict[str, Any]
    status: int | None = None
    answer: dict[str, Any] = field(default_factory=dict)
    #: every answer and transport error, in order (for the failure message)
    history: list[str] = field(default_factory=list)

    @property
    def final(self) -> bool:
        return self.status in FINAL and not self.still_running

    @property
    def still_running(self) -> bool:
        """409 because the first request's Idempotency-Key record is still pending."""
        return self.status == 409 and self.answer.get("type") == PROBLEM_BASE + "conflict"

    @property
    def order_id(self) -> str | None:
        """The order this attempt was told about (a decline names the cancelled order)."""
        if self.status == 201:
            return str(self.answer["id"])
        if self.status == 402:
            return str(self.answer["order_id"])
        return None

    async def send(self, client: httpx.AsyncClient, shop: dict[str, str]) -> bool:
        """POST it; False if no answer came back (the connection broke)."""
        try:
            response = await client.post("/orders", json=self.body,
                                         headers={**shop, "Idempotency-Key": self.key})
        except httpx.TransportError as exc:
            self.history.append(f"no answer: {exc!r}")
            return False
        self.status = response.status_code
        self.answer = response.json()
        self.history.append(f"{response.status_code} {self.answer.get('type', '')}")
        return True


@dataclass
class Kill:
    pid: int
    #: client connections the killed worker held, and the requests the client had open
    connections: int
    in_flight: int
    acknowledged: int


def plan(count: int, seed: int = 11) -> list[Attempt]:
    rng = random.Random(seed)
    attempts = []
    for n in range(count):
        lines = [(sku, rng.randint(1, 3)) for sku in rng.sample(SELLABLE, rng.choice((1, 2)))]
        token = "tok_decline" if n % 9 == 4 else "tok_success"
        attempts.append(Attempt(key=f"crash-{n:03d}", body=order_body(
            *lines, token=token, email=f"crash{n}@example.com")))
    return attempts


async def seed(client: httpx.AsyncClient) -> dict[str, str]:
    """The shop, over the API: a channel, two locations, scarce stock; a storefront key."""
    admin = bearer(ADMIN_KEY)
    expect(await client.put("/channels/web", json={"id": "web", "name": "Web"},
                            headers=admin), 200)
    for location, priority in LOCATIONS.items():
        expect(await client.put(f"/inventory/locations/{location}", json={
            "id": location, "name": location, "priority": priority}, headers=admin), 200)
    for i, (sku, (price, units)) in enumerate(STOCK.items()):
        product = {"id": sku.lower(), "name": sku, "variants": [{
            "sku": sku, "product_id": sku.lower(), "name": sku, "barcode": f"4000000{i:06d}",
            "prices": {"EUR": price}, "weight_grams": 300}]}
        expect(await client.put(f"/catalogue/products/{sku.lower()}", json=product,
                                headers=admin), 200)
        for location, quantity in units.items():
            expect(await client.post("/inventory/adjustments", json={
                "sku": sku, "location_id": location, "delta": quantity, "kind": "receive"},
                headers=admin), 201)
    issued = expect(await client.post("/admin/keys", json={
        "kind": "storefront", "channel": "web", "name": "crash"}, headers=admin), 201)
    return bearer(issued["secret"])


def client_connections(pid: int, port: int) -> int:
    """Established connections to ``port`` that the process ``pid`` holds open."""
    inodes: set[str] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for row in Path(table).read_text().splitlines()[1:]:
                cols = row.split()
                if int(cols[1].rsplit(":", 1)[1], 16) == port and cols[3] == "01":
                    inodes.add(cols[9])
    count = 0
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(fd)
                count += target.startswith("socket:[") and target[8:-1] in inodes
    return count


def kill_busiest_worker(server: Server, in_flight: int, acknowledged: int) -> Kill:
    """SIGKILL the worker holding the most client connections (it has requests open)."""
    workers = server.workers()
    assert len(workers) == 2, workers
    held = {pid: client_connections(pid, server.port) for pid in workers}
    pid = max(workers, key=lambda p: held[p])
    os.kill(pid, signal.SIGKILL)
    return Kill(pid=pid, connections=held[pid], in_flight=in_flight, acknowledged=acknowledged)


async def drive(client: httpx.AsyncClient, server: Server, shop: dict[str, str],
                attempts: list[Attempt]) -> Kill:
    """Send every attempt once at ``CONCURRENCY``; kill a worker in the middle."""
    pending = iter(attempts)
    in_flight = acknowledged = 0
    kill: Kill | None = None

    async def run() -> None:
        nonlocal in_flight, acknowledged, kill
        for attempt in pending:
            in_flight += 1
            try:
                answered = await attempt.send(client, shop)
            finally:
                in_flight -= 1
            acknowledged += answered and attempt.status == 201
            if kill is None and acknowledged >= KILL_AFTER and in_flight >= KILL_IN_FLIGHT:
                kill = kill_busiest_worker(server, in_flight, acknowledged)

    await asyncio.gather(*(run() for _ in range(CONCURRENCY)))
    assert kill is not None, "the load ended before a worker could be killed"
    return kill


async def eventually(what: str, check: Any, within: float = 30.0) -> Any:
    """Poll ``check()`` (sync or async) until it returns something truthy."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        assert time.monotonic() < deadline, f"{what}: not within {within:.0f} s"
        await asyncio.sleep(0.2)


async def healthy(client: httpx.AsyncClient) -> bool:
    try:
        return (await client.get("/health", timeout=2.0)).status_code == 200
    except httpx.TransportError:
        return False


async def retry(client: httpx.AsyncClient, shop: dict[str, str],
                attempts: list[Attempt]) -> None:
    """What a client does with requests that got no final answer: send them again."""
    open_ = [a for a in attempts if not a.final]
    for chunk in range(0, len(open_), 8):
        await asyncio.gather(*(a.send(client, shop) for a in open_[chunk:chunk + 8]))


async def age(db: Database) -> dict[str, list[str]]:
    """Let the clock run on for what a dead process left behind: its pending
    Idempotency-Key records become abandoned, the authorizations it left in flight
    resumable, the leases of the events it never delivered run out. Returns what it
    found of each."""
    past = utcnow() - timedelta(seconds=1)
    keys = [r["key"] for r in await db.fetch(
        "SELECT key FROM idempotency_records WHERE key LIKE 'request:%' "
        "AND state = 'pending'")]
    in_flight = []
    for row in await db.fetch("SELECT id, data FROM orders"):
        order = json.loads(row["data"])
        for payment in order["payments"]:
            if payment["in_flight"]:
                in_flight.append(payment["id"])
                payment["in_flight_since"] = (past - RESUME_AUTHORIZATION_AFTER).isoformat()
        if any(p["id"] in in_flight for p in order["payments"]):
            await db.run("UPDATE orders SET data = {} WHERE id = {}", json.dumps(order),
                         row["id"])
    events = [r["id"] for r in await db.fetch(
        "SELECT id FROM outbox WHERE dispatched_at IS NULL")]
    await db.run("UPDATE outbox SET claimed_until = {} WHERE dispatched_at IS NULL", past)
    return {"keys": keys, "payments": in_flight, "events": events}


async def test_a_killed_worker_loses_no_order_and_leaks_no_stock(
        database_url: str, tmp_path: Path) -> None:
    started = time.monotonic()
    attempts = plan(ATTEMPTS)
    env = {"ORDNUNG_PLUGINS": PLUGINS, "ORDNUNG_PLUGIN_SETTINGS": json.dumps(GIFT_SETTINGS),
           "ORDNUNG_IDEMPOTENCY_LEASE_SECONDS": str(KEY_LEASE)}
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    with running_server(database_url, tmp_path, env=env) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30.0,
                                     limits=limits) as client:
            shop = await seed(client)
            originals = await eventually("two workers", lambda: len(server.workers()) == 2
                                         and server.workers())
            kill = await drive(client, server, shop, attempts)
            unanswered = {a.key for a in attempts if a.status is None}

            # the supervisor replaces the killed worker
            replacements = await eventually("a new worker", lambda: [
                p for p in server.workers() if p not in originals])
            assert kill.pid not in server.workers()
            # ... and once the other original worker is gone too (idle now), only workers
            # started after the crash are left to answer
            survivor = next(p for p in originals if p != kill.pid)
            os.kill(survivor, signal.SIGKILL)
            await eventually("an answer from a new worker", lambda: healthy(client))
            assert not set(originals) & set(server.workers())

            # the client sends again what got no answer; a request the kill cut short still
            # holds its Idempotency-Key (409, retry later) until its lease has run out,
            # and a placement whose authorization it left in flight is answered as it is
            # (not kept) until that authorization is resumed
            await retry(client, shop, attempts)
            async with Database(database_url).session() as db:
                left = await age(db)
            scoped = {k.rsplit(":", 1)[1] for k in left["keys"]}
            assert scoped <= unanswered, (scoped, unanswered)
            assert {a.key for a in attempts if a.still_running} <= scoped
            await asyncio.sleep(KEY_LEASE)
            for attempt in attempts:  # told the order as it was, before it was finished
                if attempt.key in scoped and attempt.status == 201:
                    attempt.status = None
            await retry(client, shop, attempts)
            unfinished = {a.key: a.history for a in attempts if not a.final}
            assert not unfinished, unfinished

            # the sweeper delivers the events whose writer died
            admin = bearer(ADMIN_KEY)
            swept = 0
            for _ in range(20):
                result = expect(await client.post("/admin/maintenance", headers=admin), 200)
                swept += result["swept"]
                if not result["swept"]:
                    break
            with_new_pids = server.workers()
        stop(server.process)
        assert server.process.returncode == 0, server.logs()

    problems = await check_database(database_url, attempts)
    statuses = Counter(a.status for a in attempts)
    summary = (f"killed worker {kill.pid} holding {kill.connections} connections with "
               f"{kill.in_flight} requests open after {kill.acknowledged} orders; "
               f"{len(unanswered)} unanswered; left behind: {len(left['keys'])} keys, "
               f"{len(left['payments'])} authorizations in flight, {len(left['events'])} "
               f"events; {swept} swept by workers "
               f"{replacements} / {with_new_pids}; answers {dict(statuses)}; "
               f"{time.monotonic() - started:.1f} s")
    print(summary)
    assert not problems, summary + "\n" + "\n".join(problems)
    assert "Traceback" not in server.logs(), server.logs()


# -- the checks, straight on the database ----------------------------------------------------


#: the kinds of event a plugin of this server reacts to after commit (channel_log: the
#: availability pushes); only those get an outbox row
REACTED_KINDS = frozenset({"inventory.availability_changed"})


def placed_by(record: dict[str, Any]) -> str | None:
    """The order a key's record names: the one its placement noted while pending, or the
    one its kept answer names (a decline names the cancelled order)."""
    if record["state"] != "done":
        return str(record["result"]) or None
    answer = json.loads(record["result"])
    if record["status"] == 201:
        return str(answer["id"])
    if record["status"] == 402:
        return str(answer["order_id"])
    return None


async def check_database(database_url: str, attempts: list[Attempt]) -> list[str]:
    """Every invariant the crash must not break; returns what is wrong (empty: nothing)."""
    async with Database(database_url).session() as db:
        rows = {r["id"]: r for r in await db.fetch(
            "SELECT id, number, status, total, authorized, captured, refunded, data "
            "FROM orders")}
        events = await db.fetch("SELECT id, order_id, seq, kind, data FROM events")
        outbox = await db.fetch(
            "SELECT id, order_id, dispatched_at IS NULL AS undelivered FROM outbox")
        moves = await db.fetch("SELECT sku, location_id, kind, on_hand_delta, reserved_delta, "
                               "order_id FROM stock_movements")
        levels = await db.fetch("SELECT sku, location_id, on_hand, reserved FROM stock_levels")
        keyed = await db.fetch(
            "SELECT key, state, status, result FROM idempotency_records "
            "WHERE key LIKE 'request:%'")
        pending_http = await db.fetch(
            "SELECT key FROM idempotency_records WHERE key LIKE 'request:%' "
            "AND state <> 'done'")
        failures = await db.fetch(
            "SELECT hook, plugin, last_error FROM reaction_failures WHERE resolved_at IS NULL")
    orders = {oid: json.loads(r["data"]) for oid, r in rows.items()}
    problems: list[str] = []

    # every order a client was told about exists, and nothing else does
    told = {a.order_id: a for a in attempts if a.order_id is not None}
    if len(told) != sum(a.order_id is not None for a in attempts):
        problems.append("two attempts were told about the same order")
    if missing := set(told) - set(orders):
        problems.append(f"orders told to a client but not in the database: {sorted(missing)}")
    if unknown := set(orders) - set(told):
        problems.append(f"orders no client was told about: {sorted(unknown)}")
    by_key = {r["key"].rsplit(":", 1)[1]: placed_by(r) for r in keyed}
    for attempt in attempts:
        if by_key.get(attempt.key) != attempt.order_id:
            problems.append(f"{attempt.key}: told {attempt.status} {attempt.order_id}, the "
                            f"placement's idempotency key says {by_key.get(attempt.key)}")
        if attempt.order_id in orders:
            problems += check_answer(attempt, orders[attempt.order_id])

    # each order whole, its money columns and totals consistent
    for oid, order in orders.items():
        problems += [f"{oid}: {p}" for p in check_order(order, rows[oid])]

    # its timeline and outbox, written with it; nothing points at a missing order
    seqs: dict[str, list[int]] = defaultdict(list)
    first: dict[str, str] = {}
    for ev in events:
        seqs[ev["order_id"]].append(int(ev["seq"]))
        if ev["seq"] == 1:
            first[ev["order_id"]] = ev["kind"]
    event_ids = {ev["id"]: ev["order_id"] for ev in events if ev["kind"] in REACTED_KINDS
                 or tells_webhooks(decode(ev["data"], Event))}
    outbox_ids = {row["id"]: row["order_id"] for row in outbox}
    for oid, order in orders.items():
        if sorted(seqs.get(oid, [])) != list(range(1, order["event_seq"] + 1)):
            problems.append(f"{oid}: events {sorted(seqs.get(oid, []))}, expected 1.."
                            f"{order['event_seq']}")
        if first.get(oid) != "order.placed":
            problems.append(f"{oid}: the first event is {first.get(oid)}, not order.placed")
    if event_ids != outbox_ids:
        problems.append("events with reactions or webhooks but no outbox row, or the other way "
                        "round: "
                        f"{sorted(set(event_ids.items()) ^ set(outbox_ids.items()))}")
    for table, order_ids in (("events", [ev["order_id"] for ev in events]),
                             ("stock_movements", [m["order_id"] for m in moves])):
        if orphans := {o for o in order_ids if o is not None and o not in orders}:
            problems.append(f"{table} of orders that do not exist: {sorted(orphans)}")
    if orphans := {o for o in by_key.values() if o is not None} - set(orders):
        problems.append(f"idempotency keys naming orders that do not exist: {sorted(orphans)}")
    if undelivered := [row["id"] for row in outbox if row["undelivered"]]:
        problems.append(f"outbox rows never delivered: {undelivered}")
    if failures:
        problems.append(f"reactions still failing: {failures}")
    if pending_http:
        problems.append(f"Idempotency-Key records still pending: {pending_http}")

    # reservations: each order's ledger rows match its lines; the levels hold exactly
    # what the open orders hold; the ledger balances; nothing oversold
    reserved_for: dict[str, Counter[str]] = defaultdict(Counter)
    net_for: dict[str, Counter[tuple[str, str]]] = defaultdict(Counter)
    ledger: Counter[tuple[str, str, str]] = Counter()
    for m in moves:
        place = (m["sku"], m["location_id"])
        ledger[(*place, "on_hand")] += int(m["on_hand_delta"])
        ledger[(*place, "reserved")] += int(m["reserved_delta"])
        if m["kind"] == "reserve":
            if m["order_id"] is None:
                problems.append(f"a reservation without an order: {m}")
            reserved_for[m["order_id"]][m["sku"]] += int(m["reserved_delta"])
        if m["order_id"] is not None:
            net_for[m["order_id"]][place] += int(m["reserved_delta"])
    held: Counter[tuple[str, str]] = Counter()
    for oid, order in orders.items():
        ordered: Counter[str] = Counter()
        allocated: Counter[tuple[str, str]] = Counter()
        for line in order["lines"]:
            ordered[line["sku"]] += line["quantity"]
            for alloc in line.get("allocations", []):
                allocated[(line["sku"], alloc["location_id"])] += alloc["quantity"]
        if reserved_for.get(oid, Counter()) != ordered:
            problems.append(f"{oid}: reserved {dict(reserved_for.get(oid, {}))} for lines "
                            f"{dict(ordered)}")
        if +net_for.get(oid, Counter()) != +allocated:
            problems.append(f"{oid}: holds {dict(+net_for.get(oid, Counter()))} in the ledger, "
                            f"{dict(+allocated)} by its lines")
        held.update(allocated)
    for level in levels:
        place = (level["sku"], level["location_id"])
        on_hand, reserved = int(level["on_hand"]), int(level["reserved"])
        seeded = STOCK[level["sku"]][1].get(level["location_id"], 0)
        if reserved != held[place]:
            problems.append(f"{place}: {reserved} reserved, the open orders hold {held[place]}")
        if (on_hand, reserved) != (ledger[(*place, "on_hand")], ledger[(*place, "reserved")]):
            problems.append(f"{place}: level {on_hand}/{reserved}, ledger "
                            f"{ledger[(*place, 'on_hand')]}/{ledger[(*place, 'reserved')]}")
        if on_hand != seeded or reserved > on_hand:
            problems.append(f"{place}: on hand {on_hand} (received {seeded}), {reserved} "
                            "reserved")
    return problems


def check_answer(attempt: Attempt, order: dict[str, Any]) -> list[str]:
    """The order is what the client was told, and what it asked for."""
    problems = []
    asked = Counter({line["sku"]: line["quantity"] for line in attempt.body["lines"]})
    got = Counter({line["sku"]: line["quantity"] for line in order["lines"] if not line["gift"]})
    if asked != got:
        problems.append(f"{attempt.key}: asked for {dict(asked)}, the order has {dict(got)}")
    if attempt.status == 201:
        told = (attempt.answer["number"], attempt.answer["status"],
                attempt.answer["totals"]["total"])
        stored = (order["number"], order["status"], order["totals"]["total"])
        if told != stored or order["status"] != "processing":
            problems.append(f"{attempt.key}: told {told}, stored {stored}")
        payments = [(p["gateway"], p["status"], p["authorized"]) for p in order["payments"]]
        if payments != [("sandbox", "authorized", order["totals"]["total"])]:
            problems.append(f"{attempt.key}: payments {payments}")
    elif order["status"] != "cancelled" or [p["status"] for p in order["payments"]] != [
            "failed"]:
        problems.append(f"{attempt.key}: declined, but the order is {order['status']} with "
                        f"payments {[p['status'] for p in order['payments']]}")
    return problems


def check_order(order: dict[str, Any], row: dict[str, Any]) -> list[str]:
    """The order document is complete and its money adds up, in the document and columns."""
    problems = []
    totals, lines = order["totals"], order["lines"]
    if not lines or not order["payments"]:
        problems.append(f"lines {len(lines)}, payments {len(order['payments'])}")
    if any(line["line_total"] != line["unit_price"] * line["quantity"] for line in lines):
        problems.append("a line total is not unit price x quantity")
    tax = sum(line["tax"] for line in lines) + (order["shipping"] or {}).get("tax", 0)
    shipping = (order["shipping"] or {}).get("price", 0)
    subtotal = sum(line["line_total"] for line in lines)
    discounts = sum(a["amount"] for a in order["adjustments"])
    expected = subtotal + discounts + shipping + (0 if order["prices_include_tax"] else tax)
    if (totals["subtotal"], totals["tax"], totals["total"]) != (subtotal, tax, expected):
        problems.append(f"totals {totals} are not lines + adjustments + shipping + tax")
    money = {"total": totals["total"],
             **{column: sum(p[column] for p in order["payments"])
                for column in ("authorized", "captured", "refunded")}}
    if {column: int(row[column]) for column in money} != money or row["status"] != order[
            "status"] or row["number"] != order["number"]:
        problems.append(f"columns {dict(row, data='...')} disagree with the document {money}")
    if any(p["in_flight"] for p in order["payments"]):
        problems.append(f"a payment still in flight: {order['payments']}")
    return problems


# -- what a dying process leaves behind, in process ----------------------------------------


class ProcessDied(BaseException):
    """Stands for the process dying while it waits for the gateway (nothing catches it)."""


class DyingGateway(SandboxGateway):
    """The sandbox, except that its process dies during the first authorization."""

    died = False

    @hookimpl
    def ordnung_authorize(self, request: PaymentRequest) -> GatewayResult:
        if not self.died:
            self.died = True
            raise ProcessDied
        return super().ordnung_authorize(request)


@pytest.mark.parametrize(("token", "status"), [("tok_success", "processing"),
                                               ("tok_decline", "cancelled")])
async def test_a_repeat_finishes_an_authorization_its_placement_left_in_flight(
        make_engine: Any, token: str, status: str) -> None:
    engine = await make_engine(plugins=[(DyingGateway, "sandbox", {}), *builtin_plugins()[1:]])
    await seed_shop(engine)
    gateway = engine.host.pm.get_plugin("sandbox")
    request = order_request(("SHIRT-M", 2), token=token)
    with pytest.raises(ProcessDied):
        await engine.orders.place(request, idempotency_key="died")
    [order] = await engine.orders.list()
    assert (order.status, order.payments[0].in_flight) == ("placed", "authorize")

    # the first attempt may still be running elsewhere: a repeat answers the order as it is
    again = await engine.orders.place(request, idempotency_key="died")
    assert (again.id, again.status, again.payments[0].in_flight) == (
        order.id, "placed", "authorize")
    assert gateway.calls == []

    # once the authorization has been in flight long enough, a repeat finishes it
    assert (await age(engine.db))["payments"] == [order.payments[0].id]
    if token == "tok_decline":
        with pytest.raises(PaymentDeclined):
            await engine.orders.place(request, idempotency_key="died")
    else:
        await engine.orders.place(request, idempotency_key="died")
    done = await engine.orders.get(order.id)
    assert done.status == status
    assert (done.payments[0].in_flight, done.payments[0].operations) == ("", 1)
    assert [call[0] for call in gateway.calls] == ["authorize"]
    held = sum(lv.reserved for lv in await engine.inventory.levels(["SHIRT-M"]))
    assert held == (2 if token == "tok_success" else 0)
    assert await engine.inventory.ledger_discrepancies() == []

    # repeated once more: answered as before, no second call to the gateway
    if token == "tok_success":
        assert (await engine.orders.place(request, idempotency_key="died")).id == order.id
    else:
        with pytest.raises(PaymentDeclined) as declined:
            await engine.orders.place(request, idempotency_key="died")
        assert declined.value.extra["order_id"] == order.id
    assert [call[0] for call in gateway.calls] == ["authorize"]
    assert len(await engine.orders.list()) == 1


async def test_an_answer_is_stored_before_the_client_has_all_of_it(database_url: str) -> None:
    """A worker killed right after answering must not leave the key pending: the client,
    which has its answer, would get 409 for a repeat until the record counts as abandoned."""
    async with api_client(database_url) as api:
        shop = await api.storefront("web")
        states: list[list[str]] = []

        async def watch(scope: Any, receive: Any, send: Any) -> None:
            async def watched(message: Any) -> None:
                if message["type"] == "http.response.body" and not message.get("more_body"):
                    states.append([(r["key"].rsplit(":", 1)[1], r["state"])
                                   for r in await api.engine.db.fetch(
                        "SELECT key, state FROM idempotency_records "
                        "WHERE key LIKE 'request:%' ORDER BY key")])
                await send(message)

            await api.app(scope, receive, watched)

        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=watch),
                                     base_url=BASE_URL) as client:
            placed = await client.post("/orders", json=order_body(("SHIRT-M", 1)),
                                       headers={**shop, "Idempotency-Key": "answered"})
            expect(placed, 201)
            refused = await client.post("/orders", json=order_body(("SHIRT-M", 10_000)),
                                        headers={**shop, "Idempotency-Key": "refused"})
            expect_problem(refused, 409, "out-of-stock")
        # the refusal changed nothing: its key was given back, also before the answer went
        assert states == [[("answered", "done")], [("answered", "done")]]
