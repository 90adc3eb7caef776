"""The PostgreSQL connections of one process: taken and given back without a round trip,
a task or a timer.

asyncpg's pool is general: it hands out a proxy per use, runs a reset step under a
timeout on every release, and shields that release in a task of its own. Measured on a
two-core machine, taking a connection from it and giving it back cost 40 to 45 µs of
CPU, most of a cheap statement's own cost (about 55 µs), and a checkout runs about ten
statements and transactions outside one another. The engine needs less: its
connections keep no session state (no ``SET``, ``LISTEN``, cursor or session-level
advisory lock), so there is nothing to reset, and its transactions always end before
their connection goes back.

So here a free connection is simply popped from a list, and one given back is handed
to the longest waiter or pushed back, all without suspending. What must not go back is
dropped instead: a closed connection (the server went away, or the engine terminated it
after a timeout), one left inside a transaction (closing it ends that transaction on
the server; the next user gets a fresh one), and one opened before the pool was
renewed (``expire_connections``, after a connection was found dead). Every wait has a
bound: ``connect_timeout`` for a new connection, ``acquire_timeout`` for a free one,
``command_timeout`` for each statement (asyncpg's: it gives up and asks the server to
cancel). A connection idle for longer than ``max_idle_s`` is closed when next found.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import time
from collections.abc import Generator
from typing import Any

import asyncpg


class _Acquiring:
    """What ``LeanPool.acquire`` returns: await it for a connection (give it back with
    ``release``), or use it as ``async with`` to give it back on leaving."""

    __slots__ = ("connection", "pool", "timeout")

    def __init__(self, pool: LeanPool, timeout: float | None) -> None:
        self.pool = pool
        self.timeout = timeout
        self.connection: Any = None

    def __await__(self) -> Generator[Any, None, Any]:
        return self.pool._acquire(self.timeout).__await__()

    async def __aenter__(self) -> Any:
        self.connection = await self.pool._acquire(self.timeout)
        return self.connection

    async def __aexit__(self, *exc_info: Any) -> None:
        connection, self.connection = self.connection, None
        self.pool.give_back(connection)


class LeanPool:
    """Up to ``max_size`` connections to ``dsn``; see the module's docstring."""

    def __init__(self, dsn: str, *, min_size: int = 1, max_size: int = 8,
                 connect_timeout: float | None = None, acquire_timeout: float | None = None,
                 command_timeout: float | None = None, max_idle_s: float = 300.0) -> None:
        self.dsn = dsn
        self.min_size = min_size
        self.max_size = max(1, max_size)
        self.connect_timeout = connect_timeout
        self.acquire_timeout = acquire_timeout
        self.command_timeout = command_timeout
        self.max_idle_s = max_idle_s
        #: free connections, the most recently used last, with when each was given back
        self._idle: list[tuple[Any, float]] = []
        #: tasks waiting for a connection: each gets one, or None to open its own
        self._waiters: collections.deque[asyncio.Future[Any]] = collections.deque()
        #: connections open or being opened (at most ``max_size``)
        self._open = 0
        #: which renewal each connection was opened in (``expire_connections``)
        self._generation = 0
        self._born: dict[Any, int] = {}
        self._closing = False
        #: graceful closes of idle connections under way (a reference keeps each task)
        self._closes: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Open ``min_size`` connections (a database that does not answer fails here)."""
        opened = [await self._acquire(self.connect_timeout) for _ in range(self.min_size)]
        for connection in opened:
            self.give_back(connection)

    # -- taking and giving back -------------------------------------------------------
    def acquire(self, *, timeout: float | None = None) -> _Acquiring:
        return _Acquiring(self, timeout if timeout is not None else self.acquire_timeout)

    async def _acquire(self, within: float | None) -> Any:
        if self._closing:
            raise asyncpg.InterfaceError("pool is closing")
        now = time.monotonic()
        while self._idle:
            connection, since = self._idle.pop()
            if not self._usable(connection):
                self._drop(connection)
            elif now - since > self.max_idle_s:
                self._retire(connection)
            else:
                return connection
        if self._open < self.max_size:
            self._open += 1
            return await self._open_one()
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            async with asyncio.timeout(within):
                connection = await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled():
                self._pass_on(waiter.result())  # handed over just as the wait ended
            else:
                waiter.cancel()
            raise
        if connection is None:  # a slot freed up: ours to open
            return await self._open_one()
        return connection

    async def _open_one(self) -> Any:
        """Open a connection in a slot already counted in ``_open``."""
        try:
            connection = await asyncpg.connect(
                self.dsn, timeout=self.connect_timeout or 60.0,
                command_timeout=self.command_timeout)
        except BaseException:
            self._free_slot()
            raise
        self._born[connection] = self._generation
        return connection

    async def release(self, connection: Any) -> None:
        """Give ``connection`` back (a coroutine, as asyncpg's pool has it)."""
        self.give_back(connection)

    def give_back(self, connection: Any) -> None:
        """Give ``connection`` back, without suspending: a task cancelled while it gives
        a connection back cannot lose it."""
        if connection is None:
            return
        if self._closing or not self._usable(connection):
            self._drop(connection)
            return
        self._pass_on(connection)

    def _pass_on(self, connection: Any) -> None:
        """To the longest waiter, or else to the free list (None: a free slot)."""
        if connection is None:
            self._free_slot()
            return
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(connection)
                return
        self._idle.append((connection, time.monotonic()))

    def _usable(self, connection: Any) -> bool:
        return (not connection.is_closed() and not connection.is_in_transaction()
                and self._born.get(connection) == self._generation)

    def _drop(self, connection: Any) -> None:
        """End a connection that must not be used again; its slot is freed."""
        self._born.pop(connection, None)
        if not connection.is_closed():
            connection.terminate()  # also ends a transaction left open, on the server
        self._free_slot()

    def _retire(self, connection: Any) -> None:
        """Close a healthy connection that sat idle too long, politely, in the background
        (its server process ends at once rather than on a broken socket)."""
        self._born.pop(connection, None)
        task = asyncio.get_running_loop().create_task(self._close_quietly(connection))
        self._closes.add(task)
        task.add_done_callback(self._closes.discard)
        self._free_slot()

    async def _close_quietly(self, connection: Any) -> None:
        try:
            await connection.close(timeout=self.connect_timeout or 5.0)
        except Exception:
            connection.terminate()

    def _free_slot(self) -> None:
        """A counted slot is no longer used: the longest waiter opens a connection in
        it, or else it is given up."""
        while self._waiters and not self._closing:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self._open -= 1

    # -- the pool as a whole --------------------------------------------------------------
    async def expire_connections(self) -> None:
        """A connection was found dead: every connection open now is suspect. The free
        ones are closed at once, the ones in use when they come back."""
        self._generation += 1
        idle, self._idle = self._idle, []
        for connection, _ in idle:
            self._drop(connection)

    def get_size(self) -> int:
        return self._open

    def get_idle_size(self) -> int:
        return len(self._idle)

    async def close(self) -> None:
        """Close the free connections; the ones in use are closed as they come back."""
        self._closing = True
        idle, self._idle = self._idle, []
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(asyncpg.InterfaceError("pool is closing"))
        self._waiters.clear()
        for connection, _ in idle:
            self._born.pop(connection, None)
            self._open -= 1
            with contextlib.suppress(Exception):
                await connection.close(timeout=self.connect_timeout or 5.0)

    def terminate(self) -> None:
        """End every free connection at once (the pool could not start)."""
        self._closing = True
        idle, self._idle = self._idle, []
        for connection, _ in idle:
            self._drop(connection)
