"""The PostgreSQL pool (``...persistence.pg_pool``): connections are reused without a
round trip, every wait is bounded, and nothing unfit for the next user is handed out
again: a connection left in a transaction, one the server lost, one opened before the
pool was renewed. Against the real server; the whole suite runs on it too."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest

from ordnung.core.persistence.pg_pool import LeanPool

pytestmark = pytest.mark.usefixtures("postgres_only")


@pytest.fixture
def postgres_only(database_url: str) -> None:
    if not database_url.startswith("postgres"):
        pytest.skip("the pool is PostgreSQL's")


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[LeanPool]:
    made = LeanPool(database_url, min_size=1, max_size=2, connect_timeout=5.0,
                    acquire_timeout=0.5, command_timeout=5.0)
    await made.start()
    yield made
    await made.close()


async def backend(connection: Any) -> int:
    return int(await connection.fetchval("SELECT pg_backend_pid()"))


async def test_a_connection_given_back_is_the_next_one_handed_out(pool: LeanPool) -> None:
    async with pool.acquire() as connection:
        first = await backend(connection)
    for _ in range(5):
        async with pool.acquire() as connection:
            assert await backend(connection) == first
    assert (pool.get_size(), pool.get_idle_size()) == (1, 1)


async def test_a_full_pool_makes_the_caller_wait_for_a_connection_and_no_longer(
        pool: LeanPool) -> None:
    one, two = await pool.acquire(), await pool.acquire()
    with pytest.raises(TimeoutError):  # the engine answers 503 for it
        await pool.acquire()
    waiting = asyncio.create_task(pool._acquire(5.0))
    await asyncio.sleep(0.05)
    pool.give_back(one)
    handed = await waiting
    assert handed is one and pool.get_size() == 2
    pool.give_back(handed)
    pool.give_back(two)
    assert pool.get_idle_size() == 2


async def test_a_connection_left_in_a_transaction_never_serves_again(pool: LeanPool) -> None:
    async with pool.acquire() as connection:
        await connection.execute("CREATE TABLE pool_probe (n int)")
    async with pool.acquire() as connection:
        left = await backend(connection)
        await connection.execute("BEGIN")
        await connection.execute("INSERT INTO pool_probe VALUES (1)")
    async with pool.acquire() as connection:
        assert connection.is_in_transaction() is False
        assert await backend(connection) != left
        assert await connection.fetchval("SELECT count(*) FROM pool_probe") == 0
        await connection.execute("DROP TABLE pool_probe")


async def test_a_lost_connection_frees_its_place_for_a_waiting_caller(pool: LeanPool) -> None:
    one, two = await pool.acquire(), await pool.acquire()
    lost = await backend(one)
    waiting = asyncio.create_task(pool._acquire(5.0))
    await asyncio.sleep(0.05)
    one.terminate()  # as the engine does with a connection that timed out
    pool.give_back(one)
    fresh = await waiting
    assert await backend(fresh) != lost and pool.get_size() == 2
    pool.give_back(fresh)
    pool.give_back(two)


async def test_after_a_renewal_no_connection_opened_before_it_is_used(pool: LeanPool) -> None:
    held = await pool.acquire()
    before = {await backend(held)}
    async with pool.acquire() as connection:
        before.add(await backend(connection))
    await pool.expire_connections()  # a connection was found dead
    pool.give_back(held)  # in use during the renewal: closed as it comes back
    assert held.is_closed()
    async with pool.acquire() as connection:
        assert await backend(connection) not in before


async def test_it_opens_its_minimum_and_closes_what_sat_idle_too_long(
        database_url: str) -> None:
    made = LeanPool(database_url, min_size=2, max_size=2, connect_timeout=5.0,
                    acquire_timeout=0.5, command_timeout=5.0, max_idle_s=0.05)
    await made.start()
    try:
        assert (made.get_size(), made.get_idle_size()) == (2, 2)
        old = await made.acquire()
        pid = await backend(old)
        made.give_back(old)
        await asyncio.sleep(0.1)
        async with made.acquire() as connection:  # both idle ones are too old: a new one
            assert await backend(connection) != pid
        for _ in range(50):
            if old.is_closed():
                break
            await asyncio.sleep(0.01)
        assert old.is_closed() and made.get_size() == 1
    finally:
        await made.close()


async def test_under_contention_the_pool_never_exceeds_its_size_nor_loses_a_place(
        database_url: str) -> None:
    """Forty callers on three connections, some giving up waiting, some losing their
    connection: every one that got a connection ran its statement, at most three were
    ever open, and afterwards every place is free again."""
    made = LeanPool(database_url, min_size=1, max_size=3, connect_timeout=5.0,
                    acquire_timeout=0.2, command_timeout=5.0)
    await made.start()
    rng = random.Random(7)
    most = 0
    served = timed_out = 0

    async def caller() -> None:
        nonlocal most, served, timed_out
        try:
            async with made.acquire(timeout=rng.choice([0.01, 0.2, 2.0])) as connection:
                most = max(most, made.get_size())
                assert await connection.fetchval("SELECT 1") == 1
                await asyncio.sleep(rng.random() / 50)
                if rng.random() < 0.2:
                    connection.terminate()
                served += 1
        except TimeoutError:
            timed_out += 1

    try:
        await asyncio.gather(*(caller() for _ in range(40)))
        assert served + timed_out == 40 and served >= 3
        assert most <= 3
        assert made.get_size() == made.get_idle_size() <= 3
        connections = [await made.acquire() for _ in range(3)]  # every place usable
        for connection in connections:
            assert await connection.fetchval("SELECT 1") == 1
            made.give_back(connection)
    finally:
        await made.close()
