"""piccolo's SQLite engine, rebuilt for a server: statements run on the event loop's
thread, connections stay open, and writers queue instead of polling.

Stock piccolo runs every statement through aiosqlite: a hop to a helper thread and
back, which under load costs more than the statement (the helper must win the GIL
back from the busy event loop, up to the interpreter's switch interval each time).
It also opens a new connection for every statement outside a transaction and for
every transaction, and repeats ``PRAGMA foreign_keys`` before every statement inside
one. And SQLite has one writer: ``BEGIN IMMEDIATE`` on many connections waits in
SQLite's busy handler, which sleeps in growing steps (up to 100 ms), hands the lock
over late and, run on the loop's thread, would block the loop.

So here: the statements of these small tables take microseconds and run directly on
the loop's thread; a process keeps a few connections open (WAL: readers never wait
for the writer) with their pragmas set once; write transactions queue on an
``asyncio.Lock`` so one connection per process asks for the write lock; the WAL is
checkpointed by a background thread (``checkpointing``) rather than by whichever
commit crosses the threshold, which would stall the loop on an fsync; and the busy
handler of the loop's connections is off (``busy_timeout = 0``): when another
*process* holds a lock, ``BEGIN``, ``COMMIT`` and every autocommit statement are
retried after an ``asyncio.sleep``, so the loop keeps serving while it waits. In WAL
mode a transaction that holds the write lock is never busy again until it commits.

Every wait for a lock is bounded by ``lock_timeout_seconds``
(``ORDNUNG_SQLITE_LOCK_TIMEOUT_SECONDS``): the loop's connections wait asynchronously
as above, and the connections used off the loop (start-up, the checkpointer) have
SQLite's own busy timeout set to it. A worker that starts while another process holds
the write lock therefore waits for it instead of failing.

The WAL is bounded by size as well as by time (``wal_max_bytes``,
``ORDNUNG_SQLITE_WAL_MAX_BYTES``): the checkpointer looks at the WAL's size each round
and, once it is larger, checkpoints with TRUNCATE (which waits, off the loop, for the
readers of old frames and empties the file); ``journal_size_limit`` makes SQLite cut
the file back as well whenever it restarts it. When the disk is full, writes fail
(``SQLITE_FULL``; the API answers 507) and the checkpointer keeps trying, so the
engine recovers by itself as soon as space returns.

``Database`` runs statements through ``run_autocommit`` and a transaction's
``connection``; piccolo's query methods are not used.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
import structlog
from piccolo.engine.sqlite import SQLiteEngine, SQLiteTransaction, TransactionType

from ordnung.core.errors import ConfigError

log = structlog.get_logger("ordnung.db")


def _datetime_in(value: datetime) -> str:
    """A datetime as piccolo stores it in SQLite (in UTC, ``str``), without converting
    one that is in UTC already: every write's timestamps pass through here."""
    if value.tzinfo is not None and value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return str(value)


# replaces piccolo's adapter (registered when its engine module was imported), whose
# output this keeps
sqlite3.register_adapter(datetime, _datetime_in)

#: open connections per process: one per concurrent transaction, plus reads around them
POOL_SIZE = 4
#: how long a statement waits for another process's lock before giving up
LOCK_TIMEOUT_S = 30.0
#: first and longest pause between attempts to get the write lock from another process
RETRY_FIRST_S = 0.0005
RETRY_MAX_S = 0.002
#: how often a process checkpoints the WAL in the background
CHECKPOINT_EVERY_S = 1.0
#: WAL size above which the checkpointer truncates it
WAL_MAX_BYTES = 16 * 1024 * 1024
#: how often the checkpointer looks at the WAL's size
SIZE_CHECK_S = 0.1
#: longest the checkpointer's connection waits for a lock to open (PASSIVE itself never
#: waits: what it cannot copy now, the next round does)
PASSIVE_WAIT_S = 0.1
#: longest a TRUNCATE checkpoint waits for readers (writers wait while it does)
TRUNCATE_WAIT_S = 1.0
#: statements that may meet another process's lock even on a loop connection
_WAITING = ("BEGIN", "COMMIT", "END")


