"""``python -m bench SCENARIO``: benchmark a real server and print one JSON line of figures.

Scenarios: ``placement`` (one-shot order create), ``checkout`` (the cart flow request by
request; ``--api graphql`` runs the same flow through ``/graphql``), ``guest-checkout``
(a guest's checkout in six REST requests, for side-by-side comparisons; no floor;
``steps`` times each of its requests on its own, bench/steps.py) and
``hot-sku`` (a flash sale on one scarce SKU); ``hot-row`` (bench/hot_row.py: that SKU's
reservations straight through the store, as one row and in slices, no server);
``growth`` (bench/growth.py) seeds large databases in bulk and times reads and
placement at each size; ``bare`` (bench/bare.py) measures a bare litestar handler: the
framework's own CPU per request on this machine, the unit to read the others' CPU in.
Each run starts ``ordnung serve`` on a fresh database, seeds a generated catalogue over
the API, warms up, drives ``--orders`` orders at ``--concurrency``, verifies the
database, measures the floor (the same transactions straight through the driver) and
prints the figures; the last line of stdout is one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

from bench import app, bare, floor, growth, hot_row, load, profile, receivers, server, steps
from bench.shop import seed

HOT_UNITS = 1_000
#: slices of the hot SKU's level: about the placements that run at once (README, Inventory)
HOT_SLICES = 8


async def verify(database_url: str, ids: list[str]) -> dict[str, int]:
    """What the database says after the run: oversold levels, ledger, lost orders."""
    if database_url.startswith("postgres"):
        conn = await asyncpg.connect(database_url)
        fetch = conn.fetch
    else:
        import aiosqlite

        conn = await aiosqlite.connect(database_url.split("sqlite:///", 1)[1])

        async def fetch(sql: str) -> list[Any]:
            cursor = await conn.execute(sql.replace("$", ""))
            return list(await cursor.fetchall())
    try:
        oversold = (await fetch("SELECT COUNT(*) FROM stock_levels WHERE NOT allow_backorder "
                                "AND reserved > on_hand"))[0][0]
        ledger = (await fetch(
            "SELECT COUNT(*) FROM (SELECT s.sku, s.location_id, s.on_hand, s.reserved, "
            "COALESCE(SUM(m.on_hand_delta), 0) AS oh, COALESCE(SUM(m.reserved_delta), 0) AS rs "
            "FROM (SELECT sku, location_id, SUM(on_hand) AS on_hand, SUM(reserved) AS reserved "
            "FROM stock_levels GROUP BY sku, location_id) s "
            "LEFT JOIN stock_movements m ON m.sku = s.sku "
            "AND m.location_id = s.location_id AND m.location_id <> 'floor' "
            "GROUP BY s.sku, s.location_id, s.on_hand, s.reserved) x "
            "WHERE x.on_hand <> x.oh OR x.reserved <> x.rs"))[0][0]
        known = {r[0] for r in await fetch("SELECT id FROM orders WHERE id NOT LIKE 'fl_%'")}
        return {"oversold": int(oversold), "ledger_discrepancies": int(ledger),
                "lost_orders": len(set(ids) - known), "orders_in_db": len(known)}
    finally:
        await conn.close()


async def sample_payload(database_url: str) -> str:
    if database_url.startswith("postgres"):
        conn = await asyncpg.connect(database_url)
        try:
            return str(await conn.fetchval("SELECT data FROM orders LIMIT 1"))
        finally:
            await conn.close()
    import aiosqlite

    async with aiosqlite.connect(database_url.split("sqlite:///", 1)[1]) as conn:
        cursor = await conn.execute("SELECT data FROM orders LIMIT 1")
        row = await cursor.fetchone()
        return str(row[0]) if row else "{}"


async def run(args: argparse.Namespace) -> dict[str, Any]:
    hooks = receivers.Receivers(args.webhooks)
    env = {"ORDNUNG_WEBHOOKS_ALLOW_PRIVATE": "true"} if args.webhooks else {}
    async with server.fresh_database(args.db) as url:
        async with server.running_server(url, args.workers, env) as srv, hooks:
            hot_units = HOT_UNITS if args.scenario == "hot-sku" else 0
            shop = await seed(srv, skus=50, units=1_000_000, hot_units=hot_units,
                              hot_slices=args.slices, gift_slices=args.gift_slices)
            await hooks.register(srv.url, srv.admin)
            headers = shop["storefront"]
            if args.scenario == "placement":
                attempt = load.one_shot(headers, shop["skus"])
            elif args.scenario == "checkout" and args.api == "graphql":
                attempt = load.graphql_checkout(headers, shop["skus"])
            elif args.scenario == "checkout":
                attempt = load.checkout(headers, shop["skus"])
            elif args.scenario == "guest-checkout":
                attempt = load.guest_checkout(headers, shop["skus"])
            else:
                attempt = load.hot(headers, "BENCH-HOT")
            if args.warmup and args.scenario != "hot-sku":
                await load.drive(srv.url, load.one_shot(headers, shop["skus"], seed=3)
                                 if args.scenario == "placement" else attempt,
                                 args.warmup, args.concurrency)
            await asyncio.sleep(0.6)  # let the workers' statement counters settle
            before = srv.statements()
            usage_before = srv.worker_usage()
            sampling = (profile.sampling(srv.worker_pids(), args.profile) if args.profile
                        else contextlib.nullcontext())
            load_cpu = time.process_time()  # this process runs only the load driver now
            with sampling:
                outcome = await load.drive(srv.url, attempt, args.orders, args.concurrency,
                                           args.duration)
            load_cpu = time.process_time() - load_cpu
            await asyncio.sleep(0.6)
            statements = srv.statements() - before
            usage_after = srv.worker_usage()
            delivered = hooks.delivered()
        # the server is stopped: the floor gets the database to itself, as the server had it
        checks = await verify(url, outcome.order_ids)
        payload = await sample_payload(url)
        floor_orders = args.floor_orders or min(args.orders, 5_000)
        floor_rate = 0.0 if args.scenario == "guest-checkout" else await asyncio.to_thread(
            floor.floor_per_s, url, floor_orders, args.concurrency, payload, shop["catalogue"])
        lean_rate = None if args.scenario == "guest-checkout" else await asyncio.to_thread(
            floor.lean_floor_per_s, url, floor_orders, args.concurrency, payload,
            shop["catalogue"])
    successes = outcome.statuses.get(201, 0)
    usage = server.usage_figures(usage_before, usage_after, successes)
    orders_per_s = successes / outcome.elapsed_s if outcome.elapsed_s else 0.0
    errors = sum(n for status, n in outcome.statuses.items() if status >= 400)
    unexpected = sum(n for status, n in outcome.statuses.items()
                     if status >= 500 or (status >= 400 and args.scenario != "hot-sku"))
    return {
        "scenario": args.scenario, "api": args.api, "db": args.db, "workers": args.workers,
        "concurrency": args.concurrency, "orders": args.orders, "duration_s": args.duration,
        "hot_slices": args.slices if args.scenario == "hot-sku" else None,
        "gift_slices": args.gift_slices,
        "succeeded": successes,
        "orders_per_s": round(orders_per_s, 1),
        "attempts_per_s": round(sum(outcome.statuses.values()) / outcome.elapsed_s, 1)
        if outcome.elapsed_s else 0.0,
        "p50_ms": outcome.percentile(50), "p99_ms": outcome.percentile(99),
        "errors": errors, "unexpected_errors": unexpected,
        "error_types": dict(outcome.problem_types),
        "oversold": checks["oversold"], "ledger_discrepancies": checks["ledger_discrepancies"],
        "lost_orders": checks["lost_orders"],
        "floor_per_s": round(floor_rate, 1) if floor_rate else None,
        "ratio": round(orders_per_s / floor_rate, 3) if floor_rate else None,
        "lean_floor_per_s": round(lean_rate, 1) if lean_rate else None,
        "lean_ratio": round(orders_per_s / lean_rate, 3) if lean_rate else None,
        "sql_per_order": round(statements / successes, 2) if successes else None,
        **usage,
        "load_cpu_ms_per_order": round(load_cpu * 1000 / successes, 2) if successes else None,
        "elapsed_s": round(outcome.elapsed_s, 2),
        "webhook_endpoints": args.webhooks,
        "webhook_messages_received": delivered,
        "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
        "date": datetime.now(UTC).date().isoformat(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench",
                                     description="Benchmark a real ordnung server.")
    parser.add_argument("scenario", choices=["placement", "checkout", "guest-checkout",
                                             "hot-sku", "hot-row", "growth", "bare", "steps",
                                             "app"])
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--api", choices=["rest", "graphql"], default="rest",
                        help="checkout: the cart flow over REST or over GraphQL")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--orders", type=int, default=None,
                        help="orders to time (default 2000; hot-sku: 10000 attempts; "
                             "growth: 400 placements per size)")
    parser.add_argument("--duration", type=float, default=None, metavar="S",
                        help="stop starting orders after S seconds (--orders is then a cap; "
                             "guest-checkout's default: 20 s)")
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--gift-slices", type=int, default=1, metavar="N",
                        help="placement, checkout, guest-checkout: the free gift's level in "
                             "N slices, on the server and in the floor (default 1: one row, "
                             "which every order that earns the gift locks until it commits)")
    parser.add_argument("--slices", type=int, default=HOT_SLICES, metavar="N",
                        help="hot-sku: the hot SKU's level in N slices (1: one row; "
                             f"default {HOT_SLICES}, as the README recommends)")
    parser.add_argument("--webhooks", type=int, default=0, metavar="N",
                        help="register N webhook endpoints for every event type, the last "
                             "one down (nothing listens), the others answering 204")
    parser.add_argument("--floor-orders", type=int, default=0,
                        help="orders for the floor measurement (default: --orders, max 5000)")
    parser.add_argument("--profile", type=Path, default=None, metavar="DIR",
                        help="sample the workers with py-spy during the timed load; "
                             "stacks go to DIR, a summary to stderr")
    growth.add_arguments(parser)
    hot_row.add_arguments(parser)
    app.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.scenario == "growth":
        return growth.main(args)
    if args.scenario == "hot-row":
        return hot_row.main(args)
    if args.scenario == "bare":
        return bare.main(args)
    if args.scenario == "steps":
        return steps.main(args)
    if args.scenario == "app":
        return app.main(args, argv)
    if args.scenario == "guest-checkout" and args.duration is None and args.orders is None:
        args.duration = 20.0
    if args.orders is None:
        args.orders = 1_000_000 if args.duration else \
            10_000 if args.scenario == "hot-sku" else 2_000
    started = time.perf_counter()
    result = load.run(run(args))
    result["wall_s"] = round(time.perf_counter() - started, 1)
    for key in ("orders_per_s", "p50_ms", "p99_ms", "floor_per_s", "ratio", "lean_floor_per_s",
                "lean_ratio", "sql_per_order",
                "server_cpu_ms_per_order", "load_cpu_ms_per_order", "preempted_per_order",
                "worker_cpu_shares", "errors", "oversold"):
        print(f"{key:>14}: {result[key]}", file=sys.stderr)
    if args.profile:
        print(profile.summarise(args.profile), file=sys.stderr)
    print(json.dumps(result))
    ok = result["oversold"] == 0 and result["unexpected_errors"] == 0 and \
        result["lost_orders"] == 0 and result["ledger_discrepancies"] == 0
    if args.scenario == "hot-sku":
        ok = ok and result["succeeded"] == min(HOT_UNITS, args.orders)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
