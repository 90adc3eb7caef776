"""The one way stock moves: a level changes and its ledger row is written together.

Orders (through ``OrderChange``) and the inventory service (receipts, adjustments,
counts) both move stock through a ``StockMoves``: it changes the level, notes the
``Movement`` (written by ``record`` in the same transaction) and which SKUs' availability
changed. Nothing else builds movements, so the ledger always sums to the levels.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from ordnung.core.domain.inventory import Allocation, Movement
from ordnung.core.persistence.database import Heading, Statement
from ordnung.core.persistence.sole_levels import reserving
from ordnung.core.persistence.stock import (
    ReserveOutcome,
    StockStore,
    Want,
    movement,
    wanted_per_sku,
)


class StockMoves:
    def __init__(self, stock: StockStore, *, actor: str, order_id: str | None = None) -> None:
        self.stock = stock
        self.actor = actor
        self.order_id = order_id
        self.movements: list[Movement] = []
        #: SKUs whose availability these moves changed
        self.availability: set[str] = set()
        #: availability after these moves, per SKU, where the reserving statement told
        self.known_availability: dict[str, int] = {}
        #: a reservation that goes with the change's writes (``reserve_with_writes``)
        self.heading: Heading | None = None

    async def move(self, kind: str, sku: str, location_id: str, on_hand: int,
                   reserved: int, reason: str = "") -> None:
        await self.stock.apply([(sku, location_id, on_hand, reserved)])
        self._moved(kind, sku, location_id, on_hand, reserved, reason)

    async def reserve(self, wants: Sequence[Want], reason: str) -> ReserveOutcome:
        """Reserve ``wants`` with the guarded statements (nothing oversold); a ``reserve``
        movement per allocation, in the order of ``wants``. With shortages nothing is
        noted: the caller raises and the transaction rolls the reservations back."""
        outcome = await self.stock.reserve(wants)
        if outcome.shortages:
            return outcome
        for want in wants:
            for alloc in outcome.allocations.get(want.key, []):
                self._moved("reserve", want.sku, alloc.location_id, 0, alloc.quantity, reason)
        self.known_availability.update(outcome.available)
        return outcome

    def reserve_with_writes(self, wants: Sequence[Want], reason: str
                            ) -> dict[str, list[Allocation]] | None:
        """On PostgreSQL, when every SKU of ``wants`` has a level this worker knows to be
        its only one (``sole_levels``): reserve them with the change's writes, in its one
        statement (``heading``). The allocations by want, and the movements noted; the
        statement refuses itself whole if a level has no room or is not its SKU's only
        one any more (``refused``). None when not known: reserve as usual."""
        if not self.stock.db.is_postgres or any(want.quantity <= 0 for want in wants):
            return None
        totals = wanted_per_sku(wants)
        levels = self.stock.sole.of(totals)
        if levels is None:
            return None
        self.heading = reserving(totals, levels)
        allocations: dict[str, list[Allocation]] = {}
        for want in wants:
            location_id = levels[want.sku][1]
            allocations[want.key] = [Allocation(location_id=location_id,
                                                quantity=want.quantity)]
            self._moved("reserve", want.sku, location_id, 0, want.quantity, reason)
        return allocations

    def reserved(self, returned: str | None) -> None:
        """What the statement of ``reserve_with_writes`` returned: units available per
        SKU (JSON pairs), now known."""
        available = {str(sku): int(units) for sku, units in
                     msgspec.json.decode(returned or "[]", type=list[tuple[str, int]])}
        self.known_availability.update(available)
        self.stock.hints.learn(available)

    def refused(self) -> None:
        """The statement of ``reserve_with_writes`` refused itself: its levels are not
        known any more (the next reservation of them asks the database again)."""
        self.stock.sole.forget({m.sku for m in self.movements})

    async def count(self, sku: str, location_id: str, counted: int, reason: str) -> int:
        """Set on hand to a physical count; returns the difference, which is the move."""
        delta = await self.stock.set_on_hand(sku, location_id, counted)
        if delta:
            self._moved("count", sku, location_id, delta, 0, reason)
        return delta

    def _moved(self, kind: str, sku: str, location_id: str, on_hand: int, reserved: int,
               reason: str) -> None:
        self.movements.append(movement(sku, location_id, kind, on_hand, reserved,
                                       order_id=self.order_id, reason=reason,
                                       actor=self.actor))
        self.availability.add(sku)

    async def record(self) -> None:
        """Write the movements' ledger rows; inside the transaction that moved the stock."""
        await self.stock.record(self.movements)

    def recording(self) -> list[Statement]:
        """The statement ``record`` runs, if any (to run with the change's other writes)."""
        return self.stock.recording(self.movements)
