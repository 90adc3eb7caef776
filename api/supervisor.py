"""Running uvicorn for ``ordnung serve``: a supervisor that never lets one worker take
the server down, and servers that stop within a bounded grace period.

uvicorn's own supervisor restarts a worker that died, but when a worker fails during
its start-up (exit code 3) it stops the parent and with it every other worker: it
takes a start-up failure for a broken application that would fail again. Here the
parent has already checked the configuration and migrated the database before any
worker starts (``ordnung.api.serve.prepare``), so a replacement worker that fails to
start met something passing — another process holding the SQLite lock longer than
the lock timeout, a database restarting — and ``Supervisor`` starts it again after a
growing pause (``RESTART_FIRST_S`` doubling up to ``RESTART_MAX_S``). It gives up only
when no worker is serving and every worker has failed its start-up
``GIVE_UP_AFTER`` times in a row.

Each worker runs a ``DrainingServer``: when it is told to stop it first ends the open
event streams (``ordnung.api.draining``), then gives running requests
``shutdown_grace_seconds`` before it cancels them. The parent waits that long plus a
margin for each worker to exit and kills one that does not.
"""

from __future__ import annotations

import socket
import time

import structlog
from uvicorn import Config, Server
from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Multiprocess, Process

from ordnung.api.draining import SHUTDOWN

log = structlog.get_logger("ordnung.serve")

#: first and longest pause before a worker that failed its start-up is started again
RESTART_FIRST_S = 0.5
RESTART_MAX_S = 30.0
#: consecutive start-up failures of every worker, none serving, before the parent stops
GIVE_UP_AFTER = 8
#: a worker that has run this long has started: its next failure starts the count anew
STARTED_AFTER_S = 30.0
#: what the parent adds to the grace period before it kills a worker that will not stop
KILL_MARGIN_S = 5.0


class DrainingServer(Server):
    """uvicorn's server, which ends the open event streams as soon as it stops."""

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        SHUTDOWN.begin()
        await super().shutdown(sockets)


class WorkerProcess(Process):
    """A worker process that runs a ``DrainingServer``."""

    @property
    def server(self) -> Server:
        if self._server is None:
            self._server = DrainingServer(config=self.config)
        return self._server


class Slot:
    """One worker place: its process, when it started, its start-up failures in a row."""

    def __init__(self, process: WorkerProcess) -> None:
        self.process = process
        self.started_at = time.monotonic()
        self.failures = 0
        #: set while the slot waits to start its process again
        self.restart_at: float | None = None


class Supervisor(Multiprocess):
    """uvicorn's multi-process supervisor, with restarts that survive start-up failures."""

    def __init__(self, config: Config, sockets: list[socket.socket], *,
                 grace_seconds: float) -> None:
        super().__init__(config, sockets)
        self.grace_seconds = grace_seconds
        self.slots: list[Slot] = []

    def spawn(self) -> WorkerProcess:
        process = WorkerProcess(self.config, self.sockets)
        process.start()
        return process

    def init_processes(self) -> None:
        for _ in range(self.processes_num):
            self.slots.append(Slot(self.spawn()))
        self.processes = [slot.process for slot in self.slots]

    def keep_subprocess_alive(self) -> None:
        if self.should_exit.is_set():
            return
        now = time.monotonic()
        for slot in self.slots:
            if self.should_exit.is_set():
                return
            if slot.restart_at is not None:
                if now >= slot.restart_at:
                    slot.restart_at = None
                    slot.process = self.spawn()
                    slot.started_at = time.monotonic()
                continue
            process = slot.process
            if process.is_alive(timeout=self.config.timeout_worker_healthcheck):
                if slot.failures and now - slot.started_at > STARTED_AFTER_S:
                    slot.failures = 0
                continue
            process.kill()  # hung or dead: make sure it is gone
            process.join()
            if self.should_exit.is_set():
                return
            if process.exitcode == STARTUP_FAILURE:
                slot.failures += 1
                pause = min(RESTART_FIRST_S * 2 ** (slot.failures - 1), RESTART_MAX_S)
                log.warning("worker failed to start; starting it again later",
                            pid=process.pid, failures=slot.failures, pause_s=pause)
                slot.restart_at = now + pause
            else:
                log.warning("worker died; starting a new one", pid=process.pid,
                            exitcode=process.exitcode)
                slot.process = self.spawn()
                slot.started_at = time.monotonic()
        self.processes = [slot.process for slot in self.slots]
        if all(slot.failures >= GIVE_UP_AFTER and slot.restart_at is not None
               for slot in self.slots):
            log.error("no worker could start; stopping", attempts=GIVE_UP_AFTER)
            self.should_exit.set()

    def handle_ttin(self) -> None:
        log.info("SIGTTIN: one more worker")
        self.processes_num += 1
        self.slots.append(Slot(self.spawn()))
        self.processes = [slot.process for slot in self.slots]

    def handle_ttou(self) -> None:
        if len(self.slots) <= 1:
            log.info("SIGTTOU: already down to one worker")
            return
        log.info("SIGTTOU: one worker fewer")
        self.processes_num -= 1
        slot = self.slots.pop()
        self.processes = [s.process for s in self.slots]
        if slot.restart_at is None:
            slot.process.terminate()
            slot.process.process.join(self.grace_seconds + KILL_MARGIN_S)

    def restart_all(self) -> None:
        """SIGHUP: replace the workers one by one, each once its replacement serves."""
        for slot in self.slots:
            if self.should_exit.is_set():
                return
            new = self.spawn()
            if not new.wait_until_ready(self.config.timeout_worker_healthcheck,
                                        self.should_exit):
                new.kill()
                new.join()
                log.error("a new worker was not ready in time; restart aborted")
                return
            old, slot.process = slot.process, new
            slot.started_at, slot.failures, slot.restart_at = time.monotonic(), 0, None
            self.processes = [s.process for s in self.slots]
            old.terminate()
            old.process.join(self.grace_seconds + KILL_MARGIN_S)

    def terminate_all(self) -> None:
        for slot in self.slots:
            if slot.restart_at is None:
                slot.process.terminate()

    def join_all(self) -> None:
        """Wait for each worker, within the grace period and a margin; kill a late one."""
        deadline = time.monotonic() + self.grace_seconds + KILL_MARGIN_S
        for slot in self.slots:
            process = slot.process.process
            process.join(max(0.0, deadline - time.monotonic()))
            if process.exitcode is None:
                log.error("worker did not stop within the grace period; killing it",
                          pid=process.pid)
                slot.process.kill()
                process.join(5)


def run(config: Config, *, grace_seconds: float) -> bool:
    """Serve ``config`` until stopped: in this process with one worker, else under the
    supervisor. False if a single worker failed to start."""
    if config.workers > 1:
        sock = config.bind_socket()
        Supervisor(config, sockets=[sock], grace_seconds=grace_seconds).run()
        return True
    server = DrainingServer(config=config)
    server.run()
    return server.started
