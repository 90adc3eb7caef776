"""Concurrency: no oversell across OS processes, idempotent duplicates, capture races.

The cross-process tests start real OS processes (``python -c`` importing this
module's ``worker_main``), each with its own Engine on the test's database.
The protocol with a worker runs over its stdin/stdout, one marked line each:

* the worker starts its engine and prints ``@@ready``;
* the test waits until every worker is ready, then writes ``go`` to each
  (the start barrier: all workers fire at the same moment);
* the worker fires its placements concurrently (``asyncio.gather``) and prints
  ``@@result <json>``: the order ids it got, the out-of-stock shortages, any
  other errors (type, message, traceback) and timings.

Worker logs go to a file in the test's tmp dir; a failure quotes its tail.
Every wait is bounded, so a hang fails the test instead of blocking CI.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import structlog

from ordnung.core import Engine, EngineConfig, Product, Variant, hookimpl
from ordnung.core.domain.orders import Order
from ordnung.core.domain.payments import GatewayResult, PaymentRequest
from ordnung.core.errors import Conflict, IdempotencyMismatch, InvariantViolation, OutOfStock
from ordnung.plugins.payments.sandbox import SandboxGateway
from tests.support import builtin_plugins, order_request, seed_shop

REPO_ROOT = Path(__file__).resolve().parent.parent
READY = "@@ready"
RESULT = "@@result "

HOT = "HOT"
HOT_STOCK = 50
WORKERS = 4
PER_WORKER = 60  # 4 x 60 = 240 placements for 50 units

#: worker start-up (imports, engine start) until it reports ready
READY_TIMEOUT = 30.0
#: the whole burst of placements inside one worker
BURST_TIMEOUT = 40.0
#: from "go" until every worker has reported its result
RESULT_TIMEOUT = BURST_TIMEOUT + 10.0
#: an in-process burst
LOCAL_TIMEOUT = 30.0

Job = dict[str, Any]
Report = dict[str, Any]
#: bytes of a worker's report line (one JSON line; tracebacks of failures make it long)
REPORT_LINE_LIMIT = 16 * 1024 * 1024


# ---------------------------------------------------------------------------------------------
# placing many orders at once (in a worker process or in the test process)
# ---------------------------------------------------------------------------------------------
def _describe(exc: BaseException) -> dict[str, str]:
    return {"type": f"{type(exc).__module__}.{type(exc).__qualname__}", "message": str(exc),
            "traceback": "".join(traceback.format_exception(exc))[-3000:]}


async def place_many(engine: Engine, lines: Sequence[tuple[str, int]], count: int, *,
                     idempotency_key: str | None = None,
                     within: float = BURST_TIMEOUT) -> Report:
    """Fire ``count`` placements concurrently; sort the outcomes."""
    request = order_request(*lines, token="tok_success")
    report: Report = {"ok": [], "authorized": [], "out_of_stock": [], "errors": [],
                      "pid": os.getpid(), "started": time.time()}

    async def one() -> None:
        try:
            order = await engine.orders.place(request, idempotency_key=idempotency_key)
        except OutOfStock as exc:
            report["out_of_stock"].append(exc.shortages)
        except Exception as exc:
            report["errors"].append(_describe(exc))
        else:
            report["ok"].append(order.id)
            report["authorized"].append(bool(order.payments)
                                        and order.payments[-1].status == "authorized")

    try:
        await asyncio.wait_for(asyncio.gather(*(one() for _ in range(count))), within)
    except TimeoutError as exc:
        report["errors"].append(_describe(exc) | {"message": f"burst timed out after {within}s"})
    report["finished"] = time.time()
    return report


def gateway_calls(engine: Engine, operation: str) -> list[int]:
    """Amounts of the ``operation`` calls the sandbox gateway of this process carried out
    (it dedupes repeats of one idempotency key, as a real gateway does)."""
    sandbox = engine.host.pm.get_plugin("sandbox")
    return [amount for op, _pid, amount in sandbox.calls if op == operation]


def authorize_calls(engine: Engine) -> int:
    return len(gateway_calls(engine, "authorize"))


async def _worker(job: Job) -> Report:
    # a burst queues for the pool far longer than a server would let a request wait:
    # what is tested here is the stock, not the 503 that sheds such a load
    engine = Engine(EngineConfig(database_url=job["url"], load_entry_points=False,
                                 migrate=False, db_acquire_timeout_s=BURST_TIMEOUT),
                    plugins=builtin_plugins())
    await asyncio.wait_for(engine.start(), READY_TIMEOUT)
    try:
        lines = [(sku, qty) for sku, qty in job["lines"]]
        await engine.inventory.available([sku for sku, _ in lines])  # open a connection
        print(READY, flush=True)
        if sys.stdin.readline().strip() != "go":  # the start barrier; EOF: the test gave up
            return {"errors": [{"type": "aborted", "message": "no go signal",
                                "traceback": ""}], "ok": [], "out_of_stock": []}
        report = await place_many(engine, lines, job["count"],
                                  idempotency_key=job.get("idempotency_key"),
                                  within=job.get("within", BURST_TIMEOUT))
        report["authorize_calls"] = authorize_calls(engine)
        return report
    finally:
        await asyncio.wait_for(engine.stop(), 10)


def worker_main(raw_job: str) -> int:
    """Entry point of a worker process: run one job, print its report on stdout."""
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    try:
        report = asyncio.run(_worker(json.loads(raw_job)))
    except BaseException as exc:  # report anything, so the test can show it
        report = {"ok": [], "out_of_stock": [], "errors": [_describe(exc)]}
    print(RESULT + json.dumps(report), flush=True)
    return 0


# ---------------------------------------------------------------------------------------------
# orchestrating worker processes from the test
# ---------------------------------------------------------------------------------------------
class Workers:
    """Worker processes started for one test; always killed (by pid) on the way out."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[asyncio.subprocess.Process] = []
        self.logs: list[Path] = []

    async def start(self, jobs: Sequence[Job]) -> None:
        code = ("import sys; from tests.test_concurrency import worker_main; "
                "sys.exit(worker_main(sys.argv[1]))")
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        for i, job in enumerate(jobs):
            log_path = self.log_dir / f"worker-{i}.log"
            self.logs.append(log_path)
            with log_path.open("wb") as log_file:
                self.procs.append(await asyncio.create_subprocess_exec(
                    sys.executable, "-c", code, json.dumps(job), cwd=REPO_ROOT, env=env,
                    stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
                    stderr=log_file, limit=REPORT_LINE_LIMIT))

    async def _expect(self, index: int, marker: str, deadline: float) -> str:
        proc = self.procs[index]
        assert proc.stdout is not None
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"worker {index} sent no {marker.strip()!r} in time")
            line = await asyncio.wait_for(proc.stdout.readline(), remaining)
            if not line:
                raise RuntimeError(f"worker {index} exited before {marker.strip()!r} "
                                   f"(code {await proc.wait()})")
            text = line.decode().rstrip("\n")
            if text.startswith(marker):
                return text[len(marker):]

    async def wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        await asyncio.gather(*(self._expect(i, READY, deadline)
                               for i in range(len(self.procs))))

    async def go(self) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
        await asyncio.gather(*(proc.stdin.drain() for proc in self.procs if proc.stdin))

    async def results(self) -> list[Report]:
        deadline = time.monotonic() + RESULT_TIMEOUT
        raw = await asyncio.gather(*(self._expect(i, RESULT, deadline)
                                     for i in range(len(self.procs))))
        await asyncio.wait_for(asyncio.gather(*(p.wait() for p in self.procs)), 15)
        return [json.loads(r) for r in raw]

    def diagnostics(self) -> str:
        parts = []
        for i, path in enumerate(self.logs):
            text = path.read_text(errors="replace") if path.exists() else ""
            parts.append(f"--- worker {i} log (tail) ---\n{text[-4000:]}")
        return "\n".join(parts)

    async def close(self) -> None:
        for proc in self.procs:
            if proc.returncode is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
        for proc in self.procs:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), 10)


