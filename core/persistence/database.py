"""The database connection: chosen by URL, SQLite (embedded default) or PostgreSQL.

Every statement the engine runs goes through one small API here (``run``,
``fetch``, ``fetch_one``, ``insert_rows``): portable SQL with ``{}`` placeholders,
translated once per statement text for the driver (``$1``... or ``?``) and then
reused, so asyncpg's per-connection statement cache prepares each one once. The
stores keep their statements as module constants. piccolo provides the engines
(pools, transactions) and the table classes that declare the schema the code
expects (``tables.py``, checked against what the migrations build); nothing is
queried through the table classes, whose binding to an engine is global, so each
``Database`` is independent and several engines may run in one process.

Write transactions on SQLite are IMMEDIATE (take the write lock up front) so
read-then-write never fails with "database is locked"; on PostgreSQL rows are
locked with ``SELECT ... FOR UPDATE`` (``lock_suffix``) where an aggregate is read
for change. A PostgreSQL transaction aborted for a concurrent one (deadlock,
serialization failure) raises ``TransientConflict``, which ``retrying`` answers by
running the unit of work again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib
import pkgutil
import sqlite3
from collections.abc import AsyncIterator, Iterator, Sequence
from contextvars import ContextVar
from typing import Any, NamedTuple
from urllib.parse import unquote, urlparse

import structlog
from piccolo.engine.sqlite import TransactionType

from ordnung.core.domain.common import utcnow
from ordnung.core.errors import InvalidInput
from ordnung.core.errors_db import (
    is_transient,
    is_unavailable,
    is_unique_violation,
    transient,
    unavailable,
)
from ordnung.core.persistence import clock
from ordnung.core.persistence.fence import WRITE_FENCE, is_write
from ordnung.core.persistence.generations import (
    CARRIED,
    OBSERVED,
    OBSERVED_COLUMNS,
    Observed,
    observe,
    write_guards,
)
from ordnung.core.persistence.postgres_engine import TimedPostgresEngine, Timeouts, discard
from ordnung.core.persistence.postgres_transaction import SafePostgresTransaction
from ordnung.core.persistence.retrying import TRIES
from ordnung.core.persistence.sqlite_engine import PooledSQLiteEngine, SQLiteSettings

#: what a guarded ``run_together`` that refuses itself raises (``division_by_zero``)
_DIVISION_BY_ZERO = "22012"

log = structlog.get_logger("ordnung.db")

DEFAULT_URL = "sqlite:///ordnung.db"
MIGRATION_APP = "ordnung"


#: the bookkeeping table of applied migrations, as piccolo's own runner created it
#: (databases migrated by earlier versions already have it)
_MIGRATION_TABLE = {
    "sqlite": 'CREATE TABLE IF NOT EXISTS "migration" ("id" INTEGER PRIMARY KEY NOT NULL, '
              '"name" VARCHAR(200) NOT NULL DEFAULT \'\', '
              '"app_name" VARCHAR(200) NOT NULL DEFAULT \'\', '
              '"ran_on" TIMESTAMP NOT NULL DEFAULT current_timestamp)',
    "postgres": 'CREATE TABLE IF NOT EXISTS "migration" ("id" SERIAL PRIMARY KEY NOT NULL, '
                '"name" VARCHAR(200) NOT NULL DEFAULT \'\', '
                '"app_name" VARCHAR(200) NOT NULL DEFAULT \'\', '
                '"ran_on" TIMESTAMP NOT NULL DEFAULT current_timestamp)',
}
_MIGRATIONS_DONE = "SELECT name FROM migration WHERE app_name = {}"
_MIGRATION_RAN = "INSERT INTO migration (name, app_name, ran_on) VALUES ({}, {}, {})"
_MIGRATION_LOCK = "SELECT pg_advisory_xact_lock(7251113)"
_PROBE = "SELECT 1 AS ok"


def insert_sql(table: str, columns: Sequence[str], rows: int,
               computed: dict[str, str] | None = None) -> str:
    """A multi-row INSERT of ``rows`` rows of ``columns`` (``{}`` placeholders), and the
    ``computed`` columns set to the same SQL expression in every row."""
    return _insert_sql(table, tuple(columns), rows,
                       tuple(computed.items()) if computed else ())


@functools.lru_cache(maxsize=1024)
def _insert_sql(table: str, columns: tuple[str, ...], rows: int,
                computed: tuple[tuple[str, str], ...]) -> str:
    """``insert_sql``, built once per shape: every change writes its events, outbox rows
    and stock movements this way, in a few row counts."""
    row = "(" + ", ".join(["{}"] * len(columns) + [sql for _, sql in computed]) + ")"
    names = ", ".join((*columns, *(name for name, _ in computed)))
    return f"INSERT INTO {table} ({names}) VALUES " + ", ".join(row for _ in range(rows))


#: one statement of a batch of writes (``Database.run_together``): its portable SQL
#: (``{}`` placeholders) and its arguments
Statement = tuple[str, Sequence[Any]]


class Headed(NamedTuple):
    """What ``Database.run_headed`` did: whether the statement stood (else it wrote
    nothing), and the heading's value (None when a first attempt, whose answer was lost
    with its connection, is known to have stood)."""

    stood: bool
    returned: Any = None


class Heading(NamedTuple):
    """Common table expressions that head the writes of ``Database.run_headed``: their
    SQL ({} placeholders) and arguments, the condition the statement must meet or refuse
    itself whole, and an expression over them for what it returns."""

    sql: str
    args: Sequence[Any]
    condition: str
    returns: str


def rows_statement(table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                   computed: dict[str, str] | None = None) -> Statement:
    """The multi-row INSERT of ``rows`` (tuples in ``columns`` order) as a statement."""
    return insert_sql(table, columns, len(rows), computed), [v for r in rows for v in r]


def _together(statements: Sequence[Statement]) -> tuple[list[str], list[Any]]:
    """``statements`` as the data-modifying ``WITH`` parts of one statement (``w0``,
    ``w1``...), and their arguments in order."""
    parts: list[str] = []
    values: list[Any] = []
    for i, (sql, args) in enumerate(statements):
        if sql.lstrip()[:4].upper() == "WITH":
            raise ValueError("a statement run together must not begin with WITH")
        parts.append(f"w{i} AS ({sql})")
        values.extend(args)
    return parts, values


class Tally:
    """The statements one piece of work ran (``Database.tally``); a tally taken inside
    another's work (``outer``) counts them for both."""

    __slots__ = ("outer", "statements")

    def __init__(self, outer: Tally | None = None) -> None:
        self.statements = 0
        self.outer = outer


