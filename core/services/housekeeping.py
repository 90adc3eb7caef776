"""Housekeeping: delete what the engine keeps only for a while, so that cost and disk do not
grow with traffic.

Some rows are needed for a time and then never again: a rate limiter's counter once its
window is over, an ``Idempotency-Key``'s record once repeats are no longer expected,
customer sessions and tokens once expired or revoked, carts nobody came back to, an
event's outbox row once every worker is done with it. Kept
for ever they would grow with every request, and the indexes of their tables with them.
History (orders, their events, stock movements, webhook attempts) is never touched here.

A pass deletes each kind in bounded batches (``housekeeping_batch`` rows per statement,
repeated while a statement comes back full, at most ``MAX_BATCHES`` per kind and pass: a
backlog is worked off over the following passes), so that no statement holds many locks
or one for long. Ages are judged in SQL on the database's clock (see
``ordnung.core.persistence.housekeeping``). The pass runs in every server process, with
the other background maintenance; a lease on the database's clock lets one process at a
time do it, and the holder keeps it while it lives; ``ordnung housekeeping`` runs one
pass by hand. What each pass deleted, by kind, goes to the log and to the metrics sink
(``ordnung_housekeeping_deleted_total`` under ``ordnung serve``).
"""

from __future__ import annotations

import time
from datetime import datetime

import structlog

from ordnung.core.config import EngineConfig
from ordnung.core.domain.common import new_id
from ordnung.core.observe import Metrics, NoMetrics
from ordnung.core.persistence.carts import ACTIVITY_GRAIN
from ordnung.core.persistence.database import Database
from ordnung.core.persistence.housekeeping import KINDS, HousekeepingStore
from ordnung.core.persistence.leases import JobLeases

log = structlog.get_logger("ordnung.housekeeping")

JOB = "housekeeping"
#: statements per kind and pass at most: a pass stays short whatever the backlog
MAX_BATCHES = 50


def _cart_retention(retention_s: float) -> float:
    """A cart's row knows the hour of its last change, not the moment: it goes one
    grain after the retention, so never before the retention has run out."""
    return retention_s + ACTIVITY_GRAIN.total_seconds() if retention_s else 0.0


class HousekeepingService:
    def __init__(self, db: Database, config: EngineConfig) -> None:
        self.db = db
        self.store = HousekeepingStore(db)
        self.leases = JobLeases(db)
        self.interval_s = config.housekeeping_interval_s
        self.batch = config.housekeeping_batch
        #: the retention of each kind that has one; a kind whose retention is 0 is off
        self.retention_s: dict[str, float] = {
            "idempotency_records": config.idempotency_retention_s,
            "sessions_expired": config.session_retention_s,
            "sessions_revoked": config.session_retention_s,
            "account_tokens": config.session_retention_s,
            "customer_tokens": config.session_retention_s,
            "guest_carts": _cart_retention(config.cart_retention_s),
            "placed_carts": _cart_retention(config.cart_retention_s),
            "outbox": config.outbox_retention_s,
        }
        #: told what each pass deleted (``Engine.observe_with``; a sink written before
        #: this figure existed has no such method and is skipped)
        self.metrics: Metrics = NoMetrics()
        #: this process, as the lease's holder
        self.owner = new_id("job")
        self._last: float | None = None

    @property
    def lease_s(self) -> float:
        """Long enough to outlive a slow pass (the holder renews it with every batch and
        pass); short enough that another process takes over soon after the holder died."""
        return max(3 * self.interval_s, 30.0)

    async def run_once(self) -> dict[str, int]:
        """One pass, if this process holds the job's lease (empty if another one does):
        rows deleted, by kind."""
        deleted: dict[str, int] = {}
        with self.db.outside_transaction():
            if not await self.leases.take(JOB, self.owner, self.lease_s):
                return deleted
            try:
                now = await self.leases.now()
                for kind in KINDS:
                    if KINDS[kind].aged and not self.retention_s.get(kind):
                        continue  # kept for ever by the settings
                    count, held = await self._prune(kind, now)
                    deleted[kind] = count
                    if not held:
                        break  # a slow pass lost the lease: the new holder goes on
            finally:
                # what went is counted even when a later kind's delete failed (each batch
                # commits on its own); every kind looked at is counted, 0 included, so
                # that its series shows "nothing to delete" rather than "never ran"
                report = getattr(self.metrics, "housekeeping_deleted", None)
                if deleted and report is not None:
                    report(deleted)
        if any(deleted.values()):
            log.info("housekeeping deleted expired rows",
                     **{kind: n for kind, n in deleted.items() if n})
        return deleted

    async def _prune(self, kind: str, now: datetime) -> tuple[int, bool]:
        """Delete ``kind``'s rows batch by batch: how many, and whether the lease is
        still held."""
        total = 0
        for n in range(MAX_BATCHES):
            if n and not await self.leases.take(JOB, self.owner, self.lease_s):
                return total, False
            count = await self.store.prune(kind, self.batch, self.retention_s.get(kind, 0.0),
                                           now)
            total += count
            if count < self.batch:
                break
        return total, True

    async def run_when_due(self) -> dict[str, int] | None:
        """A pass if ``interval_s`` has gone by since this process's last one (the
        maintenance loop asks every few seconds); None if not due."""
        now = time.monotonic()
        if self._last is not None and now - self._last < self.interval_s:
            return None
        self._last = now
        return await self.run_once()

    async def release(self) -> None:
        """Give the lease up (the process stops): another process takes the job at once."""
        with self.db.outside_transaction():
            await self.leases.release(JOB, self.owner)