async def run_workers(jobs: Sequence[Job], log_dir: Path,
                      alongside: Callable[[], Awaitable[Report]] | None = None,
                      ) -> tuple[list[Report], Report | None]:
    """Start workers, release them together (and ``alongside`` in this process); collect."""
    workers = Workers(log_dir)
    try:
        await workers.start(jobs)
        await workers.wait_ready()
        await workers.go()
        local = await alongside() if alongside is not None else None
        return await workers.results(), local
    except Exception as exc:
        raise AssertionError(f"worker processes failed: {exc!r}\n{workers.diagnostics()}") \
            from exc
    finally:
        await workers.close()


# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------
async def all_orders(engine: Engine) -> list[Order]:
    """Every order, paging with the ``after`` cursor."""
    out: list[Order] = []
    after: str | None = None
    while True:
        page = await engine.orders.list(limit=200, after=after)
        out.extend(page)
        if len(page) < 200:
            return out
        after = page[-1].id


async def count(engine: Engine, table: str) -> int:
    rows = await engine.db.fetch(f"SELECT COUNT(*) AS n FROM {table}")
    return int(rows[0]["n"])


def other_errors(reports: Sequence[Report]) -> list[dict[str, str]]:
    return [err for report in reports for err in report["errors"]]


def format_errors(errors: Sequence[dict[str, str]]) -> str:
    shown = "\n".join(f"{e['type']}: {e['message']}\n{e['traceback']}" for e in errors[:3])
    return f"{len(errors)} unexpected errors; first ones:\n{shown}"


