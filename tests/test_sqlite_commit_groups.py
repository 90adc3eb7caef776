"""SQLite's commit groups: the write transactions of one process that queue behind one
another commit together, and each is still all-or-nothing on its own.

A placement's ``COMMIT`` cost more than its statements (SQLite writes every page the
transaction changed to its log, about twenty for a placement), so writers that finish
while others queue leave the commit to the last of them (``sqlite_engine.CommitGroup``).
What must not change: a writer returns only once its work is committed; one that fails
takes back only its own work; a group SQLite itself rolled back (a full disk) fails
every member of it; a queued writer that gives up never leaves a group uncommitted.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from ordnung.core.persistence.database import Database
from ordnung.core.persistence.sqlite_engine import GROUP_MAX, PooledSQLiteEngine
from tests.conftest import TEST_DB

pytestmark = pytest.mark.skipif(TEST_DB == "postgres",
                                reason="SQLite's engine: one writer per database")


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'groups.db'}")
    await database.start()
    await database.run("CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
    try:
        yield database
    finally:
        await database.stop()


def engine_of(db: Database) -> PooledSQLiteEngine:
    assert isinstance(db.engine, PooledSQLiteEngine)
    return db.engine


def committed(db: Database) -> set[int]:
    """The ids another connection sees: only what is committed."""
    path = db.url.removeprefix("sqlite:///")
    with sqlite3.connect(path) as outside:
        return {row[0] for row in outside.execute("SELECT id FROM notes")}


async def write(db: Database, note: int, *, fail: bool = False) -> None:
    async with db.transaction():
        await db.run("INSERT INTO notes (id, body) VALUES ({}, {})", note, f"note {note}")
        await asyncio.sleep(0)  # other writers queue meanwhile
        await db.run("UPDATE notes SET body = body || '!' WHERE id = {}", note)
        if fail:
            raise RuntimeError(f"note {note} refused")
    # a writer hears nothing before its work is committed
    assert note in committed(db)


async def holding(db: Database, note: int, inside: asyncio.Event) -> None:
    """Write ``note`` and keep the transaction open a while: writers queue behind it."""
    async with db.transaction():
        await db.run("INSERT INTO notes (id, body) VALUES ({}, {})", note, "first")
        inside.set()
        await asyncio.sleep(0.05)


async def test_queued_writers_commit_together_and_each_returns_after_its_commit(
        db: Database) -> None:
    engine = engine_of(db)
    groups = engine.groups_committed
    await asyncio.gather(*(write(db, n) for n in range(40)))
    assert committed(db) == set(range(40))
    assert engine.members_committed >= 40
    # forty writers that queued behind one another took far fewer commits
    assert engine.groups_committed - groups <= 40 // 2
    assert engine.groups_committed - groups >= 40 // GROUP_MAX
    rows = await db.fetch("SELECT body FROM notes WHERE id = {}", 7)
    assert rows == [{"body": "note 7!"}]


async def test_a_failing_writer_takes_back_only_its_own_work(db: Database) -> None:
    outcomes = await asyncio.gather(*(write(db, n, fail=n % 3 == 0) for n in range(30)),
                                    return_exceptions=True)
    failed = {n for n, outcome in enumerate(outcomes) if isinstance(outcome, RuntimeError)}
    assert failed == {n for n in range(30) if n % 3 == 0}
    assert all(outcome is None for n, outcome in enumerate(outcomes) if n not in failed)
    assert committed(db) == set(range(30)) - failed
    # the writers after them start from a clean state
    await write(db, 100)
    assert 100 in committed(db)


async def test_a_failing_writer_acts_on_what_it_read_only_once_that_is_committed(
        db: Database) -> None:
    """Found by the suite: a duplicate placement read, inside its transaction, the key
    record of the placement just before it in the group, gave up (``Replayed``), and
    looked the order up before the group had committed it: not found. A writer that
    fails returns once the group is committed, like one that succeeds."""
    inside = asyncio.Event()

    async def duplicate() -> set[int]:
        await inside.wait()
        try:
            async with db.transaction():
                if await db.fetch("SELECT id FROM notes WHERE id = {}", 1):
                    raise LookupError("the first one made it")
        except LookupError:
            return committed(db)  # where the duplicate looks it up
        raise AssertionError("the duplicate saw nothing")

    _, seen = await asyncio.gather(holding(db, 1, inside), duplicate())
    assert seen == {1}


async def test_a_group_sqlite_rolled_back_fails_every_member_in_it(db: Database) -> None:
    """SQLite rolls a whole transaction back on some errors (a full disk, an I/O error):
    the members that had finished in the group lose their work too and must hear so."""
    inside = asyncio.Event()

    async def second() -> None:
        await inside.wait()
        async with db.transaction() as transaction:
            await db.run("INSERT INTO notes (id, body) VALUES ({}, {})", 2, "second")
            transaction.connection.run("ROLLBACK")  # what SQLite does on a full disk
            raise sqlite3.OperationalError("database or disk is full")

    outcomes = await asyncio.gather(holding(db, 1, inside), second(),
                                    return_exceptions=True)
    assert all(isinstance(outcome, sqlite3.OperationalError) for outcome in outcomes), outcomes
    assert "disk is full" in str(outcomes[0])  # the first hears why: the API answers 507
    assert committed(db) == set()
    await write(db, 3)  # and the next writer starts a fresh group
    assert committed(db) == {3}


async def test_a_queued_writer_that_gives_up_leaves_no_group_uncommitted(
        db: Database) -> None:
    """The first writer leaves the commit to the one queued behind it, which is then
    cancelled (its client went away) before it ever runs: the group still commits."""
    inside, let_go = asyncio.Event(), asyncio.Event()

    async def first() -> None:
        async with db.transaction():
            await db.run("INSERT INTO notes (id, body) VALUES ({}, {})", 1, "first")
            inside.set()
            await let_go.wait()

    first_task = asyncio.create_task(first())
    await inside.wait()
    queued = asyncio.create_task(write(db, 2))
    await asyncio.sleep(0.01)  # queued on the write lock
    let_go.set()
    queued.cancel()
    await asyncio.wait_for(first_task, timeout=5)
    with pytest.raises(asyncio.CancelledError):
        await queued
    assert committed(db) == {1}
    await write(db, 3)
    assert committed(db) == {1, 3}


async def test_autocommit_writes_join_the_group_and_commit_before_they_return(
        db: Database) -> None:
    async def alone(note: int) -> None:
        await db.run("INSERT INTO notes (id, body) VALUES ({}, {})", note, "alone")
        assert note in committed(db)

    await asyncio.gather(*(write(db, n) for n in range(10)),
                         *(alone(n) for n in range(10, 20)))
    assert committed(db) == set(range(20))
    with pytest.raises(sqlite3.IntegrityError):  # a failing one changes nothing else
        await asyncio.gather(alone(20), alone(5), write(db, 21))
    await asyncio.sleep(0.05)
    assert committed(db) == set(range(20)) | {20, 21}
