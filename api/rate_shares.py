"""Shares of a write limit: a worker counts most writes without a statement.

The write limits are counted in the database so that every worker of a shop shares
them (``ordnung.api.rate_limits``). Raising a shared count on every write costs a
statement per write, and on the busiest counts (an admin key, a storefront's server
address) every write of every worker updates the same row.

So a worker that raises a count takes a *share* of the limit: it raises the shared
count by several writes at once and then spends them itself, one per write, until
they are gone or the window is over. The shared count never says less than the
workers have let through, so a caller never gets more than its limit, however its
writes fall on the workers. What a share can cost is the other way round: writes a
worker took and had not spent when the window ended are lost to the caller.

A share is a sixteenth of the limit, at most ``MAX_SHARE`` writes, and it shrinks as the
shared count nears the limit, down to a single write. So a limit of up to 31 writes a
window is counted exactly, one statement per write, as before; a larger one loses at
most a sixteenth of the limit per worker and window, and only to a caller that stops
writing to that worker before it has spent its share.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from limits import RateLimitItem

from ordnung.core.persistence.rate_limits import DatabaseStorage, Hit

#: the most writes one share holds
MAX_SHARE = 100
#: the most counts a worker holds shares of (the oldest are forgotten first)
SHARES_MAX = 10_000


class Share:
    """The writes a worker may still let through against one count in its window."""

    __slots__ = ("hits", "left", "until")

    def __init__(self, left: int, until: float, hits: int) -> None:
        self.left = left
        #: when the window ends (epoch seconds)
        self.until = until
        #: the shared count just after this share was taken
        self.hits = hits


def share_size(item: RateLimitItem, spent: Share | None, now: float) -> int:
    """How many writes to take: a sixteenth of the limit, and within a window a quarter
    of what the shared count left free when the last share was taken."""
    base = max(1, min(MAX_SHARE, item.amount // 16))
    if spent is None or spent.until <= now:
        return base
    return max(1, min(base, (item.amount - spent.hits) // 4))


class Shares:
    """The shares this worker holds, by count key."""

    def __init__(self) -> None:
        self._held: dict[str, Share] = {}
        #: the counts a share is being taken of, and what the writes waiting for it await
        self._taking: dict[str, asyncio.Event] = {}

    async def count(self, storage: DatabaseStorage,
                    counted: Sequence[tuple[RateLimitItem, str, str]]
                    ) -> tuple[RateLimitItem, str, float] | None:
        """Count one write against each of ``counted`` ((limit, namespace, identifier));
        the first limit that refuses it, with the seconds until its window ends, or None.
        A refused write counts against every one of its counts, as one let through.

        A write that finds its worker taking a share of one of its counts waits for that
        share and spends from it: concurrent writes that each took a share of their own
        would count many shares against the caller for a few writes (and each share
        taken would replace the last), refusing a busy caller far below its limit."""
        spent: set[str] = set()
        while True:
            now = time.time()
            takes: list[tuple[str, RateLimitItem, str, int]] = []
            waits: list[asyncio.Event] = []
            for item, namespace, identifier in counted:
                key = item.key_for(namespace, identifier)
                if key in spent:
                    continue
                held = self._held.get(key)
                if held is not None and held.until > now and held.left > 0:
                    held.left -= 1  # spent at once: a concurrent write cannot spend it too
                    spent.add(key)
                elif (taking := self._taking.get(key)) is not None:
                    waits.append(taking)
                else:
                    takes.append((key, item, namespace, share_size(item, held, now)))
            if not waits:
                break
            for taking in waits:
                await taking.wait()
        if not takes:
            return None
        for key, *_ in takes:
            self._taking[key] = asyncio.Event()
        try:
            counts = await storage.incr_many([Hit(key, item.get_expiry(), amount)
                                              for key, item, _, amount in takes])
            refused: tuple[RateLimitItem, str, float] | None = None
            for key, item, namespace, amount in takes:
                count = counts[key]
                until = count.expires_at.timestamp()
                granted = min(amount, item.amount - (count.hits - amount))
                if granted <= 0:
                    self._held.pop(key, None)
                    if refused is None:
                        refused = (item, namespace, until - now)
                    continue
                self._keep(key, Share(granted - 1, until, count.hits), now)
            return refused
        finally:  # the writes waiting for these shares spend from them, or take their own
            for key, *_ in takes:
                self._taking.pop(key).set()

    def _keep(self, key: str, share: Share, now: float) -> None:
        held = self._held
        held.pop(key, None)
        if len(held) >= SHARES_MAX:
            for stale in [k for k, s in held.items() if s.until <= now]:
                del held[stale]
            while len(held) >= SHARES_MAX:
                del held[next(iter(held))]
        held[key] = share
