"""Write limits counted in shares: most writes without a statement, never over the limit.

Apps on one database stand for the workers of one server; each holds its own shares
(``ordnung.api.rate_shares``). Whatever way the writes fall on the workers, a caller
gets at most its limit, and loses at most a share per worker to writes a worker took
and was not sent.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from datetime import datetime
from typing import Any

import pytest

from ordnung.api.rate_limits import WriteLimits
from ordnung.api.rate_shares import MAX_SHARE, Share, share_size
from ordnung.core.domain.common import utcnow
from ordnung.core.persistence.rate_limits import DatabaseStorage
from tests.api_support import Api, api_client, bearer


def per_key(rate: str) -> WriteLimits:
    return WriteLimits(writes="off", writes_per_key=rate, writes_per_address="off")


@asynccontextmanager
async def workers(database_url: str, count: int, rate: str) -> AsyncIterator[list[Api]]:
    """``count`` apps with their own engines (and shares) on one seeded database."""
    async with AsyncExitStack() as stack:
        apps = [await stack.enter_async_context(api_client(
            database_url, seed=n == 0, rate_limits=per_key(rate))) for n in range(count)]
        yield apps


async def write(api: Api, headers: dict[str, str]) -> int:
    """A write the limits count (a customer that is not there: 404), its status."""
    response = await api.client.delete("/customers/cus_missing", headers=headers)
    assert response.status_code in (404, 429), response.text
    return response.status_code


async def shared_hits(api: Api) -> int:
    rows = await api.engine.db.fetch("SELECT hits FROM rate_limits")
    return sum(int(r["hits"]) for r in rows)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_however_writes_fall_on_the_workers_a_key_gets_at_most_its_limit(
        database_url: str, seed: int) -> None:
    rng = random.Random(seed)
    limit, count = rng.choice([32, 48, 100, 160]), rng.choice([2, 3])
    async with workers(database_url, count, f"{limit}/minute") as apps:
        headers = bearer((await apps[0].issue_key("admin", scopes=["customers"]))["secret"])
        statuses: list[int] = []
        for _ in range(limit + 40):
            api = rng.choice(apps) if rng.random() < 0.7 else apps[0]
            statuses.append(await write(api, headers))
            # the shared count never says less than the workers have let through
            assert await shared_hits(apps[0]) >= statuses.count(404)
        allowed = statuses.count(404)
        share = share_size(per_key(f"{limit}/minute").item("writes_per_key"), None, 0)
        assert limit - count * (share - 1) <= allowed <= limit, (limit, count, allowed)
        # once the shared count is over, every worker refuses
        assert statuses[-count * share:] == [429] * (count * share)


async def test_a_worker_counts_most_writes_without_a_statement(database_url: str) -> None:
    async with workers(database_url, 1, "120/minute") as (api,):
        headers = bearer((await api.issue_key("admin", scopes=["customers"]))["secret"])
        before = await shared_hits(api)  # the admin key's own (issuing the key above)
        counting: list[str] = []
        original = api.engine.db.run

        async def noted(sql: str, *args: Any) -> list[Any]:
            if "rate_limits" in sql:
                counting.append(sql)
            return await original(sql, *args)

        api.engine.db.run = noted  # type: ignore[method-assign]
        try:
            statuses = [await write(api, headers) for _ in range(21)]
        finally:
            api.engine.db.run = original  # type: ignore[method-assign]
        assert statuses == [404] * 21
        assert len(counting) == 3  # shares of 7 (a sixteenth of 120)
        assert await shared_hits(api) - before == 21


async def test_a_share_ends_with_its_window(database_url: str) -> None:
    async with workers(database_url, 2, "64/second") as apps:
        headers = bearer((await apps[0].issue_key("admin", scopes=["customers"]))["secret"])
        statuses = [await write(apps[n % 2], headers) for n in range(80)]
        assert 58 <= statuses.count(404) <= 64 and statuses[-8:] == [429] * 8
        rows = await apps[0].engine.db.fetch("SELECT expires_at FROM rate_limits")
        ends: datetime = rows[0]["expires_at"]
        await asyncio.sleep(max(0.0, (ends - utcnow()).total_seconds()) + 0.05)
        assert [await write(apps[n % 2], headers) for n in range(4)] == [404] * 4


def test_shares_are_a_sixteenth_of_the_limit_and_shrink_near_it() -> None:
    item = per_key("120/minute").item("writes_per_key")
    assert item is not None
    assert share_size(item, None, 0) == 7
    small = per_key("31/minute").item("writes_per_key")
    assert small is not None and share_size(small, None, 0) == 1  # counted exactly
    large = per_key("60000/minute").item("writes_per_key")
    assert large is not None and share_size(large, None, 0) == MAX_SHARE
    # within a window, a quarter of what the shared count left free, at least one
    assert share_size(item, Share(0, until=100.0, hits=110), now=50.0) == 2
    assert share_size(item, Share(0, until=100.0, hits=119), now=50.0) == 1
    assert share_size(item, Share(0, until=100.0, hits=119), now=100.0) == 7  # a new window


async def test_concurrent_writes_on_one_worker_spend_one_share_between_them(
        database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Writes that reach a worker together while it has no share left wait for the one
    share being taken: had each taken its own, 64 concurrent writes would count 64
    shares (1,280 writes) against a caller allowed 320, and most would be refused."""
    taking = DatabaseStorage.incr_many

    async def a_moment_away(self: DatabaseStorage, hits: Any) -> Any:
        # the count is a round trip away, as on a busy server (SQLite's is not, here)
        await asyncio.sleep(0.02)
        return await taking(self, hits)

    monkeypatch.setattr(DatabaseStorage, "incr_many", a_moment_away)
    async with workers(database_url, 1, "320/minute") as (api,):
        headers = bearer((await api.issue_key("admin", scopes=["customers"]))["secret"])
        before = await shared_hits(api)
        share = share_size(per_key("320/minute").item("writes_per_key"), None, 0)
        for _ in range(3):  # each wave spends the share left and takes more
            statuses = await asyncio.gather(*(write(api, headers) for _ in range(64)))
            assert statuses == [404] * 64
        counted = await shared_hits(api) - before
        assert 3 * 64 <= counted <= 3 * 64 + share, counted