class SQLiteSettings(msgspec.Struct, kw_only=True, frozen=True):
    """How the SQLite engine waits for locks and bounds its WAL."""

    #: seconds any statement waits for another process's lock (``database is locked``)
    #: before it fails (``ORDNUNG_SQLITE_LOCK_TIMEOUT_SECONDS``)
    lock_timeout_seconds: Annotated[float, msgspec.Meta(gt=0)] = LOCK_TIMEOUT_S
    #: bytes the WAL may grow to before it is checkpointed and truncated, whatever the
    #: time (``ORDNUNG_SQLITE_WAL_MAX_BYTES``)
    wal_max_bytes: Annotated[int, msgspec.Meta(ge=65536)] = WAL_MAX_BYTES
    #: seconds between background checkpoints (``ORDNUNG_SQLITE_CHECKPOINT_SECONDS``)
    checkpoint_seconds: Annotated[float, msgspec.Meta(gt=0)] = CHECKPOINT_EVERY_S

    @classmethod
    def from_env(cls) -> SQLiteSettings:
        """The settings from ``ORDNUNG_SQLITE_*``; a value that cannot work raises
        ``ConfigError`` naming its variable."""
        values = {field: os.environ[variable] for field, variable in SQLITE_VARIABLES.items()
                  if os.environ.get(variable)}
        try:
            return msgspec.convert(values, cls, strict=False)
        except msgspec.ValidationError as exc:
            message, _, where = str(exc).partition(" - at `$.")
            raise ConfigError(SQLITE_VARIABLES.get(where.rstrip("`"), "ORDNUNG_SQLITE_*"),
                              message) from None


SQLITE_VARIABLES = {"lock_timeout_seconds": "ORDNUNG_SQLITE_LOCK_TIMEOUT_SECONDS",
                    "wal_max_bytes": "ORDNUNG_SQLITE_WAL_MAX_BYTES",
                    "checkpoint_seconds": "ORDNUNG_SQLITE_CHECKPOINT_SECONDS"}


def _busy(exc: sqlite3.OperationalError) -> bool:
    return getattr(exc, "sqlite_errorcode", None) in (sqlite3.SQLITE_BUSY,
                                                     sqlite3.SQLITE_LOCKED) or \
        "locked" in str(exc) or "busy" in str(exc)


def disk_full(exc: BaseException) -> bool:
    """True for SQLite's ``database or disk is full`` (the API answers 507)."""
    return isinstance(exc, sqlite3.OperationalError) and (
        getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
        or "disk is full" in str(exc))


class LoopConnection:
    """A ``sqlite3`` connection used from the event loop, with the async surface piccolo
    calls on an aiosqlite one (``await execute``, ``in_transaction``, ``close``)."""

    def __init__(self, connection: sqlite3.Connection,
                 lock_timeout_s: float = LOCK_TIMEOUT_S) -> None:
        self.raw = connection
        self.lock_timeout_s = lock_timeout_s

    @property
    def in_transaction(self) -> bool:
        return self.raw.in_transaction

    def run(self, sql: str, args: Any = ()) -> list[Any]:
        return self.raw.execute(sql, args or ()).fetchall()

    async def run_waiting(self, sql: str, args: Any = ()) -> list[Any]:
        """Run a statement that may meet another process's write lock; wait for it
        without blocking the loop."""
        deadline = time.monotonic() + self.lock_timeout_s
        pause = RETRY_FIRST_S
        while True:
            try:
                return self.run(sql, args)
            except sqlite3.OperationalError as exc:
                if not _busy(exc) or time.monotonic() > deadline:
                    raise
            await asyncio.sleep(pause)
            pause = min(pause * 2, RETRY_MAX_S)

    async def execute(self, sql: str, args: Any = ()) -> list[Any]:
        if sql.lstrip()[:6].upper().startswith(_WAITING):
            return await self.run_waiting(sql, args)
        return self.run(sql, args)

    async def close(self) -> None:
        self.raw.close()


