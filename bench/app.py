"""``python -m bench app``: each request of the guest checkout through the app alone,
without HTTP, to compare two trees to about a percent.

The server scenarios measure what a deployment pays. On a shared two-core machine their
CPU figures move by 5 % and more from run to run: the load driver shares the cores, both
processes run the kernel's network stack, and neighbours come and go. A change worth a
few percent is lost in that. Here the app's ASGI callable is called directly, in this
process, one request at a time: a fresh database, the bench server's settings and
plugins, the same catalogue. Each round makes ``--orders`` new guest carts and times
every step over all of them, as ``bench steps`` does; the garbage collector is frozen
after set-up and off while a step is timed. The report gives each step's CPU per
request on the calling thread (SQLite runs on it; PostgreSQL's own work is not counted),
in the best round and the median one, its statements per request, and the six requests
of a guest checkout added up.

With ``--wal-pages`` (SQLite) it reports instead how many pages each request writes to
the write-ahead log: the checkpointer is held off for the run, so the log only grows,
and its growth over a step divided by the page is that step's count. Every page is
copied by the commit that wrote it (and once more by the checkpoint), so fewer pages is
less CPU however busy the machine is: a figure that does not drift. The CPU figures of
such a run are not comparable with a normal run's (reads walk a growing log).

With ``--instructions`` it runs itself again under valgrind's callgrind, instrumenting
only while a step is timed, and reports the machine instructions each request ran
(Python and the libraries it calls, SQLite included; the kernel's work, such as the
log's writes, and PostgreSQL's own are not counted). That count stays within half a
percent from run to run, however busy the machine, so a change of a percent shows. It
runs about twenty times slower; a hundred orders and one round are enough.

Its figures still follow the machine's speed, which drifts on a shared machine, but
far less than a server's: alternate runs of the two trees decide whether a change is
cheaper. Quote the server scenarios for what a deployment costs; without uvicorn, the
network and the other requests in flight a checkout reads about a quarter lower here.
"""

from __future__ import annotations

import argparse
import gc
import inspect
import json
import os
import platform
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import msgspec

from bench import load, server
from bench.shop import seed_through
from bench.steps import STEPS, step_body

#: the steps of the six-request guest checkout (``bench guest-checkout``)
CHECKOUT = ("create", "line_first", "line_second", "address", "shipping_method", "order")

Call = Callable[[str, str, dict[str, str], Any], Awaitable[tuple[int, bytes]]]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=5,
                        help="app: rounds of --orders fresh carts; the best and the median "
                             "round are reported (default 5)")
    parser.add_argument("--wal-pages", action="store_true",
                        help="app, SQLite: count the pages each request writes to the "
                             "write-ahead log (the checkpointer held off)")
    parser.add_argument("--instructions", action="store_true",
                        help="app: count the instructions each request runs, under "
                             "valgrind's callgrind (a figure that does not drift)")
    parser.add_argument("--tree", type=Path, default=None, metavar="DIR",
                        help="app: run the steps against the ordnung of another "
                             "checkout (an older commit's tree), with this harness")


def own_parser() -> argparse.ArgumentParser:
    """``python -m bench.app``: the app scenario alone. It imports none of the other
    scenarios, so it also runs against an older tree's package (``--tree``)."""
    parser = argparse.ArgumentParser(prog="python -m bench.app",
                                     description="Each request of a guest checkout, in "
                                                 "process: CPU, statements, instructions.")
    parser.add_argument("--db", choices=["sqlite", "postgres"], default="sqlite")
    parser.add_argument("--orders", type=int, default=None,
                        help="carts per round (default 1000)")
    add_arguments(parser)
    return parser


def asgi_caller(app: Any) -> Call:
    """``call(method, path, headers, body)``: one request straight into ``app``; its
    status and body."""
    async def call(method: str, path: str, headers: dict[str, str],
                   body: Any = None) -> tuple[int, bytes]:
        raw = b"" if body is None else msgspec.json.encode(body)
        sent = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
        if body is not None:
            sent += [(b"content-type", b"application/json"),
                     (b"content-length", str(len(raw)).encode())]
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": method, "scheme": "http", "path": path,
                 "raw_path": path.encode(), "query_string": b"", "root_path": "",
                 "headers": sent, "client": ("127.0.0.1", 40000),
                 "server": ("127.0.0.1", 8000), "state": {}}
        messages = [{"type": "http.request", "body": raw, "more_body": False}]
        answer: dict[str, Any] = {"status": 0, "body": []}

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop()
            return {"type": "http.disconnect"}  # a request reads its body once

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                answer["status"] = message["status"]
            elif message["type"] == "http.response.body":
                answer["body"].append(message.get("body", b""))

        await app(scope, receive, send)
        return answer["status"], b"".join(answer["body"])

    return call


