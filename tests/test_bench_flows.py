"""The benchmark's request flows still work against the API as it is now.

The benchmarks run outside the test-suite, so an API change (a guest cart's token, a new
limit) could make every timed attempt fail without anyone noticing until the next
measurement. This runs each scenario with a handful of orders and checks the outcome only:
every attempt answered as the scenario expects, nothing oversold, nothing lost. No figure
is judged here; the figures are for ``python -m bench`` (BENCHMARKS.md).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_bench(*args: str, db: str = "sqlite") -> dict[str, object]:
    done = subprocess.run([sys.executable, "-m", "bench", *args, "--db", db],
                          cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-4000:]
    report: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return report


@pytest.mark.parametrize(("scenario", "api"), [("placement", "rest"), ("checkout", "rest"),
                                               ("checkout", "graphql")])
def test_a_bench_scenario_places_every_order(scenario: str, api: str) -> None:
    report = run_bench(scenario, "--api", api, "--workers", "1", "--concurrency", "4",
                       "--orders", "12", "--warmup", "0", "--floor-orders", "12")
    assert report["api"] == api, report
    assert report["succeeded"] == 12 and report["errors"] == 0, report
    assert report["oversold"] == 0 and report["lost_orders"] == 0, report
    assert report["ledger_discrepancies"] == 0, report


def test_placement_with_the_gift_in_slices_takes_one_slice_per_order_here_and_in_the_floor(
        ) -> None:
    """The gift's level in slices, on the server and in the floor (which must reserve one
    slice per order too, waiting a moment when others hold every slice)."""
    report = run_bench("placement", "--workers", "1", "--concurrency", "6", "--orders", "24",
                       "--warmup", "0", "--floor-orders", "24", "--gift-slices", "3",
                       db=os.environ.get("ORDNUNG_TEST_DB", "sqlite"))
    assert report["gift_slices"] == 3, report
    assert report["succeeded"] == 24 and report["errors"] == 0, report
    assert report["oversold"] == 0 and report["lost_orders"] == 0, report
    assert report["ledger_discrepancies"] == 0, report
    assert report["floor_per_s"], report


def test_placement_measures_the_floor_in_one_statement_per_transaction_on_postgresql(
        ) -> None:
    """The lean floor (each transaction one statement, refused whole unless every SKU was
    reserved) runs on PostgreSQL with enough stock for every order; SQLite has none."""
    db = os.environ.get("ORDNUNG_TEST_DB", "sqlite")
    report = run_bench("placement", "--workers", "1", "--concurrency", "4", "--orders", "12",
                       "--warmup", "0", "--floor-orders", "40", db=db)
    assert report["succeeded"] == 12 and report["errors"] == 0, report
    if db == "postgres":
        assert report["lean_floor_per_s"] and report["lean_ratio"], report
    else:
        assert report["lean_floor_per_s"] is None and report["lean_ratio"] is None, report


def test_the_guest_checkout_places_every_order_in_six_requests() -> None:
    report = run_bench("guest-checkout", "--workers", "2", "--concurrency", "4",
                       "--orders", "12", "--warmup", "0")
    assert report["succeeded"] == 12 and report["errors"] == 0, report
    assert report["oversold"] == 0 and report["lost_orders"] == 0, report
    assert report["ledger_discrepancies"] == 0, report
    assert report["floor_per_s"] is None, report  # a cart flow has no floor to compare
    # what the workers' CPU went to: one share per worker, and the waits for the network
    # (each order's six requests arrive over the network, so a worker waits for some)
    shares = report["worker_cpu_shares"]
    assert isinstance(shares, list) and len(shares) == 2, report
    assert abs(sum(shares) - 1) < 0.02, report
    assert isinstance(report["waits_per_order"], float) and report["waits_per_order"] > 0, report
    assert isinstance(report["preempted_per_order"], float), report


def test_the_growth_scenario_seeds_in_bulk_and_reads_at_each_size() -> None:
    report = run_bench("growth", "--workers", "1", "--sizes", "1500,3000", "--reads", "3",
                       "--orders", "8", "--concurrency", "2")
    sizes = report["sizes"]
    assert isinstance(sizes, list) and [s["size"] for s in sizes] == [1500, 3000], report
    for step in sizes:
        assert step["placement"]["errors"] == 0, step
        assert set(step["reads"]) == {
            "order_list", "order_list_states", "order_list_deep", "customer_history",
            "fulfilment_queue", "timeline", "availability"}, step
        # the seeded backlog fills the queue's page; the history is there to be read
        assert step["reads"]["fulfilment_queue"]["items"] == 100, step
        assert step["reads"]["order_list_deep"]["items"] == 50, step
        assert step["reads"]["timeline"]["items"] >= 3, step


def test_the_hot_row_scenario_sells_exactly_the_stock_as_one_row_and_in_slices() -> None:
    report = run_bench("hot-row", "--orders", "60", "--concurrency", "4", "--hold-ms", "0",
                       "--slice-counts", "4")
    assert report["slices"] == 4 and report["attempts"] == 60, report
    assert report["sold"] == report["units"] == 20 and report["exact"] is True, report


def test_the_bare_scenario_measures_a_bare_handler() -> None:
    report = run_bench("bare", "--orders", "1000", "--concurrency", "4")
    assert report["succeeded"] == 1000, report
    cpu = report["server_cpu_ms_per_request"]
    assert isinstance(cpu, float) and cpu > 0, report


def each_step_answered(report: dict[str, object], requests: int) -> dict[str, Any]:
    """The report's steps by name, after checking that every step of the guest checkout
    (and the edge's ``/health/live``) was timed in order and every request answered."""
    steps = report["steps"]
    assert isinstance(steps, list), report
    assert [s["step"] for s in steps] == [
        "create", "line_first", "line_second", "address", "shipping_method", "read",
        "order", "health_live"], report
    for step in steps:
        assert step["succeeded"] == step["requests"] == requests, step
    by_name = {s["step"]: s for s in steps}
    assert by_name["order"]["sql_per_request"] > by_name["read"]["sql_per_request"], report
    return by_name


def test_the_steps_scenario_times_each_request_of_the_guest_checkout() -> None:
    each_step_answered(run_bench("steps", "--workers", "1", "--concurrency", "4",
                                 "--orders", "10"), 10)


def test_the_app_scenario_times_each_request_of_the_guest_checkout_in_process() -> None:
    report = run_bench("app", "--orders", "6", "--rounds", "2")
    by_name = each_step_answered(report, 12)
    for step in by_name.values():
        assert step["cpu_us_median"] >= step["cpu_us_per_request"] > 0, step
    checkout = report["checkout_us"]
    assert isinstance(checkout, float) and checkout > by_name["order"]["cpu_us_per_request"]


def test_the_app_scenario_counts_the_log_pages_each_request_writes() -> None:
    report = run_bench("app", "--orders", "6", "--rounds", "1", "--wal-pages")
    by_name = each_step_answered(report, 6)
    # a read writes nothing; a change of a cart within the hour writes its row's page;
    # a placement writes the order, its events, outbox and stock rows and their indexes
    assert by_name["read"]["wal_pages_per_request"] == 0, report
    assert 1 <= by_name["address"]["wal_pages_per_request"] < 3, report
    assert by_name["order"]["wal_pages_per_request"] > 20, report
    pages = report["checkout_wal_pages"]
    assert isinstance(pages, float) and pages > by_name["order"]["wal_pages_per_request"]


@pytest.mark.skipif(shutil.which("valgrind") is None, reason="needs valgrind")
def test_the_app_scenario_counts_the_instructions_each_request_runs() -> None:
    report = run_bench("app", "--orders", "4", "--rounds", "1", "--instructions")
    by_name = each_step_answered(report, 4)
    counts = {name: step["instructions_per_request"] for name, step in by_name.items()}
    # a liveness answer runs the fewest, a read of a cart more, a placement the most
    assert 0 < counts["health_live"] < counts["read"] < counts["address"] < counts["order"], \
        report
    checkout = sum(counts[name] for name in ("create", "line_first", "line_second",
                                              "address", "shipping_method", "order"))
    assert report["checkout_instructions"] == pytest.approx(checkout, abs=6), report


def test_the_app_scenario_runs_against_the_package_of_another_tree(tmp_path: Path) -> None:
    """``--tree DIR`` measures DIR's ordnung with this harness (a before/after across
    commits): a copy of this tree whose liveness route answers 503 is the one that ran."""
    for part in ("core", "api", "plugins", "plugin", "migrations", "testing"):
        shutil.copytree(ROOT / part, tmp_path / part,
                        ignore=shutil.ignore_patterns("__pycache__"))
    health = tmp_path / "api" / "routes" / "health.py"
    source = health.read_text()
    marked = source.replace('''async def live() -> dict[str, str]:
    """The process is serving (always 200 while it is)."""
    return {"status": "ok"}''', '''async def live() -> Response[dict[str, str]]:
    """Changed in the copy: the bench must run this one."""
    return Response({"status": "copy"}, status_code=503)''')
    assert marked != source
    health.write_text(marked)  # the module imports litestar's Response already
    done = subprocess.run([sys.executable, "-m", "bench", "app", "--db", "sqlite",
                           "--orders", "3", "--rounds", "1", "--tree", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert done.stdout.strip(), done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["tree"] == str(tmp_path.resolve()), report
    by_name = {s["step"]: s for s in report["steps"]}
    assert by_name["health_live"]["succeeded"] == 0, report  # the copy's route answered
    assert by_name["order"]["succeeded"] == 3, report  # and the rest of the copy works
    assert done.returncode == 1, done.stderr[-2000:]  # not every request succeeded