class PooledSQLiteTransaction(SQLiteTransaction):
    """A transaction on a pooled connection; IMMEDIATE ones queue on the write lock.

    A block inside another transaction of the same task joins it (``outer``). Nobody
    commits or rolls back by hand: the block's outcome decides, once, on leaving the
    outermost one."""

    engine: PooledSQLiteEngine

    def __init__(self, engine: PooledSQLiteEngine, transaction_type: TransactionType,
                 allow_nested: bool = True) -> None:
        super().__init__(engine=engine, transaction_type=transaction_type,
                         allow_nested=allow_nested)
        self.outer: Any = engine.current_transaction.get()

    async def __aenter__(self) -> SQLiteTransaction:
        if self.outer is not None:
            return self.outer
        writer = self.transaction_type is not TransactionType.deferred
        if writer:
            await self.engine.write_lock.acquire()
        try:
            self.connection = await self.engine.acquire()
            try:
                await self.begin()
            except BaseException:
                self.engine.release(self.connection)
                raise
        except BaseException:
            if writer:
                self.engine.write_lock.release()
            raise
        self.context = self.engine.current_transaction.set(self)
        return self

    async def __aexit__(self, exception_type: Any, exception: Any, traceback: Any) -> bool:
        if self.outer is not None:
            return exception is None
        connection: LoopConnection = self.connection
        try:
            if exception:
                # SQLite may have rolled back already (a full disk, an I/O error): a
                # second ROLLBACK would raise and hide the error that caused it
                if connection.in_transaction:
                    await self.rollback()
            else:
                await self.commit()
        finally:
            self.engine.current_transaction.reset(self.context)
            try:
                # a failed COMMIT leaves the transaction open: never pool it like that
                if connection.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        connection.run("ROLLBACK")
            finally:
                self.engine.release(connection)
                if self.transaction_type is not TransactionType.deferred:
                    self.engine.write_lock.release()
        return exception is None


