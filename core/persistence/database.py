"""The database connection: chosen by URL, SQLite (embedded default) or PostgreSQL.

One ``Database`` is bound to the piccolo table classes at start; an engine
process therefore talks to one database at a time. Write transactions on
SQLite are IMMEDIATE (take the write lock up front) so read-then-write never
fails with "database is locked"; on PostgreSQL rows are locked with
``SELECT ... FOR UPDATE`` where an aggregate is read for change.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import pkgutil
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any
from urllib.parse import unquote, urlparse

import structlog
from piccolo.apps.migrations.tables import Migration
from piccolo.engine.base import Engine as PiccoloEngine
from piccolo.engine.postgres import PostgresEngine
from piccolo.engine.sqlite import SQLiteEngine, TransactionType
from piccolo.query.base import Query

from ordnung.core.errors import Conflict, InvalidInput
from ordnung.core.errors_db import is_unavailable, unavailable
from ordnung.core.persistence import clock
from ordnung.core.persistence.fence import WRITE_FENCE, is_write
from ordnung.core.persistence.postgres_engine import TimedPostgresEngine, Timeouts
from ordnung.core.persistence.postgres_transaction import SafePostgresTransaction
from ordnung.core.persistence.sqlite_engine import PooledSQLiteEngine, SQLiteSettings
from ordnung.core.persistence.tables import ALL_TABLES

log = structlog.get_logger("ordnung.db")

DEFAULT_URL = "sqlite:///ordnung.db"
MIGRATION_APP = "ordnung"


class _Counting:
    """Counts the SQL statements an engine runs (benchmarks report it per order)."""

    statements = 0

    async def run_querystring(self, querystring: Any, *args: Any, **kwargs: Any) -> Any:
        self.statements += 1
        fence = WRITE_FENCE.get()
        if fence is not None and is_write(querystring.compile_string(
                engine_type=self.engine_type)[0]):  # type: ignore[attr-defined]
            await fence.before_write()
        return await super().run_querystring(querystring, *args, **kwargs)  # type: ignore[misc]

    async def run_ddl(self, *args: Any, **kwargs: Any) -> Any:
        self.statements += 1
        return await super().run_ddl(*args, **kwargs)  # type: ignore[misc]


class _PostgresEngine(_Counting, TimedPostgresEngine):
    def transaction(self, allow_nested: bool = True) -> SafePostgresTransaction:
        return SafePostgresTransaction(engine=self, allow_nested=allow_nested)


class _SQLiteEngine(_Counting, PooledSQLiteEngine):
    pass


def engine_for_url(url: str, pool_size: int = 8) -> PiccoloEngine:
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
        return _SQLiteEngine(path=path, settings=SQLiteSettings.from_env())
    if parsed.scheme in ("postgres", "postgresql"):
        return _PostgresEngine(config={"dsn": url})
    raise InvalidInput(f"unsupported database URL scheme {parsed.scheme!r}; "
                       "use sqlite:///path or postgresql://...", field="database_url")


class Database:
    #: the database the piccolo table classes are bound to in this process
    _active: Database | None = None

    def __init__(self, url: str = DEFAULT_URL, pool_size: int = 8,
                 timeouts: Timeouts | None = None) -> None:
        self.url = url
        self.pool_size = pool_size
        self.timeouts = timeouts or Timeouts()
        self.engine = engine_for_url(url, pool_size)
        if isinstance(self.engine, _PostgresEngine):
            self.engine.timeouts = self.timeouts
        self.kind = "postgres" if isinstance(self.engine, PostgresEngine) else "sqlite"
        self._compiled: dict[str, str] = {}
        self._checkpointer: asyncio.Task[None] | None = None
        self._clock: asyncio.Task[None] | None = None
        self._started = False

    @property
    def statements(self) -> int:
        """SQL statements run so far by this process (BEGIN/COMMIT not included)."""
        return int(getattr(self.engine, "statements", 0))

    @property
    def is_postgres(self) -> bool:
        return self.kind == "postgres"

    async def start(self) -> None:
        active = Database._active
        if active is not None and active is not self and active._started:
            raise Conflict(
                "another engine is running in this process: the table classes are bound to "
                f"one database at a time (running: {active.kind}); stop it first, or run "
                "the second engine in its own process")
        Database._active = self
        tables: tuple[Any, ...] = (*ALL_TABLES, Migration)
        for table in tables:
            table._meta.db = self.engine
        if isinstance(self.engine, PostgresEngine):
            await self.engine.start_connection_pool(min_size=1, max_size=self.pool_size)
        elif isinstance(self.engine, PooledSQLiteEngine):
            # waits (bounded) for another process's lock: a worker restarted while
            # another one writes must not fail its start-up
            await self.engine.use_wal()
            self._checkpointer = asyncio.create_task(self.engine.checkpointing())
        else:
            await self.engine.run_ddl("PRAGMA journal_mode = WAL")
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
        if isinstance(self.engine, PostgresEngine) and self._started:
            await self.engine.close_connection_pool()
        if self._checkpointer is not None:
            self._checkpointer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._checkpointer
            self._checkpointer = None
        if isinstance(self.engine, PooledSQLiteEngine):
            await self.engine.close()
        self._started = False
        if Database._active is self:
            Database._active = None

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Any]:
        """A write transaction; nested calls join the outer one. Once an outermost one
        has committed, a claimed request's write fence hears of it."""
        if isinstance(self.engine, SQLiteEngine):
            transaction = self.engine.transaction(transaction_type=TransactionType.immediate)
        else:
            transaction = self.engine.transaction()
        async with transaction as joined:
            yield joined
        fence = WRITE_FENCE.get()
        if fence is not None and transaction._parent is None:
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
        current = self.engine.current_transaction.set(None)
        fence = WRITE_FENCE.set(None)
        try:
            yield
        finally:
            WRITE_FENCE.reset(fence)
            self.engine.current_transaction.reset(current)

    def for_update(self, query: Query[Any, Any]) -> Any:
        """Lock the selected rows until commit (PostgreSQL); SQLite already holds the lock."""
        if self.is_postgres:
            return query.lock_rows()  # type: ignore[attr-defined]
        return query

    async def fetch(self, sql: str, *args: Any) -> list[dict[str, Any]]:
        """Run a raw, portable SQL statement ({} placeholders) and return rows as dicts."""
        return [dict(r) for r in await self.run(sql, *args)]

    async def run(self, sql: str, *args: Any) -> list[Any]:
        """Run a raw, portable statement ({} placeholders) straight through the driver, in
        the current transaction if there is one; rows come back as mappings.

        The hot path (placement, payments, the outbox) uses this rather than piccolo's
        query builder, whose per-value conversion cost more CPU than the statements."""
        engine: Any = self.engine
        query = self._dialect(sql)
        engine.statements += 1
        fence = WRITE_FENCE.get()
        if fence is not None and is_write(sql):
            await fence.before_write()
        transaction = engine.current_transaction.get()
        if self.is_postgres:
            if transaction is None:
                return list(await engine._run_in_pool(query, args))
            try:
                return list(await transaction.connection.fetch(query, *args))
            except Exception as exc:
                if is_unavailable(exc):
                    await engine.connection_failed()
                    raise unavailable(exc) from exc
                raise
        if transaction is not None:
            return list(transaction.connection.run(query, args))
        return list(await engine._run_in_new_connection(query, list(args)))

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
        extra = computed or {}
        columns = (*columns, *extra)
        row = "(" + ", ".join(["{}"] * (len(columns) - len(extra)) + list(extra.values())) + ")"
        sql = (f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
               + ", ".join(row for _ in rows) + (f" {suffix}" if suffix else ""))
        return await self.run(sql, *[value for r in rows for value in r])

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
            await self.fetch("SELECT 1 AS ok")
            return
        try:
            async with self.engine.pool.acquire(timeout=within) as connection:
                try:
                    await connection.fetchval("SELECT 1", timeout=within)
                except Exception:
                    connection.terminate()
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
            rows = await self.fetch("SELECT name FROM migration WHERE app_name = {}",
                                    MIGRATION_APP)
        except Exception as exc:  # never migrated: no bookkeeping table yet
            if type(exc).__name__ == "UndefinedTableError" or "no such table" in str(exc):
                return known
            raise
        done = {r["name"] for r in rows}
        return [m for m in known if m not in done]

    async def migrate(self) -> list[str]:
        """Apply migrations not yet applied, under a lock; returns the ids applied."""
        modules = self._migration_modules()
        applied: list[str] = []
        await Migration.create_table(if_not_exists=True).run()
        async with self.transaction():
            if self.is_postgres:
                await self.fetch("SELECT pg_advisory_xact_lock(7251113)")
            done = set(await Migration.get_migrations_which_ran(app_name=MIGRATION_APP))
            for module in modules:
                if module.ID in done:
                    continue
                await module.apply(self.engine)
                await Migration.insert(Migration(name=module.ID, app_name=MIGRATION_APP)).run()
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
