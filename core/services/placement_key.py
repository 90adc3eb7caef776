"""A placement's Idempotency-Key: one record per key, whoever calls the engine.

A request that comes through an adapter (REST, GraphQL) already holds a claim on its
key (``ordnung.core.services.idempotency``): the placement records its order id on
that claim, in the statement that proves the claim in the placement's own transaction,
and a repeat that takes the key over finds the order there. Nothing else is read or
written for the key, and no second fingerprint is computed: the adapter's covers the
request.

A caller of the engine that holds no claim (a script, a test, a job) gets the engine's
own record, ``place:<key>``, fingerprinted from the request and written in the
placement's transaction, so that concurrent duplicates make one order.
"""

from __future__ import annotations

import msgspec

from ordnung.core.errors import InvalidInput
from ordnung.core.persistence.idempotency import IdempotencyStore, fingerprint
from ordnung.core.requests import PlaceOrder
from ordnung.core.services.idempotency import Claim, claim_for


class Replayed(Exception):
    """Inside the placement transaction: a duplicate request committed first."""

    def __init__(self, order_id: str) -> None:
        super().__init__(order_id)
        self.order_id = order_id


class PlacementKey:
    """What a placement does for its key before, inside and after its transaction."""

    def __init__(self, store: IdempotencyStore, key: str | None, request: PlaceOrder,
                 cart_id: str | None) -> None:
        self.store = store
        self.claim: Claim | None = claim_for(key)
        if self.claim is not None and self.claim.outcome:
            raise InvalidInput("one Idempotency-Key covers one placement: this request "
                               f"already placed order {self.claim.outcome}",
                               field="Idempotency-Key")
        self.record: str | None = None
        self.print_ = ""
        if key and self.claim is None:
            self.record = f"place:{key}"
            self.print_ = fingerprint(msgspec.json.encode(request) + (cart_id or "").encode())

    async def earlier(self) -> str | None:
        """The order an earlier attempt under this key made, if one did."""
        if self.claim is not None:
            return self.claim.earlier_outcome or None
        if self.record is not None:
            return await self.store.lookup(self.record, self.print_)
        return None

    async def begin(self, order_id: str) -> None:
        """First thing in the placement's transaction: name the order the key makes (on a
        claim), or find that a concurrent duplicate committed first (``Replayed``)."""
        if self.claim is not None:
            await self.claim.note_outcome(order_id)
        elif self.record is not None and (
                existing := await self.store.lookup(self.record, self.print_)):
            raise Replayed(existing)

    async def end(self, order_id: str) -> None:
        """Last thing in the placement's transaction: keep the engine's own record."""
        if self.record is not None:
            await self.store.store(self.record, self.print_, order_id)

    async def duplicate(self) -> str | None:
        """After the transaction collided: the order of a duplicate that won, if any."""
        if self.record is None:
            return None
        return await self.store.lookup(self.record, self.print_)