# ---------------------------------------------------------------------------------------------
# 1. no oversell across processes
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("layout", "quantity", "slices"), [
    pytest.param({"wh1": 50}, 1, 1, id="one-location"),
    pytest.param({"wh1": 30, "wh2": 20}, 1, 1, id="two-locations"),
    # 2 units per order over 25/25: after 12 orders per location one unit is left in
    # each, and the 25th order only succeeds by splitting its line over both
    pytest.param({"wh1": 25, "wh2": 25}, 2, 1, id="split-line"),
    # the hot level in 8 slices: each placement takes a slice no other one holds
    pytest.param({"wh1": 50}, 1, 8, id="one-location-sliced"),
    # 2 units over slices of 3 or 4 units: slices run down to one unit, which only
    # a line split over slices (and over locations) can sell
    pytest.param({"wh1": 25, "wh2": 25}, 2, 7, id="split-line-sliced"),
])
async def test_no_oversell_across_processes(make_engine: Any, database_url: str,
                                            tmp_path: Path, layout: dict[str, int],
                                            quantity: int, slices: int) -> None:
    assert sum(layout.values()) == HOT_STOCK
    seeder: Engine = await make_engine()
    await seed_shop(seeder)
    await seeder.catalog.upsert_product(Product(id="hot", name="Hot item", variants=[
        Variant(sku=HOT, product_id="hot", name="Hot item", prices={"EUR": 1000},
                weight_grams=100)]))
    for location_id, units in layout.items():
        await seeder.inventory.adjust(HOT, location_id, units, kind="receive")
        await seeder.inventory.set_slices(HOT, location_id, slices)
    assert (await seeder.inventory.available([HOT]))[HOT] == HOT_STOCK
    await seeder.stop()

    total = WORKERS * PER_WORKER
    expected_ok = HOT_STOCK // quantity
    jobs = [{"url": database_url, "lines": [[HOT, quantity]], "count": PER_WORKER}
            for _ in range(WORKERS)]
    reports, _ = await run_workers(jobs, tmp_path)

    errors = other_errors(reports)
    assert not errors, format_errors(errors)
    assert len({r["pid"] for r in reports}) == WORKERS
    # the processes really overlapped: every one started before any one finished
    assert max(r["started"] for r in reports) < min(r["finished"] for r in reports)
    ok = [oid for r in reports for oid in r["ok"]]
    refused = [s for r in reports for s in r["out_of_stock"]]
    assert len(ok) == expected_ok, [len(r["ok"]) for r in reports]
    assert len(set(ok)) == expected_ok
    assert len(refused) == total - expected_ok
    for shortages in refused:
        assert len(shortages) == 1
        assert shortages[0]["sku"] == HOT
        assert shortages[0]["requested"] == quantity
        assert 0 <= shortages[0]["available"] < quantity
    assert all(a for r in reports for a in r["authorized"])

    engine: Engine = await make_engine()
    assert (await engine.inventory.available([HOT]))[HOT] == 0
    levels = {lv.location_id: lv for lv in await engine.inventory.levels([HOT])}
    assert set(levels) == set(layout)
    for location_id, units in layout.items():
        assert (levels[location_id].on_hand, levels[location_id].reserved) == (units, units)
    assert await engine.inventory.ledger_discrepancies() == []
    moves = await engine.inventory.movements(sku=HOT, limit=1000)
    assert sum(m.reserved_delta for m in moves if m.kind == "reserve") == HOT_STOCK
    assert sum(m.on_hand_delta for m in moves) == HOT_STOCK
    assert {m.kind for m in moves} == {"receive", "reserve"}

    orders = await all_orders(engine)
    assert await count(engine, "orders") == len(orders) == expected_ok
    assert {o.id for o in orders} == set(ok)
    allocated: dict[str, int] = {}
    for order in orders:
        assert [(ln.sku, ln.quantity) for ln in order.lines] == [(HOT, quantity)]
        assert sum(a.quantity for a in order.lines[0].allocations) == quantity
        for alloc in order.lines[0].allocations:
            allocated[alloc.location_id] = allocated.get(alloc.location_id, 0) + alloc.quantity
        assert len(order.payments) == 1, order.payments
        payment = order.payments[0]
        assert payment.status == "authorized"
        assert payment.authorized == order.totals.total > 0
        assert order.status == "processing"
    assert allocated == layout