#: set (to the folder of callgrind's files) in the run that valgrind runs
UNDER_CALLGRIND = "ORDNUNG_BENCH_CALLGRIND_DIR"
#: set in the run that ``--tree`` starts: the tree whose package it imports
TREE_IN_USE = "ORDNUNG_BENCH_TREE"


class Callgrind:
    """The instructions this process runs inside a step, when it runs under callgrind
    with instrumentation off (``--instr-atstart=no``): switched on for the step, off
    after, and the step's count dumped to a file of its own and read back."""

    def __init__(self, folder: str) -> None:
        self.folder = Path(folder)
        self.pid = str(os.getpid())

    def _control(self, *options: str) -> None:
        subprocess.run(["callgrind_control", *options, self.pid], check=True,
                       capture_output=True, timeout=60)

    def start(self) -> None:
        self._control("-z")
        self._control("-i", "on")

    def stop(self, step: str) -> int:
        self._control("-i", "off")
        self._control("-d", step)
        dumps = sorted(self.folder.glob(f"callgrind.{self.pid}.*"),
                       key=lambda path: int(path.suffix[1:]))
        totals = re.search(r"^totals: (\d+)", dumps[-1].read_text(), re.MULTILINE)
        if totals is None:
            raise RuntimeError(f"no totals in {dumps[-1]}")
        return int(totals.group(1))


class Counters:
    """What a step is measured by besides CPU time: the statements run, the pages
    written to SQLite's write-ahead log (``wal``: its path, when they are counted), and
    the instructions run (``callgrind``, under valgrind)."""

    def __init__(self, statements: Callable[[], int], wal: str | None = None,
                 callgrind: Callgrind | None = None) -> None:
        self.statements = statements
        self.wal = wal
        self.page = 4096
        self.callgrind = callgrind

    def pages(self) -> float:
        """Pages in the log so far (each is stored with a 24-byte frame header)."""
        if self.wal is None or not os.path.exists(self.wal):
            return 0.0
        return os.path.getsize(self.wal) / (self.page + 24)


async def timed(name: str, requests: list[Callable[[], Awaitable[tuple[int, bytes]]]],
                counters: Counters) -> dict[str, Any]:
    """Run ``requests`` one after another with the collector off: CPU µs, statements and
    log pages per request, and how many answered below 400."""
    gc.disable()
    instructions = 0
    try:
        spent, pages, cpu = counters.statements(), counters.pages(), time.thread_time()
        if counters.callgrind is not None:
            counters.callgrind.start()
        statuses = [(await request())[0] for request in requests]
        if counters.callgrind is not None:
            instructions = counters.callgrind.stop(name)
        cpu = time.thread_time() - cpu
        spent, pages = counters.statements() - spent, counters.pages() - pages
    finally:
        gc.enable()
    return {"step": name, "requests": len(requests),
            "succeeded": sum(1 for status in statuses if status < 400),
            "cpu_us": cpu * 1e6 / len(requests), "sql": spent / len(requests),
            "pages": pages / len(requests), "instructions": instructions / len(requests)}


async def one_round(call: Call, headers: dict[str, str], skus: list[str], carts: int,
                    counters: Counters, rng: random.Random, tag: str
                    ) -> list[dict[str, Any]]:
    made: list[tuple[str, dict[str, str]]] = []

    def create(n: int) -> Callable[[], Awaitable[tuple[int, bytes]]]:
        async def request() -> tuple[int, bytes]:
            status, body = await call("POST", "/carts", headers,
                                      {"email": f"app-{tag}-{n}@example.com"})
            if status < 400:
                cart = msgspec.json.decode(body)
                made.append((cart["id"], {**headers, "X-Cart-Token": cart["cart_token"]}))
            return status, body
        return request

    def request(method: str, target: str, held: dict[str, str], payload: Any
                ) -> Callable[[], Awaitable[tuple[int, bytes]]]:
        return lambda: call(method, target, held, payload)

    results = [await timed("create", [create(n) for n in range(carts)], counters)]
    for name, method, path in STEPS:
        body = step_body(name, skus, rng)
        results.append(await timed(name, [
            request(method, f"/carts/{cart_id}/{path}".rstrip("/"), held, body())
            for cart_id, held in made], counters))
    results.append(await timed("health_live", [
        request("GET", "/health/live", {}, None) for _ in range(carts)], counters))
    return results


