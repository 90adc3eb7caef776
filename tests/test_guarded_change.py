"""A change of an order its caller already holds is one statement on PostgreSQL.

The payment's authorization right after a placement changes the order the placement
just wrote, without reading it again: the order's save is guarded by its version, and
its events, references and ledger rows go with it in one statement. That statement
refuses itself whole when the guard matches nothing, so on PostgreSQL it runs without
``BEGIN`` and ``COMMIT`` (two round trips of a placement's seven). These tests pin that
the authorization sends no ``BEGIN``, and that a change made on a stale copy writes
nothing at all (none of its events) and runs again on the order as stored, and that
the statement run on its own still outlives a pooled connection the server had ended.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import asyncpg
import pytest

from ordnung.core import Engine
from ordnung.core.persistence.postgres_transaction import SafePostgresTransaction
from ordnung.core.runtime import OrderChange
from tests.support import order_request


async def test_a_placements_authorization_begins_no_transaction(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    if not engine.db.is_postgres:
        pytest.skip("SQLite's BEGIN and COMMIT cost no round trip")
    begins: list[int] = []
    begin = SafePostgresTransaction.begin

    async def counted(self: SafePostgresTransaction) -> None:
        begins.append(1)
        await begin(self)

    monkeypatch.setattr(SafePostgresTransaction, "begin", counted)
    order = await engine.orders.place(order_request(("SHIRT-M", 1), ("MUG", 1)))
    assert order.status == "processing" and order.payments[-1].status == "authorized"
    assert len(begins) == 1  # the placement's; the authorization ran on its own
    kinds = [ev.kind for ev in await engine.orders.timeline(order.id)]
    assert kinds.count("payment.authorized") == 1


async def test_a_change_on_a_stale_copy_writes_nothing_and_runs_again(engine: Engine) -> None:
    placed = await engine.orders.place(order_request(("SHIRT-M", 1), token=None,
                                                     gateway="manual",
                                                     method="bank_transfer"))
    copies: list[int] = []

    async def note(change: OrderChange) -> None:
        copies.append(change.order.version)
        change.emit("order.noted", data={"attempt": len(copies)})

    # another change after the caller's copy was taken: the copy's version is stale
    _, fresher = await engine.runtime.change_order(placed.id, "staff:a", note)
    copies.clear()
    _, order = await engine.runtime.change_order(placed.id, "staff:b", note, known=placed)

    assert copies == [placed.version, fresher.version]  # the stale copy, then as stored
    events: list[Any] = await engine.orders.timeline(placed.id)
    noted = [ev for ev in events if ev.kind == "order.noted"]
    assert [(ev.actor, ev.data["attempt"]) for ev in noted] == [("staff:a", 1),
                                                                ("staff:b", 2)]
    assert [ev.seq for ev in events] == list(range(1, len(events) + 1))
    assert order.version == fresher.version + 1
    assert (await engine.orders.get(placed.id)).version == order.version


async def test_a_change_run_on_its_own_survives_a_dead_pooled_connection(
        engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ``BEGIN``, no failed ``BEGIN`` finds a dead connection first: the one
    statement itself does, and it runs once more on a fresh connection (it refuses
    itself if the first attempt was applied), as a transaction begins once more."""
    if not engine.db.is_postgres:
        pytest.skip("SQLite has no pooled connections to lose")
    url = engine.db.url

    def end_every_other_session() -> None:
        # run to completion while the engine's loop is blocked, so that the engine
        # learns of the ended sessions only when it uses their connections
        async def end() -> None:
            connection = await asyncpg.connect(url)
            try:
                ended = await connection.fetch(
                    "SELECT pg_terminate_backend(pid, 5000) AS ended FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()")
                assert ended and all(row["ended"] for row in ended)
            finally:
                await connection.close()

        worker = threading.Thread(target=asyncio.run, args=(end(),))
        worker.start()
        worker.join()

    record = engine.payments.record_authorization

    async def after_the_sessions_ended(*args: Any, **kwargs: Any) -> Any:
        end_every_other_session()
        return await record(*args, **kwargs)

    monkeypatch.setattr(engine.payments, "record_authorization", after_the_sessions_ended)
    order = await engine.orders.place(order_request(("SHIRT-M", 1)))
    assert order.payments[-1].status == "authorized"
    stored = await engine.orders.get(order.id)
    assert stored.payments[-1].status == "authorized" and stored.version == order.version
    kinds = [ev.kind for ev in await engine.orders.timeline(order.id)]
    assert kinds.count("payment.authorized") == 1
