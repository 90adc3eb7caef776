"""``python -m bench growth``: does the cost of a request grow with the data?

One database grows through ``--sizes``: template orders are made through the API (bench/
templates.py), then copied in bulk straight into the tables (bench/bulk.py) up to each
size, the newest orders being the warehouse's backlog and the older ones delivered or
cancelled history. At each size a fresh server times, one request at a time, the reads a
shop makes all day (the staff's order list filtered by status and channel, by two
states, and a page deep in it; a customer's order history, the fulfilment queue, an
order's timeline, a variant's availability), then a short placement run. ``--explain
DIR`` writes the query plans of the reads at each size.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench import bulk, load, server, stores, templates
from bench.shop import seed

#: stock per SKU: enough for a million seeded orders (each takes the gift and 1-4 lines)
UNITS = 100_000_000
BATCH = 5_000


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--sizes", default="10000,100000,1000000",
                        help="growth: orders in the database at each step (comma list)")
    parser.add_argument("--reads", type=int, default=100,
                        help="growth: requests per read at each size (p50, p95)")
    parser.add_argument("--explain", type=Path, default=None, metavar="DIR",
                        help="growth: write the reads' query plans at each size to DIR")


@dataclass(frozen=True)
class Read:
    """One read a shop makes all day: the path of its n-th request (spread over the sampled
    orders and customers), asked with the admin key or, for shoppers' reads, a storefront
    key."""

    name: str
    path: Callable[[int], str]
    storefront: bool = False


def reads(samples: dict[str, list[str]]) -> list[Read]:
    orders, customers, deep = samples["orders"], samples["customers"], samples["deep"]
    skus = "&".join(f"sku=BENCH-{i:03d}" for i in range(3))
    return [
        Read("order_list", lambda n: "/orders?status=cancelled&channel=app&limit=50"),
        Read("order_list_states",
             lambda n: "/orders?status=delivered&status=cancelled&limit=50"),
        Read("order_list_deep", lambda n: f"/orders?status=delivered&limit=50"
                                          f"&after={deep[n % len(deep)]}"),
        Read("customer_history", lambda n: f"/orders?customer_id={customers[n % len(customers)]}"),
        Read("fulfilment_queue", lambda n: "/fulfilment/queue?limit=100"),
        Read("timeline", lambda n: f"/orders/{orders[n % len(orders)]}/timeline"),
        Read("availability", lambda n: f"/catalogue/availability?{skus}", storefront=True),
    ]


#: the statements behind each read, for ``--explain`` (as the stores write them)
EXPLAINED = {
    "order_list": ("SELECT data FROM orders WHERE channel = 'app' AND status = 'cancelled' "
                   "ORDER BY id DESC LIMIT 50", ()),
    "order_list_states": ("SELECT data FROM (" + " UNION ALL ".join(
        f"SELECT * FROM (SELECT data, id FROM orders WHERE status = '{state}' "
        f"ORDER BY id DESC LIMIT 50) AS part{n}"
        for n, state in enumerate(("cancelled", "delivered")))
        + ") AS merged ORDER BY id DESC LIMIT 50", ()),
    "order_list_deep": ("SELECT data FROM orders WHERE id < ? AND status = 'delivered' "
                        "ORDER BY id DESC LIMIT 50", ("deep",)),
    "customer_history": ("SELECT data FROM orders WHERE customer_id = ? ORDER BY id DESC "
                         "LIMIT 50", ("customers",)),
    "fulfilment_queue": (
        "SELECT data FROM ("
        "SELECT * FROM (SELECT data, priority, id FROM orders WHERE status = 'processing' "
        "ORDER BY priority DESC, id LIMIT 100) AS part0 UNION ALL "
        "SELECT * FROM (SELECT data, priority, id FROM orders "
        "WHERE status = 'partially_fulfilled' ORDER BY priority DESC, id LIMIT 100) AS part1"
        ") AS queue ORDER BY priority DESC, id LIMIT 100", ()),
    "fulfilment_queue_after": (
        "SELECT data FROM (" + " UNION ALL ".join(
            f"SELECT * FROM (SELECT data, priority, id FROM orders WHERE status = '{state}' "
            + ("AND priority >= (SELECT priority FROM orders WHERE id = ?) "
               "AND priority <= (SELECT priority FROM orders WHERE id = ?) AND id > ? "
               f"ORDER BY priority DESC, id LIMIT 100) AS same{n}" if same else
               f"AND priority < (SELECT priority FROM orders WHERE id = ?) "
               f"ORDER BY priority DESC, id LIMIT 100) AS lower{n}")
            for n, state in enumerate(("processing", "partially_fulfilled"))
            for same in (True, False))
        + ") AS queue ORDER BY priority DESC, id LIMIT 100", ("orders",) * 8),
    "timeline": ("SELECT data FROM events WHERE order_id = ? ORDER BY seq, id", ("orders",)),
    "availability": ("SELECT s.sku, SUM(s.on_hand - s.reserved) AS available FROM "
                     "stock_levels s JOIN locations l ON l.id = s.location_id WHERE l.active "
                     "AND s.sku IN ('BENCH-000', 'BENCH-001', 'BENCH-002') GROUP BY s.sku", ()),
}


async def sample(store: stores.Store, size: int) -> dict[str, list[str]]:
    """Orders and customers spread over the whole history (read once, not timed)."""
    rng = random.Random(size)
    offsets = sorted(rng.randrange(size) for _ in range(20))
    orders: list[str] = []
    customers: list[str] = []
    for offset in offsets:
        orders += await store.values(f"SELECT id FROM orders ORDER BY id LIMIT 1 OFFSET {offset}")
        customers += await store.values(
            "SELECT customer_id FROM orders WHERE customer_id IS NOT NULL ORDER BY id "
            f"LIMIT 1 OFFSET {offset // 2}")
    deep = await store.values(f"SELECT id FROM orders ORDER BY id LIMIT 1 OFFSET {size // 2}")
    return {"orders": orders, "customers": customers, "deep": deep}


async def time_reads(srv: server.Server, storefront: dict[str, str],
                     samples: dict[str, list[str]], count: int
                     ) -> dict[str, dict[str, float | None]]:
    figures: dict[str, dict[str, float | None]] = {}
    async with httpx.AsyncClient(base_url=srv.url, timeout=60) as client:
        for read in reads(samples):
            headers = storefront if read.storefront else srv.admin
            for n in range(3):  # warm the caches and the connections
                await client.get(read.path(n), headers=headers)
            latencies: list[float] = []
            cpu = srv.cpu_seconds()
            for n in range(count):
                started = time.perf_counter()
                response = await client.get(read.path(n), headers=headers)
                latencies.append((time.perf_counter() - started) * 1000)
                if response.status_code != 200:
                    raise RuntimeError(f"{read.name}: {response.status_code} "
                                       f"{response.text[:300]}")
            cpu_after = srv.cpu_seconds()
            ordered = sorted(latencies)
            figures[read.name] = {
                # the server's own CPU per request: steady however busy the machine is
                # (on SQLite it includes the query; PostgreSQL runs it in its own process)
                "cpu_ms": round((cpu_after - cpu) * 1000 / count, 2)
                if cpu is not None and cpu_after is not None else None,
                "p50_ms": round(ordered[len(ordered) // 2], 2),
                "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))], 2),
                "items": len(response.json().get("items", response.json())),
            }
    return figures


async def explain(store: stores.Store, samples: dict[str, list[str]], size: int,
                  directory: Path, db: str) -> None:
    lines = []
    for name, (sql, keys) in EXPLAINED.items():
        args = [samples[k][0] for k in keys]
        plan = await store.explain(sql, *args)
        lines.append(f"-- {name} ({db}, {size} orders)\n{sql}\n{plan}\n")
    await asyncio.to_thread(write_text, directory / f"{db}-{size}.txt", "\n".join(lines))


def write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


async def place(srv: server.Server, storefront: dict[str, str], skus: list[str],
                orders: int, concurrency: int) -> dict[str, Any]:
    await load.drive(srv.url, load.one_shot(storefront, skus, seed=3), 30, concurrency)
    await asyncio.sleep(0.6)
    statements, cpu = srv.statements(), srv.cpu_seconds()
    outcome = await load.drive(srv.url, load.one_shot(storefront, skus), orders, concurrency)
    await asyncio.sleep(0.6)
    placed = outcome.statuses.get(201, 0)
    cpu_after = srv.cpu_seconds()
    return {
        "orders_per_s": round(placed / outcome.elapsed_s, 1) if outcome.elapsed_s else 0.0,
        "p50_ms": outcome.percentile(50), "p99_ms": outcome.percentile(99),
        "errors": sum(n for s, n in outcome.statuses.items() if s >= 400),
        "sql_per_order": round((srv.statements() - statements) / placed, 2) if placed else None,
        "server_cpu_ms_per_order": round((cpu_after - cpu) * 1000 / placed, 2)
        if placed and cpu is not None and cpu_after is not None else None,
    }


async def seed_to(store: stores.Store, plan: bulk.Plan, serials: range,
                  customers: set[int]) -> float:
    """Seed ``serials``; the next batch is made in a thread while the last one is written
    (the drivers leave the interpreter lock while the database works)."""
    started = time.perf_counter()
    batches = [range(first, min(first + BATCH, serials.stop))
               for first in range(serials.start, serials.stop, BATCH)]
    making = asyncio.create_task(asyncio.to_thread(bulk.batch_rows, plan, batches[0], customers)
                                 ) if batches else None
    for n in range(len(batches)):
        assert making is not None
        batch = await making
        if n + 1 < len(batches):
            making = asyncio.create_task(asyncio.to_thread(bulk.batch_rows, plan,
                                                           batches[n + 1], customers))
        await store.write(batch)
    await store.finish()
    return time.perf_counter() - started


async def run(args: argparse.Namespace, sizes: list[int]) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    async with server.fresh_database(args.db) as url:
        async with server.running_server(url, args.workers) as srv:
            shop = await seed(srv, skus=50, units=UNITS, hot_units=0)
            made = await templates.make(srv.url, srv.admin, shop["skus"])
            await asyncio.sleep(2.0)  # the outbox's reactions run before the server stops
        store = await stores.open_store(url)
        try:
            customer_ids = frozenset(t.customer_id for t in made if t.customer_id)
            compiled = [bulk.compile_rows(t, await stores.template_rows(
                store, t.order_id, t.customer_id), customer_ids) for t in made]
            plan = bulk.Plan(compiled, datetime.now(UTC))
            customers: set[int] = set()
            done = 0
            for size in sizes:
                seed_s = await seed_to(store, plan, range(done, size), customers)
                done = size
                samples = await sample(store, size)
                # the queue's work grows with the backlog (each step's placements join it),
                # not with the history
                backlog = (await store.values(
                    "SELECT COUNT(*) FROM orders WHERE status IN ('processing', "
                    "'partially_fulfilled')"))[0]
                if args.explain:
                    await explain(store, samples, size, args.explain, args.db)
                async with server.running_server(url, args.workers) as srv:
                    figures = await time_reads(srv, shop["storefront"], samples, args.reads)
                    placement = await place(srv, shop["storefront"], shop["skus"],
                                            args.orders, args.concurrency)
                result = {"size": size, "seed_s": round(seed_s, 1), "backlog": backlog,
                          "reads": figures, "placement": placement}
                print(json.dumps(result), file=sys.stderr, flush=True)
                results.append(result)
        finally:
            await store.close()
    return results


def table(results: list[dict[str, Any]]) -> str:
    names = list(results[0]["reads"])
    head = ["orders", "seed s", "backlog", "place/s", "place p99", "place CPU ms",
            *(f"{n} p50/p95 (CPU) ms" for n in names)]
    rows = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        p = r["placement"]
        cells = [f"{r['size']:,}", str(r["seed_s"]), str(r["backlog"]), str(p["orders_per_s"]),
                 str(p["p99_ms"]), str(p["server_cpu_ms_per_order"]),
                 *(f"{r['reads'][n]['p50_ms']} / {r['reads'][n]['p95_ms']} "
                   f"({r['reads'][n]['cpu_ms']})" for n in names)]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows)


def main(args: argparse.Namespace) -> int:
    sizes = sorted(int(s) for s in args.sizes.split(","))
    if args.orders is None:
        args.orders = 400
    started = time.perf_counter()
    results = load.run(run(args, sizes))
    print(table(results), file=sys.stderr)
    print(json.dumps({"scenario": "growth", "db": args.db, "workers": args.workers,
                      "concurrency": args.concurrency, "placement_orders": args.orders,
                      "reads_per_size": args.reads, "sizes": results,
                      "wall_s": round(time.perf_counter() - started, 1),
                      "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
                      "date": datetime.now(UTC).date().isoformat()}))
    errors = sum(r["placement"]["errors"] for r in results)
    return 0 if errors == 0 else 1
