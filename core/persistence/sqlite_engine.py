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
``asyncio.Lock`` so one connection per process asks for the write lock, and those that
queue behind one another share one commit (``CommitGroup``); the WAL is
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


#: the last datetime written and its text: a change stamps its order, events, outbox
#: and ledger rows with one moment, about eighteen parameters of one object per placement
_last_datetime: tuple[datetime | None, str] = (None, "")


def _datetime_in(value: datetime) -> str:
    """A datetime as piccolo stores it in SQLite (in UTC, ``str``), without converting
    one that is in UTC already: every write's timestamps pass through here. The same
    object as the last one is not formatted again (datetimes are immutable, and the
    one held here cannot be freed and its identity reused)."""
    global _last_datetime
    last = _last_datetime
    if value is last[0]:
        return last[1]
    moment = value
    if moment.tzinfo is not None and moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    text = str(moment)
    _last_datetime = (value, text)  # one assignment: safe beside the checkpointer thread
    return text


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
#: most writers one commit group holds (each waits for the ones after it)
GROUP_MAX = 16
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


class CommitGroup:
    """Write transactions of this process that share one SQLite transaction: each ran in
    a savepoint of it, and each waits for the one ``COMMIT`` (``done``)."""

    def __init__(self, connection: LoopConnection) -> None:
        self.connection = connection
        self.members = 0
        #: a task will commit the group, left by a writer that gave up waiting for it
        self.committing = False
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def finish(self, failure: BaseException | None) -> None:
        if not self.done.done():
            if failure is None:
                self.done.set_result(None)
            else:
                self.done.set_exception(failure)
                self.done.exception()  # a group no member waits for any more is no error