OTHER = "HOT-B"


@pytest.mark.parametrize("slices", [
    pytest.param(1, id="unsliced"),
    # HOT-B's levels in slices: its split takes slices no other placement holds, and gives
    # them back to try again rather than wait while it holds HOT's row
    pytest.param(5, id="sliced"),
])
async def test_placements_of_two_skus_in_opposite_line_orders_neither_deadlock_nor_oversell(
        make_engine: Any, database_url: str, tmp_path: Path, slices: int) -> None:
    """Every line of a placement is reserved by one statement; its rows are locked in one
    order whatever the order of the lines, and a SKU that has to be split over locations
    (2 units over 25/25) is reserved on rows the statement already locked."""
    seeder: Engine = await make_engine()
    await seed_shop(seeder)
    await seeder.catalog.upsert_product(Product(id="hot", name="Hot items", variants=[
        Variant(sku=sku, product_id="hot", name=sku, prices={"EUR": 1000}, weight_grams=100)
        for sku in (HOT, OTHER)]))
    await seeder.inventory.adjust(HOT, "wh1", 100, kind="receive")
    await seeder.inventory.adjust(OTHER, "wh1", 25, kind="receive")
    await seeder.inventory.adjust(OTHER, "wh2", 25, kind="receive")
    for location_id in ("wh1", "wh2"):
        await seeder.inventory.set_slices(OTHER, location_id, slices)
    await seeder.stop()

    forward, backward = [[HOT, 1], [OTHER, 2]], [[OTHER, 2], [HOT, 1]]
    jobs = [{"url": database_url, "lines": forward if i % 2 else backward, "count": 20}
            for i in range(WORKERS)]
    reports, _ = await run_workers(jobs, tmp_path)

    errors = other_errors(reports)
    assert not errors, format_errors(errors)
    ok = [oid for r in reports for oid in r["ok"]]
    refused = [s for r in reports for s in r["out_of_stock"]]
    assert len(ok) == 25
    assert len(refused) == WORKERS * 20 - 25
    assert all([s["sku"] for s in shortages] == [OTHER] for shortages in refused)

    engine: Engine = await make_engine()
    assert await engine.inventory.available([HOT, OTHER]) == {HOT: 75, OTHER: 0}
    levels = {(lv.sku, lv.location_id): (lv.on_hand, lv.reserved)
              for lv in await engine.inventory.levels([HOT, OTHER])}
    assert levels == {(HOT, "wh1"): (100, 25), (OTHER, "wh1"): (25, 25),
                      (OTHER, "wh2"): (25, 25)}
    assert await engine.inventory.ledger_discrepancies() == []
    for order in await all_orders(engine):
        assert {ln.sku: sum(a.quantity for a in ln.allocations) for ln in order.lines} == {
            HOT: 1, OTHER: 2}


# ---------------------------------------------------------------------------------------------
# 2. concurrent duplicates with one idempotency key
# ---------------------------------------------------------------------------------------------
async def _snapshot(engine: Engine) -> dict[str, Any]:
    return {table: await count(engine, table) for table in (
        "orders", "stock_movements", "events", "idempotency_records", "external_refs")} | {
        "levels": await engine.inventory.levels(),
        "orders_data": [(o.id, o.version, o.status) for o in await all_orders(engine)]}


