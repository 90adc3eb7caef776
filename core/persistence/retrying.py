"""Running a unit of work again when PostgreSQL aborted its transaction for another.

Two transactions that lock rows in opposite orders deadlock, and PostgreSQL aborts one
of them (``40P01``); a stricter isolation aborts one that read what another changed
(``40001``). The stock code keeps one lock order, but a client outside it (an operator's
SQL session, a plugin's store, a rare fallback) can still close a circle. The aborted
transaction kept nothing, so the same work run again succeeds; the victim's request
must not fail for it.

Only the whole unit of work can be run again, from where its transaction is opened, and
only by the outermost one: a block that joined an enclosing transaction re-raises, and
the enclosing unit decides. Each try must start over from fresh reads: an object the
failed try changed in memory is thrown away, never reused; side effects outside the
database (a gateway call, an e-mail) belong before or after the transaction, never in
the unit, so that a try that lost does not repeat them. Once the database's
``transaction_tries`` (``TRIES`` unless configured) tries lost, ``TransientConflict``
goes to the caller (the API answers 409 ``conflict`` with
``Retry-After``).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import structlog

from ordnung.core.errors_db import TransientConflict

if TYPE_CHECKING:  # the database takes its default number of tries from here
    from ordnung.core.persistence.database import Database

log = structlog.get_logger("ordnung.db")

T = TypeVar("T")

#: tries of one unit of work before ``TransientConflict`` reaches the caller, unless
#: the database was given another number (``EngineConfig.transaction_tries``,
#: ``ORDNUNG_TRANSACTION_TRIES``): ``Database.transaction_tries`` is what counts
TRIES = 4
#: the first pause between tries (seconds), doubled for each further one, up to
#: ``MAX_PAUSE_S``; each is drawn between half of it and all of it, so that the two
#: transactions that collided do not meet again at the same moment
FIRST_PAUSE_S = 0.02
MAX_PAUSE_S = 0.3

#: called with the SQLSTATE of each try that is run again (the metrics' counter)
OnRetry = Callable[[str], None]


def pause_s(lost: int) -> float:
    """How long to wait after the ``lost``-th lost try."""
    ceiling = min(MAX_PAUSE_S, FIRST_PAUSE_S * 2 ** (lost - 1))
    return random.uniform(ceiling / 2, ceiling)


async def again(db: Database, exc: TransientConflict, lost: int,
                on_retry: OnRetry | None = None) -> None:
    """After the ``lost``-th try of a unit of work lost to a concurrent transaction:
    wait, then return so that the caller runs the unit again; or raise ``exc`` when the
    tries are spent, or when the unit ran inside an enclosing transaction (aborted with
    it: only its outermost unit can run again)."""
    if db.in_transaction() is not None:
        raise exc
    tries = db.transaction_tries
    if lost >= tries:
        log.warning("transaction aborted by the database on every try; giving up",
                    sqlstate=exc.sqlstate, tries=lost)
        raise exc
    pause = pause_s(lost)
    log.warning("transaction aborted by the database to resolve a conflict; running it again",
                sqlstate=exc.sqlstate, attempt=lost + 1, tries=tries,
                pause_ms=round(pause * 1000, 1))
    if on_retry is not None:
        on_retry(exc.sqlstate)
    await asyncio.sleep(pause)


async def in_transaction(db: Database, unit: Callable[[], Awaitable[T]], *,
                         on_retry: OnRetry | None = None) -> T:
    """``await unit()`` in one transaction; run again, in a new transaction, when the
    database aborted it for a concurrent one. ``unit`` must read afresh what it changes
    (nothing it built in memory outlives a try) and have no effect outside the database."""
    lost = 0
    while True:
        try:
            async with db.transaction():
                return await unit()
        except TransientConflict as exc:
            lost += 1
            await again(db, exc, lost, on_retry)