class PooledSQLiteTransaction(SQLiteTransaction):
    """A transaction on a pooled connection; IMMEDIATE ones are members of the process's
    commit group (``PooledSQLiteEngine.join_group`` and ``leave_group``).

    A block inside another transaction of the same task joins it (``outer``). Nobody
    commits or rolls back by hand: the block's outcome decides, once, on leaving the
    outermost one."""

    engine: PooledSQLiteEngine

    def __init__(self, engine: PooledSQLiteEngine, transaction_type: TransactionType,
                 allow_nested: bool = True) -> None:
        super().__init__(engine=engine, transaction_type=transaction_type,
                         allow_nested=allow_nested)
        self.outer: Any = engine.current_transaction.get()
        self.group: CommitGroup | None = None

    async def __aenter__(self) -> SQLiteTransaction:
        if self.outer is not None:
            return self.outer
        if self.transaction_type is not TransactionType.deferred:
            self.group = await self.engine.join_group()
            self.connection = self.group.connection
        else:
            self.connection = await self.engine.acquire()
            try:
                await self.begin()
            except BaseException:
                self.engine.release(self.connection)
                raise
        self.context = self.engine.current_transaction.set(self)
        return self

    async def __aexit__(self, exception_type: Any, exception: Any, traceback: Any) -> bool:
        if self.outer is not None:
            return exception is None
        self.engine.current_transaction.reset(self.context)
        if self.group is not None:
            await self.engine.leave_group(self.group, exception)
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
            try:
                # a failed COMMIT leaves the transaction open: never pool it like that
                if connection.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        connection.run("ROLLBACK")
            finally:
                self.engine.release(connection)
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
        #: the open commit group, if a writer left it to the writers queued behind it
        self._group: CommitGroup | None = None
        #: writers queued for the write lock
        self._queued = 0
        self._committers: set[asyncio.Task[None]] = set()
        #: groups committed, and the members they held (for tests and the bench)
        self.groups_committed = 0
        self.members_committed = 0

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
        self._group = None
        self._queued = 0

    def transaction(self, transaction_type: TransactionType = TransactionType.deferred,
                    allow_nested: bool = True) -> SQLiteTransaction:
        return PooledSQLiteTransaction(engine=self, transaction_type=transaction_type,
                                       allow_nested=allow_nested)

    async def run_autocommit(self, query: str, args: Sequence[Any] = ()) -> list[Any]:
        """A statement outside any transaction (autocommit) on a pooled connection; one
        that writes queues on the write lock like a write transaction does, and while
        other writers queue (or a group is open) it is a member of the commit group."""
        if query.lstrip()[:6].upper().startswith(("SELECT", "PRAGMA")):
            return await self._run_pooled(query, args)
        await self._lock_for_writing()
        if self._group is None and not self._queued:  # alone: autocommit as it is
            try:
                return await self._run_pooled(query, args)
            finally:
                self.write_lock.release()
        group = await self._open_group()
        try:
            rows = group.connection.run(query, args)
        except BaseException as exc:
            await self.leave_group(group, exc)
            raise
        await self.leave_group(group, None)
        return rows

    async def _run_pooled(self, query: str, args: Sequence[Any]) -> list[Any]:
        connection = await self.acquire()
        try:
            return await connection.run_waiting(query, args)
        finally:
            self.release(connection)

    # -- the commit group -------------------------------------------------------------------
    # SQLite writes every page a transaction changed to the WAL at COMMIT: a placement
    # changes the last page of about twenty tables and indexes, and its COMMIT cost
    # more than all of its statements. Writers of one process queue on ``write_lock``
    # anyway; so a writer that finishes while others queue leaves its work uncommitted
    # (released savepoint) and waits, and the last writer of the run commits for all.
    # The pages they share are written once. A member that fails rolls back to its own
    # savepoint and leaves the others alone; a COMMIT that fails (a full disk) fails
    # every member, none of which has answered yet. Nothing is told to anybody before
    # the COMMIT that makes it durable, so this only moves the moment of commit.

    async def _lock_for_writing(self) -> None:
        self._queued += 1
        try:
            await self.write_lock.acquire()
        except BaseException:
            self._queued -= 1
            # the holder may have left the group to us: commit it if nobody else will
            if self._group is not None and not self._queued:
                self._commit_left(self._group)
            raise
        self._queued -= 1

    async def join_group(self) -> CommitGroup:
        """Take the write lock and a savepoint in the open commit group (or a new one)."""
        await self._lock_for_writing()
        return await self._open_group()

    async def _open_group(self) -> CommitGroup:
        """With the write lock held: a savepoint in the open group, or in a new one."""
        try:
            group = self._group
            if group is None:
                connection = await self.acquire()
                try:
                    await connection.run_waiting("BEGIN IMMEDIATE")
                except BaseException:
                    self.release(connection)
                    raise
                group = self._group = CommitGroup(connection)
            group.connection.run("SAVEPOINT ordnung_member")
            return group
        except BaseException:
            if self._group is not None:  # the members before keep their work
                await self._commit(self._group, None)
            else:
                self.write_lock.release()
            raise

    async def leave_group(self, group: CommitGroup, failure: BaseException | None) -> None:
        """End a member: keep its work (``failure`` None) or roll it back to its
        savepoint; then leave the commit to a queued writer, or commit. Returns once
        the group is committed (or raises what failed it)."""
        broken = self._end_savepoint(group.connection, failure)
        if broken is not None:
            await self._commit(group, broken)
            raise failure or broken
        group.members += failure is None
        cancelled = False
        if group.members < GROUP_MAX and not self._queued:
            # one round of the loop, the lock held: the writers that are ready to run
            # now queue behind this one and join the group
            try:
                await asyncio.sleep(0)
            except asyncio.CancelledError:
                cancelled = True  # the group is committed or handed over all the same
        if self._queued and group.members < GROUP_MAX:
            self.write_lock.release()  # the next writer joins the group
        else:
            await self._commit(group, None)
        # a failed member waits as well: what it read of the members before it (that a
        # duplicate placed the order, say) must be committed before it acts on it; if
        # the group fails, its failure (a full disk) is what the member answers
        await group.done
        if cancelled:
            raise asyncio.CancelledError

    @staticmethod
    def _end_savepoint(connection: LoopConnection,
                       failure: BaseException | None) -> BaseException | None:
        """Keep a member's work or roll it back; what fails the whole group, if any."""
        try:
            if failure is None:
                connection.run("RELEASE ordnung_member")
            elif connection.in_transaction:
                connection.run("ROLLBACK TO ordnung_member")
                connection.run("RELEASE ordnung_member")
        except BaseException as exc:  # the group fails with it
            return exc
        if connection.in_transaction:
            return None
        # SQLite rolled the whole transaction back (a full disk, an I/O error): the
        # members before this one lost their work too, and hear why
        return failure if isinstance(failure, sqlite3.Error) else \
            sqlite3.OperationalError("a write of the same commit group failed")

    def _commit_left(self, group: CommitGroup) -> None:
        """Commit ``group``, which its last member left to a writer that then gave up."""
        if not group.committing:
            group.committing = True
            task = asyncio.get_running_loop().create_task(self._commit_when_free(group))
            self._committers.add(task)
            task.add_done_callback(self._committers.discard)

    async def _commit_when_free(self, group: CommitGroup) -> None:
        await self._lock_for_writing()  # behind any writer queued meanwhile
        if self._group is group:
            await self._commit(group, None)
        else:
            self.write_lock.release()

    async def _commit(self, group: CommitGroup, failure: BaseException | None) -> None:
        """Commit the group (or roll it back, ``failure``), wake its members, give the
        connection back and release the write lock."""
        self._group = None
        connection = group.connection
        try:
            if failure is None:
                await connection.run_waiting("COMMIT")
                self.groups_committed += 1
                self.members_committed += group.members
            group.finish(failure)
        except BaseException as exc:
            group.finish(exc)
        finally:
            try:
                # a failed COMMIT leaves the transaction open: never pool it like that
                if connection.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        connection.run("ROLLBACK")
            finally:
                self.release(connection)
                self.write_lock.release()

    def pool_use(self) -> tuple[int, int]:
        """(connections open, in use)."""
        return self._opened, self._opened - self._idle.qsize()


def _dict_factory(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> dict[str, Any]:
    return {col[0]: row[idx] for idx, col in enumerate(cursor.description)}
