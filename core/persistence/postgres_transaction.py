"""A PostgreSQL transaction that always cleans up, even when the connection is gone.

piccolo's own ``PostgresTransaction.__aexit__`` rolls back, then returns the
connection to the pool, then resets the task's "current transaction". When the
database drops the connection mid-transaction (a restart, a terminated backend, a
network blip), ``rollback()`` raises and the last two steps never run: the pool
loses a connection for good, and every later statement of the same task is sent
to the dead connection of a transaction that no longer exists. The clean-up of a
failed request (giving its idempotency key back) then fails too, and the key stays
locked. Here the connection is always released and the context always reset; a
failed rollback is logged and the error that ended the transaction is the one that
propagates. A transaction that cannot even begin gives its connection back too.

A connection found dead (the database restarted, a network blip) renews the whole
pool, and a transaction that could not begin on it begins once more on a fresh one:
nothing was done yet, so the retry is safe, and service returns at the first request
after the database does. A database that cannot be reached in time raises
``DatabaseUnavailable``.

``BEGIN`` is sent with the transaction's first statement, not on entering the block
(``begin_now``): a transaction whose only statement is a guarded change that refuses
itself whole (``Database.run_together(guarded=True)``) runs it on its own, without
``BEGIN`` and ``COMMIT``, two round trips fewer; ``finished`` then refuses any further
statement of the block.
"""

from __future__ import annotations

from typing import Any

import structlog
from piccolo.engine.postgres import PostgresTransaction

from ordnung.core.errors import DatabaseUnavailable
from ordnung.core.errors_db import is_unavailable, unavailable
from ordnung.core.persistence.postgres_engine import discard

log = structlog.get_logger("ordnung.db")


def _dead(exc: BaseException) -> bool:
    """The connection is gone (not frozen: a statement that timed out or was cancelled
    would wait as long again)."""
    return (is_unavailable(exc) and not isinstance(exc, TimeoutError)
            and type(exc).__name__ != "QueryCanceledError")


class SafePostgresTransaction(PostgresTransaction):
    """A block inside another transaction of the same task joins it (``outer``). Nobody
    commits or rolls back by hand: the block's outcome decides, once, on leaving the
    outermost one."""

    def __init__(self, engine: Any, allow_nested: bool = True) -> None:
        super().__init__(engine=engine, allow_nested=allow_nested)
        self.outer: Any = engine.current_transaction.get()
        #: ``BEGIN`` was sent (with the first statement)
        self.begun = False
        #: the block's one statement ran on its own: nothing more may run in it
        self.finished = False
        #: ... and ran a second time, its first connection found dead
        self.repeated = False

    async def __aenter__(self) -> PostgresTransaction:
        if self.outer is not None:
            return self.outer
        await self._connect()
        self.context = self.engine.current_transaction.set(self)
        return self

    async def _connect(self) -> None:
        try:
            self.connection = await self.get_connection()
        except Exception as exc:
            if is_unavailable(exc):
                await self._connection_failed()
                raise unavailable(exc) from exc
            raise
        self.transaction = self.connection.transaction()

    async def begin_now(self) -> None:
        """Send ``BEGIN`` (before the transaction's first statement); on a connection
        found dead, renew the pool and begin once more on a fresh one."""
        if self.finished:
            raise RuntimeError("a statement after the one its transaction ran on its own")
        for attempt in (1, 2):
            try:
                await self.begin()
                self.begun = True
                return
            except BaseException as exc:  # never keep a connection that could not begin
                await self._give_back()
                self.connection = None
                if not isinstance(exc, Exception) or not is_unavailable(exc):
                    raise
                await self._connection_failed()
                if attempt == 2 or isinstance(exc, TimeoutError):
                    raise unavailable(exc) from exc
                log.info("a pooled connection was dead; beginning on a fresh one")
                await self._connect()

    async def run_alone(self, query: str, args: tuple[Any, ...]) -> list[Any]:
        """Run the block's one statement on its own, without ``BEGIN`` and ``COMMIT``.
        Only a statement that is safe to repeat runs so, so on a connection found dead
        it runs once more on a fresh one, as ``begin_now`` begins once more: the first
        attempt may have committed before the connection went, and then the second
        refuses itself: a guarded change matches nothing; an insert of the first
        attempt's own rows violates their keys, which ``repeated`` tells the caller means
        that the first attempt stood."""
        self.finished = True
        for attempt in (1, 2):
            try:
                return list(await self.connection.fetch(query, *args))
            except Exception as exc:
                if attempt == 2 or not _dead(exc):
                    raise
                await self._connection_failed()
                discard(self.connection)
                await self._give_back()
                self.connection = None
                log.info("a pooled connection was dead; running on a fresh one")
                await self._connect()
                self.repeated = True
        raise AssertionError("unreachable")  # pragma: no cover

    def may_run_alone(self) -> bool:
        """Whether the next statement may run on its own: nothing has run in this
        transaction yet, and its connection is not known to be closed."""
        return not self.begun and not self.finished and not self.connection.is_closed()

    async def _give_back(self) -> None:
        try:
            if self.engine.pool:
                await self.engine.pool.release(self.connection)
            else:
                await self.connection.close()
        except Exception as exc:
            log.warning("releasing a connection failed", error=type(exc).__name__)

    async def _connection_failed(self) -> None:
        renew = getattr(self.engine, "connection_failed", None)
        if renew is not None:
            await renew()

    async def __aexit__(self, exception_type: Any, exception: Any, traceback: Any) -> bool:
        if self.outer is not None:
            return exception is None
        if self.connection is None:  # it could not begin; the connection went back
            self.engine.current_transaction.reset(self.context)
            return exception is None
        try:
            if not self.begun:
                pass  # nothing ran, or one statement on its own: nothing to end
            elif exception:
                if isinstance(exception, DatabaseUnavailable):
                    # frozen or gone: a rollback would wait as long again; closing the
                    # connection ends the transaction on the server just the same
                    discard(self.connection)
                else:
                    try:
                        await self.rollback()
                    except Exception as exc:  # the connection is gone: so is the transaction
                        log.warning("rollback failed; the connection is discarded",
                                    error=type(exc).__name__)
                        discard(self.connection)
            else:
                try:
                    await self.commit()
                except DatabaseUnavailable:
                    raise
                except Exception as exc:
                    if is_unavailable(exc):
                        await self._connection_failed()
                        discard(self.connection)
                        raise unavailable(exc) from exc
                    raise
        finally:
            try:
                if self.engine.pool:
                    await self.engine.pool.release(self.connection)
                else:
                    await self.connection.close()
            except Exception as exc:  # asyncpg has discarded it; nothing more to do
                log.warning("releasing a connection failed", error=type(exc).__name__)
            finally:
                self.engine.current_transaction.reset(self.context)
        return exception is None
