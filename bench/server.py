"""A fresh database and a real ``ordnung serve`` process for one benchmark run."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

ADMIN_KEY = "bench-admin-" + secrets.token_hex(12)
PG_ADMIN_URL = os.environ.get("ORDNUNG_BENCH_PG_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
GIFT_SETTINGS = {"free_gift": {"tiers": [{"threshold": 10_000, "currency": "EUR",
                                          "sku": "BENCH-GIFT", "name": "bench gift"}]}}


def bench_settings(database_url: str) -> dict[str, str]:
    """The ``ORDNUNG_*`` settings of the benchmark's server: its database, its admin key,
    the plugins a shop needs for a checkout (with the free gift's tier), warnings only."""
    return {"ORDNUNG_DATABASE_URL": database_url, "ORDNUNG_ADMIN_KEY": ADMIN_KEY,
            "ORDNUNG_PLUGIN_SETTINGS": json.dumps(GIFT_SETTINGS),
            "ORDNUNG_LOG_LEVEL": "WARNING",
            "ORDNUNG_PLUGINS": "sandbox,manual,flat_rate,table_tax,free_gift,channel_log"}


def admin_headers() -> dict[str, str]:
    """The headers of the benchmark's admin key."""
    return {"Authorization": f"Bearer {ADMIN_KEY}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    url: str
    database_url: str
    db: str
    stats_dir: Path
    process: subprocess.Popen[bytes]
    log_path: Path
    admin: dict[str, str] = field(default_factory=lambda: admin_headers())

    def statements(self) -> int:
        """SQL statements run so far, summed over every worker process."""
        total = 0
        for path in self.stats_dir.glob("*.stats"):
            with contextlib.suppress(struct.error, OSError):
                total += struct.unpack("<q", path.read_bytes()[:8])[0]
        return total

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system) the workers have used so far; None off Linux. Per
        order it says what a placement costs the server, however busy the machine is."""
        usage = self.worker_usage()
        return None if usage is None else sum(u.cpu_s for u in usage.values())

    def worker_pids(self) -> list[int]:
        return sorted(int(p.stem) for p in self.stats_dir.glob("*.stats"))

    def worker_usage(self) -> dict[int, Usage] | None:
        """Each worker's CPU time and context switches so far; None off Linux."""
        try:
            return {pid: process_usage(pid) for pid in self.worker_pids()}
        except (OSError, ValueError, IndexError):
            return None


@dataclass(frozen=True)
class Usage:
    """What a process has used so far. ``waits`` are the times it gave up the core to wait
    (for the network, mostly); ``preempted`` the times the kernel took the core from it
    for another process while it could still run: on a machine whose cores the workers
    share with the database and the load driver, each costs it caches refilled, so the
    same work costs more CPU time."""
    cpu_s: float
    waits: int
    preempted: int

    def __sub__(self, other: Usage) -> Usage:
        return Usage(self.cpu_s - other.cpu_s, self.waits - other.waits,
                     self.preempted - other.preempted)


def process_cpu_seconds(pid: int) -> float:
    """CPU time (user + system) process ``pid`` has used so far (Linux's ``/proc``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def usage_figures(before: dict[int, Usage] | None, after: dict[int, Usage] | None,
                  orders: int) -> dict[str, Any]:
    """The workers' CPU time and context switches per order between ``before`` and
    ``after``, and each worker's share of their CPU time (the kernel hands the keep-alive
    connections to the workers unevenly, so two workers may serve the load very
    unequally)."""
    if before is None or after is None or not orders:
        return {"server_cpu_ms_per_order": None, "waits_per_order": None,
                "preempted_per_order": None, "worker_cpu_shares": None}
    used = [after[pid] - before[pid] for pid in after if pid in before]
    cpu = sum(u.cpu_s for u in used)
    return {"server_cpu_ms_per_order": round(cpu * 1000 / orders, 2),
            "waits_per_order": round(sum(u.waits for u in used) / orders, 2),
            "preempted_per_order": round(sum(u.preempted for u in used) / orders, 2),
            "worker_cpu_shares": [round(u.cpu_s / cpu, 2) for u in used] if cpu else None}


def process_usage(pid: int) -> Usage:
    """CPU time and context switches of process ``pid`` so far (Linux's ``/proc``)."""
    switches = dict(line.split(":", 1) for line in
                    Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
    return Usage(process_cpu_seconds(pid), int(switches["voluntary_ctxt_switches"]),
                 int(switches["nonvoluntary_ctxt_switches"]))


@contextlib.asynccontextmanager
async def fresh_database(kind: str) -> AsyncIterator[str]:
    if kind == "sqlite":
        with tempfile.TemporaryDirectory(prefix="ordnung-bench-") as tmp:
            yield f"sqlite:///{tmp}/bench.db"
        return
    name = f"ordnung_bench_{secrets.token_hex(4)}"
    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        conn = await asyncpg.connect(PG_ADMIN_URL)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


@contextlib.asynccontextmanager
async def running_server(database_url: str, workers: int,
                         extra_env: dict[str, str] | None = None) -> AsyncIterator[Server]:
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="ordnung-bench-stats-") as stats:
        log_path = Path(stats) / "server.log"
        env = {**os.environ, **bench_settings(database_url), "ORDNUNG_STATS_DIR": stats,
               **(extra_env or {})}
        process = _spawn(port, workers, env, log_path)
        server = Server(url=f"http://127.0.0.1:{port}", database_url=database_url,
                        db="postgres" if database_url.startswith("postgres") else "sqlite",
                        stats_dir=Path(stats), process=process, log_path=log_path)
        try:
            await wait_healthy(server, workers)
            yield server
        except BaseException:
            print("server log (last 4000 bytes):\n" + log_path.read_text()[-4000:],
                  file=sys.stderr)
            raise
        finally:
            stop(server)


def _spawn(port: int, workers: int, env: dict[str, str],
           log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "ordnung.api.cli", "serve", "--port", str(port),
             "--workers", str(workers), "--log-level", "warning"],
            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


async def wait_healthy(server: Server, workers: int, limit_s: float = 60.0) -> None:
    deadline = time.monotonic() + limit_s
    async with httpx.AsyncClient(base_url=server.url, timeout=2.0) as client:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise RuntimeError("server exited:\n" + server.log_path.read_text()[-3000:])
            with contextlib.suppress(httpx.HTTPError):
                if (await client.get("/health")).status_code == 200 and len(
                        server.worker_pids()) >= workers:
                    return
            await asyncio.sleep(0.2)
    raise RuntimeError("server did not become healthy:\n" + server.log_path.read_text()[-3000:])


def stop(server: Server, timeout: float = 15.0) -> None:
    if server.process.poll() is None:
        os.killpg(server.process.pid, signal.SIGTERM)
        try:
            server.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(server.process.pid, signal.SIGKILL)
            server.process.wait(5)
