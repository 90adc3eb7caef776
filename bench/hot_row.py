"""``python -m bench hot-row``: one hot SKU's reservations straight through the store.

No HTTP and no server: ``--concurrency`` transactions at once, each reserving one unit of
the one SKU, holding its transaction ``--hold-ms`` more (what the rest of a placement
would take) and committing, until ``--orders`` attempts are made on a third as many units.
Run once per slice count in ``--slice-counts``: how many reservations a second the hot
level lets through as one row and in slices, apart from what the server's CPU allows
(which ``hot-sku`` measures with it). Prints one JSON object per slice count, and checks
that exactly the stock was sold.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from bench.server import fresh_database
from ordnung.core import Engine, EngineConfig, Product, Variant
from ordnung.core.domain.inventory import Location
from ordnung.core.persistence.database import Database
from ordnung.core.persistence.stock import StockStore, Want

SKU, LOCATION = "HOT", "wh"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--hold-ms", type=float, default=2.0,
                        help="hot-row: how long each transaction holds on after reserving")
    parser.add_argument("--slice-counts", default="1,8,16",
                        help="hot-row: the slice counts to run, one run each (comma list)")


async def _shop(url: str, units: int, slices: int) -> None:
    engine = Engine(EngineConfig(database_url=url, load_entry_points=False), plugins=[])
    await engine.start()
    try:
        await engine.inventory.upsert_location(Location(id=LOCATION, name="Warehouse"))
        await engine.catalog.upsert_product(Product(id="hot", name="Hot", variants=[
            Variant(sku=SKU, product_id="hot", name="Hot", prices={"EUR": 100})]))
        await engine.inventory.adjust(SKU, LOCATION, units, kind="receive")
        await engine.inventory.set_slices(SKU, LOCATION, slices)
    finally:
        await engine.stop()


async def run_one(kind: str, slices: int, attempts: int, concurrency: int,
                  hold_s: float) -> dict[str, Any]:
    units = attempts // 3
    async with fresh_database(kind) as url:
        await _shop(url, units, slices)
        db = Database(url, pool_size=concurrency)
        async with db.session():
            stock = StockStore(db)
            left, sold = [attempts], [0]

            async def worker() -> None:
                while left[0] > 0:
                    left[0] -= 1
                    async with db.transaction():
                        outcome = await stock.reserve([Want("line", SKU, 1)])
                        await asyncio.sleep(hold_s)
                    sold[0] += 0 if outcome.shortages else 1

            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            elapsed = time.perf_counter() - started
            level = await stock.level(SKU, LOCATION)
    return {"scenario": "hot-row", "db": kind, "slices": slices, "attempts": attempts,
            "concurrency": concurrency, "hold_ms": hold_s * 1000,
            "attempts_per_s": round(attempts / elapsed, 1), "sold": sold[0], "units": units,
            "exact": sold[0] == units == level.reserved and level.on_hand == units}


def main(args: argparse.Namespace) -> int:
    attempts = args.orders or 3000
    ok = True
    for slices in (int(n) for n in args.slice_counts.split(",")):
        result = asyncio.run(run_one(args.db, slices, attempts, args.concurrency,
                                     args.hold_ms / 1000))
        print(json.dumps(result), flush=True)
        ok = ok and result["exact"]
    return 0 if ok else 1
