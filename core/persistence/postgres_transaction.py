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
"""

from __future__ import annotations

from typing import Any

import structlog
from piccolo.engine.postgres import PostgresTransaction

from ordnung.core.errors import DatabaseUnavailable
from ordnung.core.errors_db import is_unavailable, unavailable

log = structlog.get_logger("ordnung.db")


class SafePostgresTransaction(PostgresTransaction):
    """A block inside another transaction of the same task joins it (``outer``). Nobody
    commits or rolls back by hand: the block's outcome decides, once, on leaving the
    outermost one."""

    def __init__(self, engine: Any, allow_nested: bool = True) -> None:
        super().__init__(engine=engine, allow_nested=allow_nested)
        self.outer: Any = engine.current_transaction.get()

    async def __aenter__(self) -> PostgresTransaction:
        if self.outer is not None:
            return self.outer
        for attempt in (1, 2):
            try:
                self.connection = await self.get_connection()
            except Exception as exc:
                if is_unavailable(exc):
                    await self._connection_failed()
                    raise unavailable(exc) from exc
                raise
            self.transaction = self.connection.transaction()
            try:
                await self.begin()
                break
            except BaseException as exc:  # never keep a connection that could not begin
                await self._give_back()
                if not isinstance(exc, Exception) or not is_unavailable(exc):
                    raise
                await self._connection_failed()
                if attempt == 2 or isinstance(exc, TimeoutError):
                    raise unavailable(exc) from exc
                log.info("a pooled connection was dead; beginning on a fresh one")
        self.context = self.engine.current_transaction.set(self)
        return self

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
        try:
            if exception:
                if isinstance(exception, DatabaseUnavailable):
                    # frozen or gone: a rollback would wait as long again; closing the
                    # connection ends the transaction on the server just the same
                    self.connection.terminate()
                else:
                    try:
                        await self.rollback()
                    except Exception as exc:  # the connection is gone: so is the transaction
                        log.warning("rollback failed; the connection is discarded",
                                    error=type(exc).__name__)
                        self.connection.terminate()
            else:
                try:
                    await self.commit()
                except DatabaseUnavailable:
                    raise
                except Exception as exc:
                    if is_unavailable(exc):
                        await self._connection_failed()
                        self.connection.terminate()
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
