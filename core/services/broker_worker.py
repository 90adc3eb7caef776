"""The broker worker: from the outbox to event brokers (NATS and the like), at least once.

Publishing used to be an after-commit reaction, so a slow or unreachable broker held up
the request that made the change. Now every event gets an outbox row with
``broker_at`` NULL when a publisher plugin is installed (written in the change's own
transaction, no extra statement), and this worker, in every server process under a
lease on the database's clock so that one works at a time, publishes them in outbox
order, batch by batch. A batch is marked published only once every publisher has
confirmed it; a failure keeps it and the worker waits with exponential backoff and
jitter before trying again. A batch published but not marked (the process died) is
published again with the same event ids, which the broker drops as duplicates.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Sequence
from typing import Any

import structlog

from ordnung.core.domain.common import new_id
from ordnung.core.domain.events import Event
from ordnung.core.persistence.codec import decode
from ordnung.core.persistence.leases import JobLeases
from ordnung.core.persistence.outbox import OutboxStore

log = structlog.get_logger("ordnung.broker")

JOB = "broker"
#: events published per batch
BATCH = 200


class BrokerWorker:
    def __init__(self, outbox: OutboxStore, publishers: Sequence[tuple[str, Any]], *,
                 interval_s: float, timeout_s: float, backoff_base_s: float,
                 backoff_max_s: float) -> None:
        self.outbox = outbox
        self.db = outbox.db
        self.publishers = list(publishers)
        self.interval_s = interval_s
        self.timeout_s = timeout_s
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.leases = JobLeases(outbox.db)
        self.owner = new_id("job")
        #: consecutive failed rounds (drives the backoff)
        self.failures = 0

    @property
    def lease_s(self) -> float:
        """Outlives a round: one batch, each publisher at most its timeout."""
        return 3 * self.interval_s + self.timeout_s * max(1, len(self.publishers)) + 5

    def backoff_s(self) -> float:
        """Exponential in the consecutive failures, capped, with full jitter so that the
        processes of many installations do not retry in step."""
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2 ** min(self.failures, 30))
        return random.uniform(ceiling / 2, ceiling)

    async def run_once(self) -> int:
        """Publish one batch if this process holds the lease; the number published.
        Raises when a publisher failed (the batch stays for the next round)."""
        with self.db.outside_transaction():
            if not await self.leases.take(JOB, self.owner, self.lease_s):
                return 0
            rows = await self.outbox.unpublished(BATCH)
            if not rows:
                return 0
            events = [decode(r["payload"], Event) for r in rows]
            for name, publisher in self.publishers:
                try:
                    await asyncio.wait_for(publisher.publish(events),
                                           self.timeout_s + len(events))
                except Exception as exc:
                    raise PublishFailed(name, exc) from exc
            ids = [r["id"] for r in rows]
            await self.outbox.mark_published(ids)
            return len(ids)

    async def loop(self) -> None:
        while True:
            wait = self.interval_s
            try:
                if await self.run_once() >= BATCH:
                    wait = 0
                self.failures = 0
            except Exception as exc:  # keep the loop alive; retried after the backoff
                self.failures += 1
                wait = self.backoff_s()
                log.warning("publishing events failed", error=repr(exc),
                            retry_in_s=round(wait, 2))
            await asyncio.sleep(wait)

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.leases.release(JOB, self.owner)


class PublishFailed(Exception):
    def __init__(self, plugin: str, error: BaseException) -> None:
        super().__init__(f"{plugin}: {error!r}")
        self.plugin = plugin