async def test_concurrent_duplicates_with_one_idempotency_key_make_one_order(
        engine: Engine, database_url: str, tmp_path: Path) -> None:
    key = "same-key"
    lines = [("SHIRT-M", 1)]
    before = {lv.location_id: lv.reserved for lv in await engine.inventory.levels(["SHIRT-M"])}

    async def local() -> Report:
        return await place_many(engine, lines, 20, idempotency_key=key, within=LOCAL_TIMEOUT)

    (remote,), mine = await run_workers(
        [{"url": database_url, "lines": lines, "count": 10, "idempotency_key": key}],
        tmp_path, alongside=local)
    assert mine is not None
    errors = other_errors([remote, mine])
    assert not errors, format_errors(errors)
    assert remote["pid"] != mine["pid"]
    ids = remote["ok"] + mine["ok"]
    assert len(ids) == 30
    assert len(set(ids)) == 1, set(ids)
    order_id = ids[0]

    orders = await all_orders(engine)
    assert [o.id for o in orders] == [order_id]
    order = orders[0]
    assert len(order.payments) == 1
    assert order.payments[0].status == "authorized"
    assert order.status == "processing"
    # one authorization with the gateway, over both processes
    assert authorize_calls(engine) + remote["authorize_calls"] == 1
    # stock reserved once
    after = {lv.location_id: lv.reserved for lv in await engine.inventory.levels(["SHIRT-M"])}
    assert after["wh1"] == before["wh1"] + 1
    moves = await engine.inventory.movements(sku="SHIRT-M")
    assert [(m.kind, m.reserved_delta, m.order_id) for m in moves if m.kind == "reserve"] == [
        ("reserve", 1, order_id)]
    assert await count(engine, "idempotency_records") == 1
    assert await engine.inventory.ledger_discrepancies() == []

    # the same key with another body is refused, alone or in a crowd, and changes nothing
    state = await _snapshot(engine)
    with pytest.raises(IdempotencyMismatch):
        await engine.orders.place(order_request(("SHIRT-M", 2)), idempotency_key=key)
    outcomes = await asyncio.wait_for(asyncio.gather(
        *(engine.orders.place(order_request(("MUG", 1)), idempotency_key=key)
          for _ in range(5)), return_exceptions=True), LOCAL_TIMEOUT)
    assert all(isinstance(o, IdempotencyMismatch) for o in outcomes), outcomes
    assert await _snapshot(engine) == state
    # and the original request still replays the original order
    again = await engine.orders.place(order_request(*lines), idempotency_key=key)
    assert again.id == order_id
    assert await _snapshot(engine) == state


# ---------------------------------------------------------------------------------------------
# 3. concurrent captures
# ---------------------------------------------------------------------------------------------
class SlowSandbox(SandboxGateway):
    """The sandbox gateway with network latency on captures: a capture stays in flight
    long enough for every concurrent one to run into it (on SQLite too, where the write
    lock otherwise tends to serialize whole captures)."""

    latency = 0.05

    @hookimpl
    async def ordnung_capture(self, request: PaymentRequest) -> GatewayResult:
        await asyncio.sleep(self.latency)
        return SandboxGateway.ordnung_capture(self, request)


@pytest.mark.parametrize("gateway", [SandboxGateway, SlowSandbox], ids=["instant", "slow"])
async def test_concurrent_captures_never_capture_more_than_authorized(
        make_engine: Any, gateway: type[SandboxGateway]) -> None:
    plugins = [(gateway, "sandbox", {}), *(p for p in builtin_plugins()
                                           if not (isinstance(p, tuple) and p[1] == "sandbox"))]
    engine: Engine = await make_engine(plugins=plugins)
    await seed_shop(engine)
    order = await engine.orders.place(order_request(("SHIRT-M", 2)))
    payment = order.payments[0]
    assert payment.status == "authorized"
    authorized = payment.authorized
    part = authorized // 4 + 1  # 10 x part > authorized; at most 3 parts fit
    fits = authorized // part
    assert 10 * part > authorized and fits == 3

    winners = 0
    for _round in range(10):
        outcomes = await asyncio.wait_for(asyncio.gather(
            *(engine.payments.capture(order.id, amount=part) for _ in range(10)),
            return_exceptions=True), LOCAL_TIMEOUT)
        unexpected = [o for o in outcomes
                      if isinstance(o, BaseException)
                      and not isinstance(o, Conflict | InvariantViolation)]
        assert not unexpected, [_describe(o) for o in unexpected]
        won = sum(1 for o in outcomes if isinstance(o, Order))
        winners += won
        current = (await engine.orders.get(order.id)).payments[0]
        assert current.captured == winners * part <= authorized
        assert current.in_flight == ""
        if won == 0:
            # nothing in flight any more: everyone was refused for want of money
            assert all(isinstance(o, InvariantViolation) for o in outcomes), outcomes
            break
    else:
        pytest.fail("captures kept succeeding beyond what was authorized")

    final = await engine.orders.get(order.id)
    assert final.payments[0].captured == fits * part <= authorized
    # the gateway was asked for exactly what was recorded: no capture the books lost
    assert gateway_calls(engine, "capture") == [part] * fits
    assert final.payments[0].status == "partially_captured"
    rows = await engine.db.fetch("SELECT captured, authorized FROM orders WHERE id = {}",
                                 order.id)
    assert (rows[0]["captured"], rows[0]["authorized"]) == (fits * part, authorized)
    with pytest.raises(InvariantViolation):
        await engine.payments.capture(order.id, amount=authorized - fits * part + 1)
    # the rest can still be captured, exactly
    done = await engine.payments.capture(order.id)
    assert done.payments[0].captured == authorized
    assert sum(gateway_calls(engine, "capture")) == authorized
    assert done.payments[0].status == "captured"