#: the tally of the work that asked for one; the engine's background loops were started
#: before it was set, so what they run (the clock's measurement, workers polling) is not
#: counted, while tasks the work itself starts (the delivered marks of its events) are
_TALLY: ContextVar[Tally | None] = ContextVar("ordnung_statement_tally", default=None)


def where(*filters: tuple[str, Any]) -> tuple[str, list[Any]]:
    """`` WHERE ...`` of the filters whose value is given (not None, not empty) and their
    arguments; a list value fills an ``IN ({})`` clause with one placeholder per item.
    For the lists whose filters are optional: each clause is still a constant."""
    clauses: list[str] = []
    args: list[Any] = []
    for clause, value in filters:
        if value is None:
            continue
        if isinstance(value, list | tuple):
            if not value:
                continue
            clauses.append(clause.replace("{}", ", ".join("{}" for _ in value)))
            args.extend(value)
        else:
            clauses.append(clause)
            args.append(value)
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), args


def _sqlite_locked(exc: BaseException) -> bool:
    """SQLite's ``database is locked``: another process held the lock for the whole lock
    timeout (the engine's ``DatabaseUnavailable``, to every adapter)."""
    return isinstance(exc, sqlite3.OperationalError) and is_unavailable(exc)


class _PostgresEngine(TimedPostgresEngine):
    def transaction(self, allow_nested: bool = True) -> SafePostgresTransaction:
        return SafePostgresTransaction(engine=self, allow_nested=allow_nested)


Driver = PooledSQLiteEngine | _PostgresEngine


def engine_for_url(url: str, pool_size: int = 8) -> Driver:
    parsed = urlparse(url)
    if parsed.scheme == "sqlite":
        path = unquote(parsed.path)
        if parsed.netloc:
            path = parsed.netloc + path
        elif path.startswith("/") and not url.startswith("sqlite:////"):
            path = path[1:]
        if not path or path == ":memory:":
            raise InvalidInput("SQLite needs a file path, e.g. sqlite:///ordnung.db",
                               field="database_url")
        return PooledSQLiteEngine(path=path, settings=SQLiteSettings.from_env())
    if parsed.scheme in ("postgres", "postgresql"):
        return _PostgresEngine(config={"dsn": url})
    raise InvalidInput(f"unsupported database URL scheme {parsed.scheme!r}; "
                       "use sqlite:///path or postgresql://...", field="database_url")