async def run(args: argparse.Namespace) -> dict[str, Any]:
    carts, rounds = args.orders or 1000, max(1, args.rounds)
    wal_pages = bool(getattr(args, "wal_pages", False))
    if wal_pages and args.db != "sqlite":
        raise SystemExit("--wal-pages counts SQLite's write-ahead log: use --db sqlite")
    async with server.fresh_database(args.db) as url:
        os.environ.update(server.bench_settings(url))
        if wal_pages:  # no checkpoint for the run: the log only grows
            os.environ.update({"ORDNUNG_SQLITE_CHECKPOINT_SECONDS": "1000000",
                               "ORDNUNG_SQLITE_WAL_MAX_BYTES": str(1 << 40)})
        from ordnung.api.app import create_app
        from ordnung.core.logging import configure_logging

        if "final" in inspect.signature(configure_logging).parameters:
            configure_logging("WARNING", final=True)  # as a worker of ``ordnung serve``
        else:  # an older tree's (``--tree``)
            configure_logging("WARNING")
        app = create_app(demo=False)
        async with app.lifespan():
            engine = app.state.engine
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
                                         base_url="http://app", headers=server.admin_headers(),
                                         timeout=30) as client:
                shop = await seed_through(client, skus=50, units=1_000_000, hot_units=0)
            call = asgi_caller(app)
            rng = random.Random(17)

            folder = os.environ.get(UNDER_CALLGRIND)
            counters = Counters(lambda: int(engine.db.statements),
                                url.split(":///", 1)[1] + "-wal" if wal_pages else None,
                                Callgrind(folder) if folder else None)
            if wal_pages:
                counters.page = int((await engine.db.fetch("PRAGMA page_size"))[0]
                                    ["page_size"])

            # a round untimed first: every code path loaded, the caches filled
            await one_round(call, shop["storefront"], shop["skus"], min(carts, 200),
                            counters, rng, "warm")
            gc.collect()
            gc.freeze()  # the started app and the shop: no collection walks them
            measured = [await one_round(call, shop["storefront"], shop["skus"], carts,
                                        counters, rng, str(n)) for n in range(rounds)]
    steps = []
    for index, first in enumerate(measured[0]):
        per_round = [r[index] for r in measured]
        cpu = [r["cpu_us"] for r in per_round]
        steps.append({"step": first["step"], "requests": carts * rounds,
                      "succeeded": sum(r["succeeded"] for r in per_round),
                      "cpu_us_per_request": round(min(cpu), 1),
                      "cpu_us_median": round(statistics.median(cpu), 1),
                      "sql_per_request": round(statistics.mean(r["sql"] for r in per_round), 2),
                      **({"wal_pages_per_request": round(statistics.mean(
                          r["pages"] for r in per_round), 2)} if wal_pages else {}),
                      **({"instructions_per_request": round(statistics.mean(
                          r["instructions"] for r in per_round))}
                         if counters.callgrind else {})})
    checkout = [sum(r["cpu_us"] for r in one if r["step"] in CHECKOUT) for one in measured]
    pages = [sum(r["pages"] for r in one if r["step"] in CHECKOUT) for one in measured]
    instructions = [sum(r["instructions"] for r in one if r["step"] in CHECKOUT)
                    for one in measured]
    return {"scenario": "app", "db": args.db, "orders": carts, "rounds": rounds,
            **({"tree": os.environ[TREE_IN_USE]} if os.environ.get(TREE_IN_USE) else {}),
            "steps": steps, "checkout_us": round(min(checkout), 1),
            "checkout_us_median": round(statistics.median(checkout), 1),
            **({"checkout_wal_pages": round(statistics.mean(pages), 1)} if wal_pages else {}),
            **({"checkout_instructions": round(statistics.mean(instructions))}
               if counters.callgrind else {}),
            "machine": {"cores": os.cpu_count(), "python": platform.python_version()},
            "date": datetime.now(UTC).date().isoformat()}


