"""Generations: shared counters that let a worker keep what it read and still never
serve it stale.

Two things are read on nearly every request and change rarely: the caller's credential
(an API key, a customer token, a signed-in session) and the catalogue's variants. Each
has a counter in the ``generations`` table, raised in the *same transaction* as every
write that could make a kept copy wrong: ``access`` by revoking a key or a session,
rotating a session's tokens, changing a key's scopes or erasing a customer;
``catalog`` by any write to a variant. A worker keeps a copy together with the
generation it was read at, and uses the copy only in a request that has seen the same
generation.

A request learns the current generations without a statement of its own: a statement
it runs anyway (the write's rate-limit count, an Idempotency-Key claim, the credential
look-up on a miss, the read of the cart it works on, the save of a kept cart) returns
them beside its own columns (``OBSERVED_COLUMNS``), and ``observe`` records them for the
rest of the request.

A kept credential must be confirmed against them before the request changes anything
and before its answer goes out. When no statement has brought them by the time the
route runs, the confirmation waits at a *gate* (``Observed.gate``): ``Database.run``
passes it before the request's first write, and the HTTP layer before the first byte
of the answer (a write inside a transaction that brings the generations back itself,
such as a placement's stock reservation, passes it just after: a refusal rolls the
transaction back). Usually a statement the route makes anyway (its cart's read, its
stock reservation) has brought the generations by then and the gate costs nothing;
else it asks for them in one statement of its own, in place of the look-up it saves.
While a gate is set, kept variants may be used before their generation is known
(``Observed.assume_catalog``): the gate checks that too, and the route runs again if
they were stale. So a revocation that has committed is seen by the next request on
every worker, as before the copies were kept: nothing is written for it and nothing
answered to it; a worker never trusts a clock or a time to live.

A missing row counts as generation 0 (tests empty every table between runs; the first
raise inserts the row).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ordnung.core.persistence.database import Database

ACCESS = "access"
CATALOG = "catalog"



def column(name: str) -> str:
    """The generation ``name`` as a column (``<name>_generation``) a statement may add
    to what it returns."""
    return f"(SELECT value FROM generations WHERE name = '{name}') AS {name}_generation"


#: columns any statement may add to what it returns, so the request sees the
#: generations as of that statement
OBSERVED_COLUMNS = f"{column(ACCESS)}, {column(CATALOG)}"
#: in a statement that brings the generations back
CARRIED = f"AS {ACCESS}_generation"
_READ = f"SELECT {OBSERVED_COLUMNS}"
_RAISE = ("INSERT INTO generations (name, value) VALUES ({}, 1) "
          "ON CONFLICT (name) DO UPDATE SET value = generations.value + 1")


class Observed:
    """The generations one request has seen (None: not yet), and the credential it
    still has to confirm against them. Closed when the request's answer has gone: a
    task the request started carries this object in its context, and must not go on
    trusting the generations the request saw (``current``)."""

    __slots__ = ("_passing", "access", "assumed", "catalog", "gate", "open", "pending")

    def __init__(self) -> None:
        self.access: int | None = None
        self.catalog: int | None = None
        #: (token hash, the access generation its kept copy was read at), until confirmed
        self.pending: tuple[str, int] | None = None
        #: what must run before the request's first write and its answer (the kept
        #: credential's confirmation, deferred until a statement brings the generations)
        self.gate: Callable[[], Awaitable[None]] | None = None
        #: the catalog generation kept variants were used at before the request had seen
        #: one (``assume_catalog``); the gate checks it
        self.assumed: int | None = None
        self._passing: asyncio.Lock | None = None
        self.open = True

    def assume_catalog(self, generation: int) -> bool:
        """Use variants kept at ``generation`` before the request has seen the catalog's,
        to be checked at the gate (``stale``). Only while a gate is set (someone will
        check before anything is written or answered), and at one generation a request."""
        if self.gate is None or self.catalog is not None:
            return False
        if self.assumed is None:
            self.assumed = generation
        return self.assumed == generation

    def stale(self) -> bool:
        """The request used kept variants at a catalog generation it now knows is gone."""
        return self.assumed is not None and self.catalog is not None \
            and self.catalog != self.assumed

    async def through_gate(self) -> None:
        """Run the gate, once for the request even if tasks it started write at the same
        time: nobody passes before it has passed. A gate that raised stays shut (it
        raises again for every later write)."""
        if self.gate is None:
            return
        if self._passing is None:
            self._passing = asyncio.Lock()
        async with self._passing:
            gate = self.gate
            if gate is not None:
                await gate()
                self.gate = None

    @contextmanager
    def serving(self) -> Iterator[Observed]:
        """The generations of the request served inside the block (``OBSERVED``), closed
        once it is over."""
        token = OBSERVED.set(self)
        try:
            yield self
        finally:
            self.open = False
            OBSERVED.reset(token)


#: the generations seen by the request this task serves; None outside a request (then
#: nothing kept is used: every read goes to the database)
OBSERVED: ContextVar[Observed | None] = ContextVar("ordnung_observed_generations",
                                                   default=None)


def current() -> Observed | None:
    """What the request this task serves has seen, while it is being served; None
    outside a request, and in work that outlives its request."""
    seen = OBSERVED.get()
    return seen if seen is not None and seen.open else None


def observe(row: Any) -> None:
    """Record the generations in ``row`` (a mapping with ``OBSERVED_COLUMNS``) for the
    request being served, if any."""
    seen = current()
    if seen is not None and row is not None:
        seen.access = int(row["access_generation"] or 0)
        seen.catalog = int(row["catalog_generation"] or 0)


def generation(row: Any, name: str) -> int:
    """The generation ``name`` in ``row`` (a mapping with ``OBSERVED_COLUMNS``)."""
    return int(row[f"{name}_generation"] or 0)


def _still(name: str) -> str:
    return f" AND COALESCE((SELECT value FROM generations WHERE name = '{name}'), 0) = {{}}"


def write_guards() -> tuple[str, list[int]]:
    """Conditions (``" AND ..."``) and their values for a write that the request runs
    before its gate (``Database.run_confirmed``): the write matches nothing unless the
    generations are still those the request's kept credential and kept variants were
    read at, so it writes only what the gate would let through. Empty where nothing
    kept waits to be confirmed."""
    seen = current()
    if seen is None or seen.gate is None:
        return "", []
    sql, values = "", []
    if seen.pending is not None and seen.access is None:
        sql, values = _still(ACCESS), [seen.pending[1]]
    if seen.assumed is not None and seen.catalog is None:
        sql, values = sql + _still(CATALOG), [*values, seen.assumed]
    return sql, values


async def read(db: Database) -> None:
    """Record the current generations for the request, read in a statement of their own
    (for a request that ran no statement that brings them back)."""
    observe((await db.run(_READ))[0])


async def raise_generation(db: Database, name: str) -> None:
    """Raise ``name`` by one; call inside the transaction of the write it stands for, so
    that both commit or neither does."""
    await db.run(_RAISE, name)
