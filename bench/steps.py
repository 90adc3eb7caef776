"""``python -m bench steps``: what each request of the guest checkout costs on its own.

``guest-checkout`` reports the CPU of the whole six-request flow; this one takes it
apart. It starts ``ordnung serve`` on a fresh database, makes ``--orders`` guest carts
(timed as ``create``), then times each later step over all of them in turn: the first
line (which also takes the cart token's share of the write rate limits), a second
line, the address, the shipping method, a read of the cart, the order with its
payment; and last ``/health/live``, a route that touches nothing, for what the server's
edge and the framework cost alone. Each step reports the server's CPU and SQL
statements per request. With ``bench bare`` on the same machine it says where a
checkout's milliseconds go: the framework, the edge, or the step's own work.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from bench import load, server
from bench.shop import seed

#: the steps after ``create``, in the order a storefront makes them
STEPS: list[tuple[str, str, str]] = [
    ("line_first", "POST", "lines"), ("line_second", "POST", "lines"),
    ("address", "PUT", "addresses"), ("shipping_method", "PUT", "shipping-method"),
    ("read", "GET", ""), ("order", "POST", "order")]


async def measure(srv: server.Server, name: str, attempt: load.Attempt, requests: int,
                  concurrency: int) -> dict[str, Any]:
    await asyncio.sleep(0.3)  # the workers' statement counters settle
    cpu, statements = srv.cpu_seconds(), srv.statements()
    outcome = await load.drive(srv.url, attempt, requests, concurrency)
    await asyncio.sleep(0.3)
    cpu_after, statements_after = srv.cpu_seconds(), srv.statements()
    done = sum(n for status, n in outcome.statuses.items() if status < 400)
    return {"step": name, "requests": requests, "succeeded": done,
            "server_cpu_ms_per_request": round((cpu_after - cpu) * 1000 / requests, 3)
            if cpu is not None and cpu_after is not None else None,
            "sql_per_request": round((statements_after - statements) / requests, 2),
            "p99_ms": outcome.percentile(99)}


def step_body(name: str, skus: list[str], rng: random.Random) -> Callable[[], Any]:
    if name.startswith("line"):
        return lambda: {"sku": rng.choice(skus), "quantity": 1}
    if name == "address":
        return lambda: {"shipping": load.ADDRESS}
    if name == "shipping_method":
        return lambda: {"method": "flat_rate:standard"}
    if name == "order":
        return lambda: {"payment": {"gateway": "sandbox", "token": "tok_success"}}
    return lambda: None


async def run(args: argparse.Namespace) -> dict[str, Any]:
    requests = args.orders or 2000
    async with server.fresh_database(args.db) as url, \
            server.running_server(url, args.workers) as srv:
        shop = await seed(srv, skus=50, units=1_000_000, hot_units=0)
        headers, skus = shop["storefront"], shop["skus"]
        carts: list[tuple[str, dict[str, str]]] = []

        async def create(client: load.Client, n: int) -> tuple[int, dict[str, Any]]:
            r = await client.post("/carts", json={"email": f"steps{n}@example.com"},
                                  headers=headers)
            body = r.json()
            if r.status_code < 400:
                carts.append((body["id"], {**headers, "X-Cart-Token": body["cart_token"]}))
            return r.status_code, body

        results = [await measure(srv, "create", create, requests, args.concurrency)]
        rng = random.Random(17)
        for name, method, path in STEPS:
            body = step_body(name, skus, rng)

            async def step(client: load.Client, n: int, method: str = method,
                           path: str = path, body: Callable[[], Any] = body
                           ) -> tuple[int, dict[str, Any]]:
                cart_id, held = carts[n]
                target = f"/carts/{cart_id}/{path}".rstrip("/")
                r = await client.request(method, target, json=body(), headers=held)
                return r.status_code, r.json()

            results.append(await measure(srv, name, step, len(carts), args.concurrency))

        async def live(client: load.Client, n: int) -> tuple[int, dict[str, Any]]:
            r = await client.get("/health/live")
            return r.status_code, {}

        results.append(await measure(srv, "health_live", live, requests, args.concurrency))
    return {"scenario": "steps", "db": args.db, "workers": args.workers,
            "concurrency": args.concurrency, "steps": results,
            "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
            "date": datetime.now(UTC).date().isoformat()}


def main(args: argparse.Namespace) -> int:
    result = load.run(run(args))
    for step in result["steps"]:
        print(f"{step['step']:>16}: {step['server_cpu_ms_per_request']} ms CPU, "
              f"{step['sql_per_request']} statements", file=sys.stderr)
    print(json.dumps(result))
    return 0 if all(s["succeeded"] == s["requests"] for s in result["steps"]) else 1
