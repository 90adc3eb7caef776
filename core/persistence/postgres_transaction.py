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
"""

from __future__ import annotations

from typing import Any

import structlog
from piccolo.engine.postgres import PostgresTransaction

log = structlog.get_logger("ordnung.db")


class SafePostgresTransaction(PostgresTransaction):
    async def __aenter__(self) -> PostgresTransaction:
        if self._parent is not None:
            return self._parent
        self.connection = await self.get_connection()
        self.transaction = self.connection.transaction()
        try:
            await self.begin()
        except BaseException:  # never keep a connection that could not even begin
            try:
                if self.engine.pool:
                    await self.engine.pool.release(self.connection)
                else:
                    await self.connection.close()
            except Exception as exc:
                log.warning("releasing a connection failed", error=type(exc).__name__)
            raise
        self.context = self.engine.current_transaction.set(self)
        return self

    async def __aexit__(self, exception_type: Any, exception: Any, traceback: Any) -> bool:
        if self._parent:
            return exception is None
        try:
            if exception:
                if not self._rolled_back:
                    try:
                        await self.rollback()
                    except Exception as exc:  # the connection is gone: so is the transaction
                        log.warning("rollback failed; the connection is discarded",
                                    error=type(exc).__name__)
                        self.connection.terminate()
            elif not self._committed and not self._rolled_back:
                await self.commit()
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
