"""``python -m bench bare``: what the framework alone costs on this machine.

A bare litestar app under uvicorn, set up as ``ordnung serve`` sets up its workers
(httptools, uvloop, no access log), with one handler that decodes the placement's body
into a typed struct and answers 201 with a body the size of an order. The same driver
sends it the placement's request. Its ``server_cpu_ms_per_request`` is the floor under
any request of ordnung on the same machine: the CPU figures of the other scenarios are
best read as multiples of it, since the same tree gives different milliseconds on
different machines (and on one busy machine from one run to the next).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

import msgspec
from litestar import Litestar, post

from bench import load, server


class Line(msgspec.Struct):
    sku: str
    quantity: int


class Address(msgspec.Struct):
    name: str
    line1: str
    city: str
    postal_code: str
    country: str


class Payment(msgspec.Struct):
    gateway: str
    token: str


class Placement(msgspec.Struct):
    channel: str
    lines: list[Line]
    email: str
    shipping_address: Address
    shipping_method: str
    payment: Payment


@post("/orders", status_code=201)
async def place(data: Placement) -> dict[str, Any]:
    lines = [{"sku": line.sku, "quantity": line.quantity, "unit_price":
              {"amount": 2000, "currency": "EUR", "formatted": "€20.00"}} for line in data.lines]
    return {"id": "ord_" + os.urandom(8).hex(), "number": 1, "status": "placed",
            "channel": data.channel, "email": data.email, "lines": lines,
            "shipping_address": msgspec.to_builtins(data.shipping_address),
            "totals": {"total": {"amount": 6000, "currency": "EUR", "formatted": "€60.00"}}}


def app() -> Litestar:
    return Litestar(route_handlers=[place], debug=False, logging_config=None,
                    openapi_config=None)


async def drive(url: str, requests: int, concurrency: int, pid: int) -> dict[str, Any]:
    rng = random.Random(7)
    skus = [f"BENCH-{i:03d}" for i in range(50)]

    async def attempt(client: load.Client, n: int) -> tuple[int, dict[str, Any]]:
        response = await client.post("/orders", json=load.placement_body(rng, skus))
        return response.status_code, {}

    await load.drive(url, attempt, min(200, requests), concurrency)
    before = server.process_cpu_seconds(pid)
    outcome = await load.drive(url, attempt, requests, concurrency)
    used = server.process_cpu_seconds(pid) - before
    done = outcome.statuses.get(201, 0)
    return {"scenario": "bare", "requests": requests, "concurrency": concurrency,
            "succeeded": done, "requests_per_s": round(done / outcome.elapsed_s, 1),
            "p99_ms": outcome.percentile(99),
            "server_cpu_ms_per_request": round(used * 1000 / done, 3) if done else None,
            "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
            "date": datetime.now(UTC).date().isoformat()}


def wait_listening(port: int, process: subprocess.Popen[bytes], limit_s: float = 30) -> None:
    deadline = time.monotonic() + limit_s
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            if time.monotonic() > deadline or process.poll() is not None:
                raise RuntimeError("the bare server did not start") from None
            time.sleep(0.1)


def main(args: argparse.Namespace) -> int:
    """Serve the bare app in its own process, drive ``--orders`` requests (default 5000)
    at ``--concurrency``, print the figures; 0 if every request was answered 201."""
    requests = args.orders or 5000
    port = server.free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bench.bare:app", "--factory", "--port", str(port),
         "--http", "httptools", "--loop", "uvloop", "--no-access-log", "--log-level",
         "warning"], start_new_session=True)
    try:
        wait_listening(port, process)
        result = load.run(drive(f"http://127.0.0.1:{port}", requests, args.concurrency,
                                process.pid))
    finally:
        process.terminate()
        process.wait(10)
    print(f"server_cpu_ms_per_request: {result['server_cpu_ms_per_request']}",
          file=sys.stderr)
    print(json.dumps(result))
    return 0 if result["succeeded"] == requests else 1
