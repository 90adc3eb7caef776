"""Keeping this process's clock in step with the database's.

Leases and ages are compared across every server of a shop, so they must be read
from one clock: the database's. Asking the database for the time in every
statement that needs it would cost a round trip per decision (and most are taken
on values held in documents, not in SQL), so each process measures the offset
between its own clock and the database's at start and every few seconds after,
and ``utcnow()`` adds it. The measurement is taken halfway through a round trip;
one slower than ``MAX_ROUND_TRIP_S`` is not trusted (the previous offset stays).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import structlog

from ordnung.core.domain.common import clock_offset, set_clock_offset, system_now

if TYPE_CHECKING:
    from ordnung.core.persistence.database import Database

log = structlog.get_logger("ordnung.db")

#: a measurement whose round trip took longer than this is thrown away
MAX_ROUND_TRIP_S = 0.5
#: an offset change this large is logged: a server's clock was stepped, or is far off
NOTABLE_CHANGE_S = 1.0

_POSTGRES_NOW = "SELECT clock_timestamp() AS now"
_SQLITE_NOW = "SELECT strftime('%Y-%m-%d %H:%M:%f', 'now') AS now"


async def measure_offset(db: Database) -> float | None:
    """Seconds the database's clock is ahead of this process's (None if the round trip
    was too slow to tell)."""
    with db.outside_transaction():
        before = system_now()
        rows = await db.fetch(_POSTGRES_NOW if db.is_postgres else _SQLITE_NOW)
        after = system_now()
    if (after - before).total_seconds() > MAX_ROUND_TRIP_S:
        return None
    value = rows[0]["now"]
    if isinstance(value, str):  # SQLite: text, UTC
        value = datetime.fromisoformat(value).replace(tzinfo=UTC)
    return float((value - (before + (after - before) / 2)).total_seconds())


async def sync_clock(db: Database) -> None:
    """Measure the offset and make ``utcnow()`` use it."""
    offset = await measure_offset(db)
    if offset is None:
        return
    if abs(offset - clock_offset()) >= NOTABLE_CHANGE_S:
        log.warning("this server's clock differs from the database's; using the database's",
                    offset_s=round(offset, 3))
    set_clock_offset(offset)


async def keep_in_step(db: Database, interval: float) -> None:
    """Measure again every ``interval`` seconds until cancelled (a failed measurement
    keeps the last offset: the database is away, and nothing is leased meanwhile)."""
    while True:
        await asyncio.sleep(interval)
        try:
            await sync_clock(db)
        except Exception as exc:
            log.debug("measuring the database's clock failed", error=repr(exc))
