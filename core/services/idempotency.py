"""Idempotency keys for the adapters (REST, GraphQL): one mechanism, owned by the engine.

An adapter hands each keyed write request to ``begin(key, fingerprint)`` and gets
one of four answers:

- ``Proceed``: the caller holds the key (a ``Claim``); run the request inside
  ``claim.running()`` and hand its answer to ``claim.finish``;
- ``Replay``: the key's first request finished; send its stored answer;
- ``Busy``: another attempt holds the key right now; answer 409 with ``Retry-After``;
- ``Mismatch``: the key was used with another request; answer 422.

What is kept follows one rule: **an answer is kept once the request has changed
something.** The engine knows, because every write a claimed request makes first
proves the claim in the same transaction (``ordnung.core.persistence.fence``) and
marks it as having an effect. A request refused before it changed anything —
invalid input, a refused key, out of stock, an internal error, a database blip —
gives its key back at once and can be retried with it. A request that changed
something keeps its answer for every repeat, except a 5xx (the client never learnt
the outcome): the key is then left for the next repeat to take over at once, and
that repeat runs through the engine again, which answers the outcome: a placement
notes its order on the key's record in the statement that proves the claim
(``Claim.outcome``), and the repeat that takes the key over finds it there
(``Claim.earlier_outcome``). An operation without such
a way to finish what an earlier attempt started refuses the repeat
(``IdempotencyInterrupted``) rather than doing it twice.

A claim is held under a lease on the database's clock, renewed while the request
runs: a key whose process died is free again within one lease, and a process
that lost its lease (a long pause) can no longer write under the key.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
import structlog

from ordnung.core.domain.common import new_id
from ordnung.core.errors import Conflict, IdempotencyInterrupted
from ordnung.core.persistence.database import Database
from ordnung.core.persistence.fence import WRITE_FENCE
from ordnung.core.persistence.idempotency import IdempotencyStore

log = structlog.get_logger("ordnung.idempotency")

#: answers that refuse a request for now, not for good: never kept as the key's answer, so
#: the same request with the same key runs once the client may try again (429: a rate
#: limit, whose window ends)
FOR_NOW = frozenset({429})

T = TypeVar("T")

#: attempts (and pauses between them) for the bookkeeping that ends a request: a pooled
#: connection may have died in the blip that failed the request itself
_CLEANUP_PAUSES = (0.05, 0.25, 1.0)
#: what a duplicate is told to wait before trying again: the first attempt usually
#: finishes within milliseconds, and a dead one's lease runs out within a lease
RETRY_AFTER_S = 1


@dataclass(frozen=True)
class StoredAnswer:
    """An answer kept for replay: status, the headers worth repeating, the body."""

    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(frozen=True)
class Proceed:
    claim: Claim


@dataclass(frozen=True)
class Replay:
    answer: StoredAnswer


@dataclass(frozen=True)
class Busy:
    retry_after: int


@dataclass(frozen=True)
class Mismatch:
    pass


Begun = Proceed | Replay | Busy | Mismatch


class Claim:
    """The right to run one request under its key, for as long as the lease is renewed."""

    def __init__(self, service: IdempotencyService, key: str, owner: str,
                 earlier_effect: bool, earlier_outcome: str = "") -> None:
        self.service = service
        #: the key as the caller gave it (scoped to the caller by the adapter)
        self.key = key
        self.record = f"request:{key}"
        self.owner = owner
        #: an earlier attempt under this key committed writes and never answered
        self.earlier_effect = earlier_effect
        #: ... and what those writes made, as it recorded it (a placement's order id)
        self.earlier_outcome = earlier_outcome
        #: what this attempt's first write makes, recorded with the fence in the same
        #: transaction (a placement sets its order id before it writes)
        self.outcome = ""
        #: an engine operation found its own record of that earlier attempt and will
        #: answer its outcome (it may write to finish it)
        self.resolving = False
        #: ... and found that attempt's work still unfinished: the answer is not kept
        self.unsettled = False
        #: this attempt was refused because of that earlier attempt's writes
        self.interrupted = False
        self.effect_committed = False
        self.finished = False
        self._fenced: list[object] = []

    # -- the write fence -------------------------------------------------------------------
    async def before_write(self) -> None:
        if self.finished or self.effect_committed:
            return
        db = self.service.db
        transaction = db.in_transaction()
        if transaction is not None and any(t is transaction for t in self._fenced):
            return
        token = WRITE_FENCE.set(None)
        try:
            effect_by = await self.service.store.fence(self.record, self.owner,
                                                       self.service.lease_s, self.outcome)
        finally:
            WRITE_FENCE.reset(token)
        if effect_by is None:
            raise Conflict("this request's Idempotency-Key was taken over by a repeat after "
                           "its lease ran out; this attempt changed nothing", retry=True)
        if effect_by != self.owner and not self.resolving:
            self.interrupted = True
            raise IdempotencyInterrupted(
                "an earlier request with this Idempotency-Key was cut off after it had "
                "changed something, and its outcome cannot be told; look at the resource "
                "before sending the request again with a new key")
        if transaction is None:
            self.effect_committed = True  # autocommit: the write follows at once
        else:
            self._fenced.append(transaction)

    async def note_outcome(self, outcome: str) -> None:
        """Record what this attempt makes (a placement's order id), in the transaction
        that makes it: with the fence if that is still to come, else by itself (an
        earlier write of this attempt already proved the claim)."""
        self.outcome = outcome
        transaction = self.service.db.in_transaction()
        if self.effect_committed or (transaction is not None
                                     and any(t is transaction for t in self._fenced)):
            token = WRITE_FENCE.set(None)
            try:
                await self.service.store.note_outcome(self.record, self.owner, outcome)
            finally:
                WRITE_FENCE.reset(token)

    def committed(self, transaction: object) -> None:
        if any(t is transaction for t in self._fenced):
            self.effect_committed = True
            self._fenced.clear()

    # -- running ---------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Claim]:
        """Fence the block's writes and renew the lease while it runs; a block that ends
        without ``finish`` (an exception) gives the key back as a 5xx would."""
        renewal = asyncio.create_task(self._renew())
        token = WRITE_FENCE.set(self)
        try:
            yield self
        finally:
            WRITE_FENCE.reset(token)
            renewal.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewal
            if not self.finished:
                await asyncio.shield(self.finish(500, [], b""))

    async def _renew(self) -> None:
        service = self.service
        while True:
            await asyncio.sleep(service.lease_s / 3)
            try:
                with service.db.outside_transaction():
                    held = await service.store.renew(self.record, self.owner, service.lease_s)
            except Exception as exc:  # the fence still stops writes if the lease runs out
                log.warning("renewing an idempotency lease failed", error=type(exc).__name__)
                continue
            if not held:
                log.warning("idempotency lease lost to a repeat", key=self.key)
                return

    async def finish(self, status: int, headers: list[tuple[str, str]], body: bytes) -> bool:
        """End the request: keep its answer if it changed something (and is not a 5xx
        nor a ``FOR_NOW`` refusal), otherwise give the key back. True if the answer was
        kept. Never raises: the answer goes to the client whatever happens to the
        bookkeeping.

        After an earlier attempt that wrote and never answered, only an answer about
        that attempt is kept (its outcome, or that it cannot be told): a refusal that
        came before (say, "still in progress") is for now, not for good."""
        if self.finished:
            return False
        self.finished = True
        store = self.service.store
        about_earlier = (self.resolving and not self.unsettled) or self.interrupted
        if status < 500 and status not in FOR_NOW and (not self.earlier_effect
                                                        or about_earlier):
            encoded = msgspec.json.encode(headers).decode()
            text = body.decode("utf-8", "replace")
            kept = await self.service.cleanup(
                lambda: store.complete(self.record, self.owner, status, encoded, text))
            if kept:
                return True
        await self.service.cleanup(lambda: store.release(self.record, self.owner))
        return False


class IdempotencyService:
    def __init__(self, db: Database, lease_s: float) -> None:
        self.db = db
        self.store = IdempotencyStore(db)
        self.lease_s = lease_s

    async def begin(self, key: str, fingerprint: str) -> Begun:
        """Claim ``key`` for a request whose decoded content hashes to ``fingerprint``.

        ``key`` must already be scoped to the caller (two callers never share one)."""
        record = f"request:{key}"
        owner = new_id("clm")
        with self.db.outside_transaction():
            for _ in range(3):
                if await self.store.insert_claim(record, fingerprint, owner, self.lease_s):
                    return Proceed(Claim(self, key, owner, earlier_effect=False))
                # a repeat: read first, since a finished or running first attempt (the
                # usual cases) is answered from the row; only a free key is taken over
                row = await self.store.read_claim(record)
                if row is None:  # given back between our statements: claim it again
                    continue
                if row["fingerprint"] != fingerprint:
                    return Mismatch()
                if row["state"] == "done":
                    return Replay(_stored(row))
                left = row["lease_left"]
                if left is not None and float(left) > 0:
                    return Busy(max(1, min(RETRY_AFTER_S, math.ceil(float(left)))))
                taken = await self.store.take_over(record, fingerprint, owner, self.lease_s)
                if taken is not None:
                    effect_by, outcome = taken
                    log.info("idempotency key taken over", key=key,
                             earlier_effect=bool(effect_by))
                    return Proceed(Claim(self, key, owner, earlier_effect=bool(effect_by),
                                         earlier_outcome=outcome if effect_by else ""))
        return Busy(RETRY_AFTER_S)

    async def cleanup(self, step: Callable[[], Awaitable[T]]) -> T | None:
        """Run a bookkeeping step outside the request's transaction, retried a few times
        (briefly) if the database fails; None if it never succeeded."""
        for attempt, pause in enumerate((*_CLEANUP_PAUSES, None)):
            try:
                with self.db.outside_transaction():
                    return await step()
            except Exception as exc:
                if pause is None:
                    log.error("idempotency bookkeeping failed; the key's lease will run out",
                              error=type(exc).__name__, attempts=attempt + 1)
                    return None
                await asyncio.sleep(pause)
        return None


def _stored(row: dict[str, Any]) -> StoredAnswer:
    headers = msgspec.json.decode(row["headers"] or "[]", type=list[tuple[str, str]])
    return StoredAnswer(int(row["status"]), headers, str(row["result"]).encode())


def claim_for(key: str | None) -> Claim | None:
    """The claim this task's request holds on ``key`` (scoped as the adapter scopes it),
    if it holds one: an engine operation under it records its own outcome on the claim
    (``Claim.note_outcome``) and finds an earlier attempt's there
    (``Claim.earlier_outcome``), with no record or look-up of its own."""
    claim = WRITE_FENCE.get()
    if key is not None and isinstance(claim, Claim) and claim.key == key:
        return claim
    return None


def resolving(key: str, *, settled: bool = True) -> None:
    """Called by an engine operation that found its own record of an earlier attempt
    under ``key`` and answers that attempt's outcome: the current claim may then write
    (to finish what the earlier attempt started) although that attempt had written.
    ``settled=False``: the outcome is not final yet (work still in flight); the answer
    goes to the client but is not kept, so a later repeat asks again."""
    claim = claim_for(key)
    if claim is not None:
        claim.resolving = True
        if not settled:
            claim.unsettled = True