class Database:
    def __init__(self, url: str = DEFAULT_URL, pool_size: int = 8,
                 timeouts: Timeouts | None = None, transaction_tries: int = TRIES) -> None:
        self.url = url
        self.pool_size = pool_size
        self.timeouts = timeouts or Timeouts()
        #: tries of a unit of work the database aborted for a concurrent one, for every
        #: caller of ``retrying`` on this database (``EngineConfig.transaction_tries``)
        self.transaction_tries = transaction_tries
        self.engine = engine_for_url(url, pool_size)
        if isinstance(self.engine, _PostgresEngine):
            self.engine.timeouts = self.timeouts
        self.kind = "postgres" if isinstance(self.engine, _PostgresEngine) else "sqlite"
        #: `` FOR UPDATE`` where a read must lock its rows until commit (PostgreSQL);
        #: SQLite's write transactions already hold the database's one write lock
        self.lock_suffix = " FOR UPDATE" if self.kind == "postgres" else ""
        self._statements = 0
        self._compiled: dict[str, str] = {}
        self._checkpointer: asyncio.Task[None] | None = None
        self._clock: asyncio.Task[None] | None = None
        self._started = False

    @property
    def statements(self) -> int:
        """SQL statements run so far through this database (BEGIN/COMMIT not included)."""
        return self._statements

    @contextlib.contextmanager
    def tally(self) -> Iterator[Tally]:
        """Count the statements that this task and the tasks it starts run: what one
        request or call costs, whatever the engine does beside it at the same time
        (``statements`` counts everything, for benchmarks)."""
        tally = Tally(_TALLY.get())
        token = _TALLY.set(tally)
        try:
            yield tally
        finally:
            _TALLY.reset(token)

    def pool_use(self) -> tuple[int, int]:
        """(connections open, in use) of this database's pool (for the metrics)."""
        return self.engine.pool_use()

    @property
    def is_postgres(self) -> bool:
        return self.kind == "postgres"

    async def start(self) -> None:
        if isinstance(self.engine, _PostgresEngine):
            await self.engine.start_connection_pool(min_size=1, max_size=self.pool_size)
        else:
            # waits (bounded) for another process's lock: a worker restarted while
            # another one writes must not fail its start-up
            await self.engine.use_wal()
            self._checkpointer = asyncio.create_task(self.engine.checkpointing())
        self._started = True
        await clock.sync_clock(self)
        if self.timeouts.clock_sync > 0:
            self._clock = asyncio.create_task(clock.keep_in_step(self, self.timeouts.clock_sync))

    async def stop(self) -> None:
        if self._clock is not None:
            self._clock.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._clock
            self._clock = None
        if isinstance(self.engine, _PostgresEngine) and self._started:
            await self.engine.close_connection_pool()
        if self._checkpointer is not None:
            self._checkpointer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpointer
            self._checkpointer = None
        if isinstance(self.engine, PooledSQLiteEngine):
            await self.engine.close()
        self._started = False

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        """A write transaction; nested calls join the outer one. Once an outermost one
        has committed, a claimed request's write fence hears of it."""
        outermost = not self.engine.transaction_exists()
        transaction: Any
        if isinstance(self.engine, PooledSQLiteEngine):
            transaction = self.engine.transaction(transaction_type=TransactionType.immediate)
        else:
            transaction = self.engine.transaction()
        try:
            async with transaction as joined:
                yield joined
        except Exception as exc:
            # PostgreSQL aborted it for a concurrent one (a statement's deadlock is
            # already converted by ``run``; a serialization failure may come at COMMIT)
            if is_transient(exc):
                raise transient(exc) from exc
            if _sqlite_locked(exc):  # another process held the write lock throughout
                raise unavailable(exc) from exc
            raise
        fence = WRITE_FENCE.get()
        if fence is not None and outermost:
            fence.committed(transaction)

    async def connection_failed(self) -> None:
        """A statement found the database gone: renew the pooled connections."""
        if isinstance(self.engine, _PostgresEngine):
            await self.engine.connection_failed()

    def in_transaction(self) -> Any:
        """The transaction this task is in, or None."""
        return self.engine.current_transaction.get()

    @contextlib.contextmanager
    def outside_transaction(self) -> Iterator[None]:
        """Statements inside the block run on their own (autocommit), never in a
        transaction this task may be in, and unfenced: bookkeeping that must not commit
        or roll back with the request's work (an idempotency claim, its lease)."""
        transactions: ContextVar[Any] = self.engine.current_transaction
        current = transactions.set(None)
        fence = WRITE_FENCE.set(None)
        try:
            yield
        finally:
            WRITE_FENCE.reset(fence)
            transactions.reset(current)

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        """Run a portable statement ({} placeholders); the rows as (mutable) dicts."""
        return [dict(r) for r in await self.run(sql, *args)]

    async def fetch_one(self, sql: str, *args: Any) -> dict[str, Any] | None:
        """The first row of a portable statement as a dict, or None."""
        rows = await self.run(sql, *args)
        return dict(rows[0]) if rows else None

    async def run(self, sql: str, *args: Any) -> list[Any]:
        """Run a portable statement ({} placeholders) straight through the driver, in the
        current transaction if there is one; rows come back as mappings.

        The driver is called directly (not through piccolo's query builder, whose
        per-value conversion cost more CPU than the statements): a transaction's own
        connection, or else the engine's pool."""
        return await self._statement(sql, args)

    async def _statement(self, sql: str, args: tuple[Any, ...],
                         alone: bool = False) -> list[Any]:
        seen = OBSERVED.get()
        if seen is not None and seen.gate is not None and is_write(sql):
            return await self._gated(seen, sql, args, alone)
        return await self._run(sql, args, alone)

    async def run_confirmed(self, sql: str, *args: Any) -> list[Any]:
        """Run a write that carries the request's ``generations.write_guards`` and
        returns ``OBSERVED_COLUMNS``: it may run before the request's gate, because it
        matches nothing unless the gate would pass (the generations its kept copies were
        read at are still current), and what it returns passes the gate for free.
        Outside a transaction it is the whole change, one statement."""
        seen = OBSERVED.get()
        if seen is not None and seen.gate is not None and seen.access is not None:
            await seen.through_gate()  # the generations are known: the gate costs nothing
        rows = await self._run(sql, args)
        if rows and seen is not None and CARRIED in sql:
            observe(rows[0])
            await seen.through_gate()
        return rows

    async def _gated(self, seen: Observed, sql: str, args: tuple[Any, ...],
                     alone: bool = False) -> list[Any]:
        """A write of a request whose kept copies wait at its gate (``...generations``):
        the gate is passed before it, or, for a write inside a transaction that brings
        the generations back itself, just after it (a refusal rolls it back)."""
        if CARRIED in sql and not alone and self.engine.current_transaction.get() is not None:
            rows = await self._run(sql, args)
            if rows:
                observe(rows[0])
            await seen.through_gate()
            return rows
        await seen.through_gate()
        return await self._run(sql, args, alone)

    async def _run(self, sql: str, args: tuple[Any, ...], alone: bool = False) -> list[Any]:
        query = self._dialect(sql)
        self._statements += 1
        tally = _TALLY.get()
        while tally is not None:
            tally.statements += 1
            tally = tally.outer
        fence = WRITE_FENCE.get()
        if fence is not None and is_write(sql):
            await fence.before_write()
        transaction: Any = self.engine.current_transaction.get()
        if isinstance(self.engine, _PostgresEngine):
            return await self._run_postgres(self.engine, transaction, query, args, alone)
        try:
            if transaction is not None:
                return list(transaction.connection.run(query, args))
            return list(await self.engine.run_autocommit(query, args))
        except sqlite3.OperationalError as exc:
            if _sqlite_locked(exc):
                raise unavailable(exc) from exc
            raise

    @staticmethod
    async def _run_postgres(engine: _PostgresEngine, transaction: Any, query: str,
                            args: tuple[Any, ...], alone: bool) -> list[Any]:
        if transaction is not None and not transaction.begun and not (
                alone and transaction.may_run_alone()):
            await transaction.begin_now()  # BEGIN goes with the first statement
        try:
            if transaction is None:
                return list(await engine.run_pooled(query, args))
            if not transaction.begun:
                return await transaction.run_alone(query, args)
            return list(await transaction.connection.fetch(query, *args))
        except Exception as exc:
            if transaction is not None and is_unavailable(exc):
                await engine.connection_failed()
                raise unavailable(exc) from exc
            if is_transient(exc):  # the transaction lost to a concurrent one
                raise transient(exc) from exc
            raise

    async def run_together(self, statements: Sequence[Statement], *,
                           guarded: bool = False) -> list[int]:
        """Run writes that need nothing from one another, in this order; how many rows
        each one's ``RETURNING`` gave (0 for one without).

        On PostgreSQL they go as one statement, one round trip: each a data-modifying
        ``WITH`` of a final ``SELECT`` that counts what the returning ones returned.
        They share one snapshot, so none may read what another writes (the order's row,
        its ledger rows, its events and outbox rows of one change do not). On SQLite,
        whose statements cost no round trip and which has no such ``WITH``, one by one.

        ``guarded``: the first is a guarded save (a version check) whose caller raises,
        and so rolls the transaction back, when it returned no row. On PostgreSQL the
        statement then refuses itself whole when the guard matched nothing (its final
        ``SELECT`` divides by the guard's count, and the error aborts every part), so a
        transaction that has run nothing else yet runs it on its own, without ``BEGIN``
        and ``COMMIT``: it is the transaction's last statement, and the caller raises
        as before (the counts all 0)."""
        if not self.is_postgres or len(statements) < 2:
            return [len(await self.run(sql, *args)) for sql, args in statements]
        parts, values = _together(statements)
        counts = [f"(SELECT COUNT(*) FROM w{i})" if "RETURNING" in sql.upper() else "0"
                  for i, (sql, _) in enumerate(statements)]
        select = ", ".join(f"{c} AS n{i}" for i, c in enumerate(counts))
        sql = "WITH " + ", ".join(parts) + " SELECT " + select
        if not guarded:
            return self._counts(await self.run(sql, *values), len(statements))
        sql += ", 1 / (SELECT COUNT(*) FROM w0) AS guard"
        try:
            rows = await self._statement(sql, tuple(values), alone=True)
        except Exception as exc:
            if getattr(exc, "sqlstate", None) != _DIVISION_BY_ZERO:
                raise
            return [0] * len(statements)  # the guard matched nothing: nothing was written
        return self._counts(rows, len(statements))

    async def run_headed(self, heading: Heading, statements: Sequence[Statement], *,
                         required: Sequence[int] = ()) -> Headed:
        """PostgreSQL: ``heading`` and then ``statements`` (writes that need nothing from
        one another, as ``run_together`` takes them) as one statement, which refuses
        itself whole unless ``heading.condition`` holds, each of ``statements`` whose
        index is in ``required`` returned a row, and the generations are still those the
        request's kept copies were read at (``write_guards``: so it may run before the
        request's gate, which it then passes for free).

        A transaction that has run nothing yet runs it on its own, without ``BEGIN`` and
        ``COMMIT``: it must be the transaction's last statement. Its ``statements`` must
        insert rows of their own (new ids): on a connection found dead it runs once more
        on a fresh one, and if the first attempt had committed, the second violates
        those rows' keys and writes nothing, and it stood all the same. In a transaction
        that has begun, a refusal has aborted it: the caller raises."""
        parts, values = _together(statements)
        parts, values = [heading.sql, *parts], [*heading.args, *values]
        guards, guarded = write_guards()
        condition = " AND ".join([heading.condition,
                                  *(f"EXISTS (SELECT 1 FROM w{i})" for i in required)])
        sql = (f"WITH {', '.join(parts)} SELECT {heading.returns} AS headed, "
               f"{OBSERVED_COLUMNS}, 1 / (CASE WHEN {condition}{guards} THEN 1 ELSE 0 END) "
               "AS guard")
        values.extend(guarded)
        seen = OBSERVED.get()
        if seen is not None and seen.gate is not None and seen.access is not None:
            await seen.through_gate()  # the generations are known: the gate costs nothing
        try:
            rows = await self._run(sql, tuple(values), alone=True)
        except Exception as exc:
            if getattr(exc, "sqlstate", None) == _DIVISION_BY_ZERO:
                return Headed(stood=False)
            transaction = self.in_transaction()
            if is_unique_violation(exc) and getattr(transaction, "repeated", False):
                log.info("a statement whose connection died had committed")
                if seen is not None:
                    with self.outside_transaction():  # the transaction ran its one statement
                        await seen.through_gate()
                return Headed(stood=True)
            raise
        observe(rows[0])
        if seen is not None:
            await seen.through_gate()
        return Headed(stood=True, returned=rows[0]["headed"])

    @staticmethod
    def _counts(rows: list[Any], n: int) -> list[int]:
        return [int(rows[0][f"n{i}"]) for i in range(n)]

    def sql_now(self, plus_s: float = 0) -> str:
        """SQL for the database's own clock, ``plus_s`` seconds on (a literal, not a
        parameter), as a timestamp its columns compare with: for lease decisions that
        must not depend on any process's clock. On SQLite: text in the format piccolo
        stores timestamps in (it sorts like the time)."""
        if self.is_postgres:
            return f"(now() + interval '{float(plus_s)} seconds')" if plus_s else "now()"
        shift = f", '{float(plus_s):+} seconds'" if plus_s else ""
        return f"strftime('%Y-%m-%d %H:%M:%f+00:00', 'now'{shift})"

    async def insert_rows(self, table: str, columns: tuple[str, ...],
                          rows: Sequence[Sequence[Any]], suffix: str = "",
                          computed: dict[str, str] | None = None) -> list[Any]:
        """One multi-row INSERT of ``rows`` (each a tuple in ``columns`` order), and the
        ``computed`` columns set to the same SQL expression in every row."""
        if not rows:
            return []
        sql, args = rows_statement(table, columns, rows, computed)
        return await self.run(sql + (f" {suffix}" if suffix else ""), *args)

    def _dialect(self, sql: str) -> str:
        """``{}`` placeholders as the driver wants them (``$1``... or ``?``), cached."""
        compiled = self._compiled.get(sql)
        if compiled is None:
            if self.is_postgres:
                parts = sql.split("{}")
                compiled = parts[0] + "".join(f"${i}{part}" for i, part in
                                              enumerate(parts[1:], start=1))
            else:
                compiled = sql.replace("{}", "?")
            if len(self._compiled) < 4096:
                self._compiled[sql] = compiled
        return compiled

    async def probe(self, within: float) -> None:
        """Prove the database answers a statement within ``within`` seconds (readiness);
        raises ``DatabaseUnavailable`` if not. On PostgreSQL the wait is bounded whatever
        the statement timeout, and a connection that did not answer is discarded."""
        if not isinstance(self.engine, _PostgresEngine) or self.engine.pool is None:
            await self.fetch(_PROBE)
            return
        try:
            async with self.engine.pool.acquire(timeout=within) as connection:
                try:
                    await connection.fetchval("SELECT 1", timeout=within)
                except Exception:
                    discard(connection)
                    raise
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            await self.engine.connection_failed()
            raise unavailable(exc) from exc

    # -- migrations ---------------------------------------------------------------
    @staticmethod
    def _migration_modules() -> list[Any]:
        from ordnung.migrations import versions

        return sorted(
            (importlib.import_module(f"{versions.__name__}.{m.name}")
             for m in pkgutil.iter_modules(versions.__path__)),
            key=lambda mod: mod.ID,
        )

    async def pending_migrations(self) -> list[str]:
        """Ids of the migrations this code has that the database has not applied."""
        known = [module.ID for module in self._migration_modules()]
        try:
            rows = await self.fetch(_MIGRATIONS_DONE, MIGRATION_APP)
        except Exception as exc:  # never migrated: no bookkeeping table yet
            if type(exc).__name__ == "UndefinedTableError" or "no such table" in str(exc):
                return known
            raise
        done = {r["name"] for r in rows}
        return [m for m in known if m not in done]

    async def migrate(self) -> list[str]:
        """Apply migrations not yet applied, in one transaction under a lock (the only
        migration runner: ``ordnung migrate`` and every engine's start call it); returns
        the ids applied."""
        modules = self._migration_modules()
        applied: list[str] = []
        await self.run(_MIGRATION_TABLE[self.kind])
        async with self.transaction():
            if self.is_postgres:
                await self.run(_MIGRATION_LOCK)
            done = {r["name"] for r in await self.run(_MIGRATIONS_DONE, MIGRATION_APP)}
            for module in modules:
                if module.ID in done:
                    continue
                await module.apply(self)
                await self.run(_MIGRATION_RAN, module.ID, MIGRATION_APP,
                               utcnow().replace(tzinfo=None))
                applied.append(module.ID)
        if applied:
            log.info("migrations applied", migrations=applied, database=self.kind)
        return applied

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[Database]:
        await self.start()
        try:
            yield self
        finally:
            await self.stop()
