"""A PostgreSQL server of the test's own, to freeze, stop and restart under a server.

::

    with private_postgres() as pg:
        url = pg.url            # postgresql://postgres@127.0.0.1:<port>/postgres
        pg.freeze(); pg.thaw()  # SIGSTOP / SIGCONT every process of the cluster
        pg.restart("fast")      # pg_ctl restart -m fast|immediate

The cluster lives in a temporary directory with trust authentication on a free
port. PostgreSQL refuses to run as root, so as root its tools run as the
``postgres`` user. Tests that need one are skipped where PostgreSQL's server
binaries are not installed.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.serve_support import free_port


def _bin_dir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(found[-1]).parent if found else None


class PrivatePostgres:
    def __init__(self, bin_dir: Path, root: Path, port: int) -> None:
        self.bin_dir = bin_dir
        self.data = root / "data"
        self.root = root
        self.port = port
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        self._as_postgres = os.geteuid() == 0

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if self._as_postgres:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, capture_output=True, text=True, check=check,
                              timeout=120)

    def init(self) -> None:
        if self._as_postgres:
            user = pwd.getpwnam("postgres")
            os.chown(self.root, user.pw_uid, user.pw_gid)
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "-A", "trust",
                  "--no-sync")

    def start(self) -> None:
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 "
                   f"-c unix_socket_directories={self.root} -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off")
        self._run("pg_ctl", "-D", str(self.data), "-o", options, "-l",
                  str(self.root / "log.txt"), "-w", "-t", "60", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def pids(self) -> list[int]:
        """The postmaster and every process it started."""
        head = int((self.data / "postmaster.pid").read_text().split()[0])
        pids = [head]
        for children in Path(f"/proc/{head}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                pids.extend(int(p) for p in children.read_text().split())
        return pids

    def freeze(self) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGSTOP)

    def thaw(self) -> None:
        for pid in self.pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGCONT)


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    bin_dir = _bin_dir()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    root = Path(tempfile.mkdtemp(prefix="ordnung-pg-"))
    pg = PrivatePostgres(bin_dir, root, free_port())
    try:
        pg.init()
        pg.start()
        yield pg
    finally:
        with contextlib.suppress(Exception):
            pg.thaw()
        with contextlib.suppress(Exception):
            pg.stop("immediate")
        deadline = time.monotonic() + 10
        while (root / "data" / "postmaster.pid").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        shutil.rmtree(root, ignore_errors=True)
