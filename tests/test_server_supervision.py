"""One worker of ``ordnung serve --workers 2`` dying never takes the server down.

Found in a clean-clone CI run: after a worker was SIGKILLed, its replacement's start-up
met the write lock another worker held, failed at once with ``database is locked``
(SQLite's busy timeout was 0 on that path), and uvicorn — which takes a worker that
fails its start-up for a broken application — stopped the parent and every other
worker. Now every SQLite statement waits for another process's lock up to
``ORDNUNG_SQLITE_LOCK_TIMEOUT_SECONDS``, and the supervisor starts a worker that still
failed its start-up again after a pause, leaving the parent and the other workers be.

The lock a test holds is real: a ``BEGIN IMMEDIATE`` transaction (the write lock, as
another worker holds it while it writes), or SQLite's PENDING byte taken by another
process (as a process taking the exclusive lock holds it: new readers must wait too).
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api_support import order_body
from tests.conftest import TEST_DB
from tests.serve_support import ADMIN_KEY, Server, running_server

AUTH = {"Authorization": f"Bearer {ADMIN_KEY}"}
SQLITE_ONLY = pytest.mark.skipif(
    TEST_DB == "postgres", reason="the lock on a database file is SQLite's; PostgreSQL has "
                                  "none a starting worker must wait for")
#: SQLite's PENDING byte (os_unix.c): held exclusively, no new SHARED lock is granted
PENDING_BYTE = 0x40000000
HOLD_PENDING = f"""
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
fcntl.lockf(fd, fcntl.LOCK_EX, 1, {PENDING_BYTE})
print("held", flush=True)
sys.stdin.read()
"""


def sqlite_path(database_url: str) -> str:
    return database_url.removeprefix("sqlite:///")


def wait_for(what: str, check: object, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"no {what} within {within:.0f} s"
        time.sleep(0.1)


def place(server: Server, email: str) -> int:
    response = httpx.post(server.base_url + "/orders", headers=AUTH, timeout=30,
                          json=order_body(("MUG", 1), email=email))
    return response.status_code


def both_started(server: Server) -> bool:
    """Both workers have finished their start-up (not only been forked): one still
    starting when the lock is taken would fail its start-up too, and be replaced."""
    return len(server.workers()) == 2 and \
        server.logs().count("Application startup complete") >= 2


def replace_worker(server: Server, victim: int) -> None:
    os.kill(victim, signal.SIGKILL)
    wait_for("dead worker", lambda: victim not in server.workers(), 15)


@contextlib.contextmanager
def write_lock(path: str) -> Iterator[sqlite3.Connection]:
    """The write lock, held the way another worker holds it while it writes."""
    holder = sqlite3.connect(path, isolation_level=None, timeout=30)
    holder.execute("BEGIN IMMEDIATE")
    try:
        yield holder
    finally:
        holder.execute("ROLLBACK")
        holder.close()


@contextlib.contextmanager
def pending_lock(path: str) -> Iterator[None]:
    """SQLite's PENDING lock, held by another process: even readers must wait."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD_PENDING, path],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        yield
    finally:
        holder.communicate("", timeout=10)


@SQLITE_ONLY
def test_a_worker_restarted_while_another_process_writes_waits_for_the_lock(
        database_url: str, tmp_path: Path) -> None:
    path = sqlite_path(database_url)
    with running_server(database_url, tmp_path, "--demo", workers=2) as server:
        wait_for("two started workers", lambda: both_started(server))
        victim, survivor = server.workers()
        with write_lock(path), pending_lock(path):
            replace_worker(server, victim)
            wait_for("replacement", lambda: len(server.workers()) == 2, 20)
            time.sleep(2.0)  # the replacement is starting, blocked by the lock
            assert server.process.poll() is None
        # the replacement finished its start-up, the parent and the other worker stayed
        wait_for("answer", lambda: place(server, "during@example.com") == 201)
        assert server.process.poll() is None, server.logs()[-3000:]
        assert survivor in server.workers()
        os.kill(survivor, signal.SIGKILL)  # only the replacement answers now ...
        wait_for("dead survivor", lambda: survivor not in server.workers(), 15)
        statuses = [place(server, f"after-{i}@example.com") for i in range(5)]
        assert statuses == [201] * 5, statuses  # ... and writes
        assert "worker failed to start" not in server.logs()


@SQLITE_ONLY
def test_a_lock_held_past_the_lock_timeout_at_start_up_does_not_stop_the_server(
        database_url: str, tmp_path: Path) -> None:
    """The replacement cannot start while the lock is held (1 s timeout, held 5 s): it
    fails its start-up, and is started again until it can, while the parent and the other
    worker stay up."""
    path = sqlite_path(database_url)
    env = {"ORDNUNG_SQLITE_LOCK_TIMEOUT_SECONDS": "1"}
    with running_server(database_url, tmp_path, "--demo", workers=2, env=env) as server:
        wait_for("two started workers", lambda: both_started(server))
        victim, survivor = server.workers()
        with pending_lock(path):
            replace_worker(server, victim)
            wait_for("failed start-up", lambda: "worker failed to start" in server.logs()
                     or server.process.poll() is not None, 30)
            time.sleep(2.0)
            assert server.process.poll() is None, server.logs()[-3000:]
            assert survivor in server.workers(), server.logs()[-6000:]
        wait_for("a started replacement", lambda: len(server.workers()) == 2, 30)
        wait_for("answer", lambda: place(server, "after-lock@example.com") == 201)
        assert server.process.poll() is None
        assert survivor in server.workers()


def test_workers_killed_one_after_another_are_replaced(database_url: str,
                                                      tmp_path: Path) -> None:
    with running_server(database_url, tmp_path, "--demo", workers=2) as server:
        wait_for("two workers", lambda: len(server.workers()) == 2)
        seen = set(server.workers())
        for round_ in range(3):
            victim = server.workers()[0]
            replace_worker(server, victim)
            wait_for("replacement", lambda: len(server.workers()) == 2, 30)
            assert server.process.poll() is None
            seen |= set(server.workers())
            wait_for("answer", lambda r=round_: place(server, f"r{r}@example.com") == 201)
        assert len(seen) == 5
        assert server.process.poll() is None
