"""PostgreSQL with every wait bounded, and a pool renewed when a connection is found dead.

piccolo's engine waits for ever: for a connection, for a free one of the pool, for a
statement. A frozen or unreachable database then hangs every request for as long as it
lasts. Here each wait has a timeout (``Timeouts``) and running out of one raises
``DatabaseUnavailable``, which the API answers with ``503``. After a restart of the
database every pooled connection is stale; the first one found dead expires them all,
so they do not fail one request each, and a read outside a transaction is repeated
once on a fresh connection.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg
from piccolo.engine.postgres import PostgresEngine

from ordnung.core.errors_db import is_unavailable, unavailable
from ordnung.core.persistence.pg_pool import LeanPool


@dataclass(frozen=True)
class Timeouts:
    """Seconds to wait for the database (PostgreSQL) before answering "unavailable";
    0 waits for ever. ``connect``: a new connection; ``acquire``: a free connection of
    the pool; ``statement``: one statement (the driver gives up and asks the server to
    cancel it, releasing its locks). ``clock_sync``: how often the clock offset is measured."""

    connect: float = 5.0
    acquire: float = 5.0
    statement: float = 15.0
    clock_sync: float = 10.0


def discard(connection: Any) -> None:
    """End a pooled connection found dead or frozen, at once. When the server closed it
    first, asyncpg has already taken it back from its holder and the proxy refuses every
    call (``InterfaceError``): then there is nothing left to end, and that refusal must
    not replace the error that brought us here."""
    with contextlib.suppress(asyncpg.InterfaceError):
        connection.terminate()


def _is_read(query: str) -> bool:
    return query.lstrip()[:6].upper() == "SELECT" and "FOR UPDATE" not in query.upper()


class TimedPostgresEngine(PostgresEngine):
    """PostgreSQL with timeouts on every wait, and a pool that is renewed as soon as a
    connection is found dead: after a restart of the database every pooled connection
    is stale, and without renewal each would fail one request in turn."""

    timeouts = Timeouts()

    async def start_connection_pool(self, **kwargs: Any) -> None:
        t = self.timeouts
        # the statement timeout is the driver's: on running out it stops waiting and asks
        # the server to cancel the statement (no session setting, which poolers such as
        # PgBouncer refuse at connect)
        pool = LeanPool(self.config["dsn"], min_size=kwargs.get("min_size", 1),
                        max_size=kwargs.get("max_size", 8),
                        connect_timeout=t.connect or None, acquire_timeout=t.acquire or None,
                        command_timeout=t.statement or None, max_idle_s=300.0)
        try:
            await pool.start()
        except Exception as exc:
            pool.terminate()
            if is_unavailable(exc):
                raise unavailable(exc) from exc
            raise
        self.pool = pool

    async def connection_failed(self) -> None:
        """A connection was found dead: every other pooled one is likely dead too (the
        server restarted), so replace them all on their next use."""
        if self.pool is not None:
            await self.pool.expire_connections()

    async def run_pooled(self, query: str, args: Sequence[Any] | None = None) -> Any:
        """One statement outside a transaction, on a pooled connection; a read that finds
        its connection dead is retried once on a fresh one (nothing was changed, so
        repeating it is safe)."""
        for attempt in (1, 2):
            try:
                assert self.pool is not None, "the pool is not running"
                async with self.pool.acquire() as connection:
                    try:
                        return await connection.fetch(query, *(args or ()))
                    except Exception as exc:
                        if is_unavailable(exc):  # resetting it would wait as long again
                            discard(connection)
                        raise
            except Exception as exc:
                if not is_unavailable(exc):
                    raise
                await self.connection_failed()
                if attempt == 2 or not _is_read(query) or isinstance(exc, TimeoutError):
                    raise unavailable(exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def pool_use(self) -> tuple[int, int]:
        """(connections open, in use); (0, 0) before the pool is started."""
        if self.pool is None:
            return 0, 0
        size = int(self.pool.get_size())
        return size, size - int(self.pool.get_idle_size())