def under_callgrind(argv: list[str]) -> int:
    """Run ``python -m bench`` with ``argv`` again under callgrind, instrumentation off
    until a step switches it on (``Callgrind``); its output passes through."""
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        raise SystemExit("--instructions needs valgrind (Debian: apt-get install valgrind)")
    with tempfile.TemporaryDirectory(prefix="ordnung-callgrind-") as folder:
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no",
             f"--callgrind-out-file={folder}/callgrind.%p", sys.executable, "-m",
             "bench.app", *argv], env={**os.environ, UNDER_CALLGRIND: folder},
            stderr=subprocess.PIPE, text=True, check=False)
        # valgrind's own lines begin with ==pid==; the bench's report is the rest
        sys.stderr.write("".join(line for line in done.stderr.splitlines(keepends=True)
                                 if not line.startswith("==")))
        return done.returncode


def app_argv(argv: list[str]) -> list[str]:
    """``argv`` of ``python -m bench app ...`` as ``python -m bench.app`` takes it."""
    own = list(argv)
    if "app" in own:
        own.remove("app")
    return own


def against_tree(tree: Path, argv: list[str]) -> int:
    """Run ``python -m bench.app argv`` again with the ``ordnung`` of ``tree`` first on the
    path: a folder of links named as the package's parts (``ordnung.core`` is the tree's
    ``core/``, as the package-dir mapping has it). The plugins are found through the
    installed distribution's entry points, so a tree whose plugin modules they no
    longer name cannot be measured this way."""
    tree = tree.resolve()
    if not (tree / "core" / "engine.py").is_file():
        raise SystemExit(f"--tree {tree}: not a checkout of ordnung (no core/engine.py)")
    with tempfile.TemporaryDirectory(prefix="ordnung-tree-") as folder:
        package = Path(folder) / "ordnung"
        package.mkdir()
        for part in ("core", "api", "plugins", "plugin", "migrations", "testing"):
            if (tree / part).is_dir():
                (package / part).symlink_to(tree / part)
        here = str(Path(__file__).resolve().parent.parent)  # this harness
        path = os.pathsep.join([folder, here, *filter(None, [os.environ.get("PYTHONPATH")])])
        return subprocess.run([sys.executable, "-m", "bench.app", *argv],
                              env={**os.environ, "PYTHONPATH": path, TREE_IN_USE: str(tree)},
                              check=False).returncode


def main(args: argparse.Namespace, argv: list[str] | None = None) -> int:
    own = app_argv(argv if argv is not None else sys.argv[1:])
    if args.tree is not None and not os.environ.get(TREE_IN_USE):
        return against_tree(args.tree, own)
    if args.instructions and not os.environ.get(UNDER_CALLGRIND):
        return under_callgrind(own)
    result = load.run(run(args))
    for step in result["steps"]:
        extra = (f", {step['wal_pages_per_request']} log pages"
                 if "wal_pages_per_request" in step else "")
        if "instructions_per_request" in step:
            extra += f", {step['instructions_per_request'] / 1000:.0f}k instructions"
        print(f"{step['step']:>16}: {step['cpu_us_per_request']} µs CPU (median "
              f"{step['cpu_us_median']}), {step['sql_per_request']} statements{extra}",
              file=sys.stderr)
    extra = (f", {result['checkout_wal_pages']} log pages" if "checkout_wal_pages" in result
             else "")
    if "checkout_instructions" in result:
        extra += f", {result['checkout_instructions'] / 1000:.0f}k instructions"
    print(f"{'guest checkout':>16}: {result['checkout_us']} µs CPU (median "
          f"{result['checkout_us_median']}){extra}", file=sys.stderr)
    print(json.dumps(result))
    return 0 if all(s["succeeded"] == s["requests"] for s in result["steps"]) else 1


if __name__ == "__main__":
    arguments = sys.argv[1:]
    sys.exit(main(own_parser().parse_args(arguments), arguments))