class PooledSQLiteEngine(SQLiteEngine):
    """SQLite on the loop's thread, with pooled connections and an in-process writer queue."""

    def __init__(self, path: str, pool_size: int = POOL_SIZE,
                 settings: SQLiteSettings | None = None, **kwargs: Any) -> None:
        super().__init__(path=path, **kwargs)
        self.settings = settings or SQLiteSettings()
        self.connection_kwargs["timeout"] = 0  # busy: we wait, not SQLite's sleep loop
        self.connection_kwargs["check_same_thread"] = False
        self.pool_size = pool_size
        self.write_lock = asyncio.Lock()
        self._idle: asyncio.Queue[LoopConnection] = asyncio.Queue()
        self._opened = 0

    async def _open(self) -> LoopConnection:
        """A new loop connection with its pragmas set; some of them read the schema, so
        they wait (asynchronously) for another process's lock like any statement."""
        raw = sqlite3.connect(**self.connection_kwargs)
        raw.row_factory = _dict_factory
        connection = LoopConnection(raw, self.settings.lock_timeout_seconds)
        try:
            for pragma in ("PRAGMA busy_timeout = 0", "PRAGMA foreign_keys = 1",
                           "PRAGMA synchronous = NORMAL", "PRAGMA wal_autocheckpoint = 0",
                           f"PRAGMA journal_size_limit = {self.settings.wal_max_bytes}"):
                await connection.run_waiting(pragma)
        except BaseException:
            raw.close()
            raise
        return connection

    def _open_waiting(self, timeout: float | None = None) -> sqlite3.Connection:
        """A connection for use off the loop: SQLite's busy handler waits for locks (up
        to the lock timeout)."""
        wait = self.settings.lock_timeout_seconds if timeout is None else timeout
        raw = sqlite3.connect(self.path, timeout=wait,
                              isolation_level=None, check_same_thread=False)
        raw.execute(f"PRAGMA journal_size_limit = {self.settings.wal_max_bytes}")
        return raw

    def _use_wal(self) -> str:
        raw = self._open_waiting()
        try:
            mode = str(raw.execute("PRAGMA journal_mode").fetchone()[0]).lower()
            if mode != "wal":  # switching takes an exclusive lock: only when needed
                mode = str(raw.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
            return mode
        finally:
            raw.close()

    async def use_wal(self) -> str:
        """Put the database in WAL mode unless it is already (start-up, off the loop:
        it waits up to the lock timeout for another process's lock)."""
        return await asyncio.to_thread(self._use_wal)

    def wal_bytes(self) -> int:
        try:
            return os.path.getsize(self.path + "-wal")
        except OSError:
            return 0

    def _checkpoint(self) -> str:
        """One checkpoint round: PASSIVE while the WAL is small, TRUNCATE once it is
        larger than ``wal_max_bytes``. Returns what it did (for the log and tests)."""
        oversized = self.wal_bytes() > self.settings.wal_max_bytes
        try:
            # TRUNCATE waits for the readers of old frames (microseconds here) and
            # meanwhile holds writers back: a short wait, retried next round
            raw = self._open_waiting(TRUNCATE_WAIT_S if oversized else PASSIVE_WAIT_S)
        except sqlite3.Error:
            return "failed"
        try:
            if oversized:
                busy = raw.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
                return "busy" if busy else "truncated"
            raw.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            return "passive"
        except sqlite3.OperationalError as exc:
            # busy with another checkpoint: the next round catches up; a full disk:
            # retried every round until space returns
            return "full" if disk_full(exc) else "busy"
        finally:
            raw.close()

    async def checkpointing(self, every_s: float | None = None) -> None:
        """Copy the WAL back into the database file every ``checkpoint_seconds``, and as
        soon as the WAL has outgrown ``wal_max_bytes`` (its size is looked at ten times a
        second), off the loop's thread. PASSIVE never waits for, nor blocks, readers and
        writers; TRUNCATE (an outgrown WAL) empties the file."""
        every = every_s if every_s is not None else self.settings.checkpoint_seconds
        last = time.monotonic()
        while True:
            await asyncio.sleep(min(every, SIZE_CHECK_S))
            if time.monotonic() - last < every and \
                    self.wal_bytes() <= self.settings.wal_max_bytes:
                continue
            last = time.monotonic()
            outcome = await asyncio.to_thread(self._checkpoint)
            if outcome in ("truncated", "full"):
                log.info("WAL checkpoint", outcome=outcome, database=self.path)

    async def acquire(self) -> LoopConnection:
        if self._idle.empty() and self._opened < self.pool_size:
            self._opened += 1
            try:
                return await self._open()
            except BaseException:
                self._opened -= 1
                raise
        return await self._idle.get()

    def release(self, connection: LoopConnection) -> None:
        try:
            connection.raw.total_changes  # noqa: B018  (raises once the connection is closed)
        except sqlite3.ProgrammingError:  # closed under its user: never hand it out again
            self._opened -= 1
            return
        self._idle.put_nowait(connection)

    async def close(self) -> None:
        """Close every idle connection (call when no transaction is running); the engine
        may be started again later, on another event loop."""
        while not self._idle.empty():
            connection = self._idle.get_nowait()
            self._opened -= 1
            with contextlib.suppress(sqlite3.Error):
                connection.raw.close()
        self._idle = asyncio.Queue()
        self.write_lock = asyncio.Lock()

    def transaction(self, transaction_type: TransactionType = TransactionType.deferred,
                    allow_nested: bool = True) -> SQLiteTransaction:
        return PooledSQLiteTransaction(engine=self, transaction_type=transaction_type,
                                       allow_nested=allow_nested)

    async def run_autocommit(self, query: str, args: Sequence[Any] = ()) -> list[Any]:
        """A statement outside any transaction (autocommit) on a pooled connection; one
        that writes queues on the write lock like a write transaction does."""
        writes = not query.lstrip()[:6].upper().startswith(("SELECT", "PRAGMA"))
        if writes:
            await self.write_lock.acquire()
        try:
            connection = await self.acquire()
            try:
                return await connection.run_waiting(query, args)
            finally:
                self.release(connection)
        finally:
            if writes:
                self.write_lock.release()

    def pool_use(self) -> tuple[int, int]:
        """(connections open, in use)."""
        return self._opened, self._opened - self._idle.qsize()


def _dict_factory(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
    return {col[0]: row[idx] for idx, col in enumerate(cursor.description)}
