"""A real ``ordnung serve`` process for tests that talk to it over real HTTP.

::

    with running_server(database_url, tmp_path, "--demo") as server:
        httpx.get(server.base_url + "/health")

The server runs in its own session with a clean ``ORDNUNG_*`` environment
(only ``ORDNUNG_TEST_*`` and what the test passes survive), the bootstrap admin
key ``ADMIN_KEY`` and its stdout/stderr in files under the test's directory.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import httpx
import pytest

ADMIN_KEY = "sk_serve_test_admin_0123456789abcdef"
START_TIMEOUT = 60.0  # generous: a loaded CI box spawns workers slowly


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Server:
    def __init__(self, process: subprocess.Popen[str], base_url: str, out: Path,
                 err: Path) -> None:
        self.process = process
        self.base_url = base_url
        self.out = out
        self.err = err

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])

    def output(self) -> str:
        return self.out.read_text()

    def logs(self) -> str:
        return self.err.read_text()

    def workers(self) -> list[int]:
        """The pids of the uvicorn worker processes (children of the server process)."""
        return worker_pids(self.process.pid)


def worker_pids(parent: int) -> list[int]:
    """Children of ``parent`` that are multiprocessing workers (not its resource tracker)."""
    pids: set[int] = set()
    for children in Path(f"/proc/{parent}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            pids.update(int(pid) for pid in children.read_text().split())
    workers = []
    for pid in sorted(pids):
        with contextlib.suppress(OSError):
            if b"--multiprocessing-fork" in Path(f"/proc/{pid}/cmdline").read_bytes():
                workers.append(pid)
    return workers


def stop(process: subprocess.Popen[str], timeout: float = 15.0) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def wait_healthy(server: Server, timeout: float = START_TIMEOUT) -> None:
    """Block until ``/health`` answers 200; fail the test if the server exits or stalls."""
    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            pytest.fail(f"ordnung serve exited with {server.process.returncode}:\n"
                        f"{server.output()}\n{server.logs()}")
        with contextlib.suppress(httpx.TransportError):  # refused: not up yet
            if httpx.get(server.base_url + "/health", timeout=1.0).status_code == 200:
                return
        if time.monotonic() > deadline:
            pytest.fail(f"no /health within {timeout:.0f} s:\n{server.output()}\n"
                        f"{server.logs()}")
        time.sleep(0.2)


@contextlib.contextmanager
def running_server(database_url: str, workdir: Path, *args: str, workers: int = 2,
                   env: Mapping[str, str] | None = None) -> Iterator[Server]:
    """``ordnung serve --workers N *args`` on ``database_url``, healthy; stopped at the end
    (SIGTERM; the whole process group is killed if the server does not stop)."""
    port = free_port()
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith("ORDNUNG_") or k.startswith("ORDNUNG_TEST_")}
    environ.update(ORDNUNG_DATABASE_URL=database_url, ORDNUNG_ADMIN_KEY=ADMIN_KEY,
                   PYTHONUNBUFFERED="1")
    environ.update(env or {})
    out, err = workdir / "stdout.txt", workdir / "stderr.txt"
    with out.open("w") as stdout, err.open("w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "ordnung.api.cli", "serve", "--port", str(port),
             "--workers", str(workers), *args],
            cwd=workdir, env=environ, stdout=stdout, stderr=stderr, text=True,
            start_new_session=True)
    server = Server(process, f"http://127.0.0.1:{port}", out, err)
    try:
        wait_healthy(server)
        yield server
    finally:
        stop(process)
        if process.poll() is None:  # pragma: no cover - kill the whole group as a last resort
            os.killpg(process.pid, signal.SIGKILL)
