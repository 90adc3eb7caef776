"""Inventory service: locations, levels, receiving, adjustments, counts, the ledger."""

from __future__ import annotations

from collections.abc import Sequence

from ordnung.core.domain.common import utcnow
from ordnung.core.domain.events import Event
from ordnung.core.domain.inventory import Location, Movement, StockLevel
from ordnung.core.errors import InvalidInput
from ordnung.core.persistence.journal import event
from ordnung.core.runtime import Runtime
from ordnung.core.stock_moves import StockMoves

#: more slices than concurrent placements buys nothing and costs every reader a row each
MAX_SLICES = 64


class InventoryService:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def upsert_location(self, location: Location) -> Location:
        if not location.id.strip():
            raise InvalidInput("a location needs an id", field="id")
        await self.rt.catalog.upsert_location(location)
        return location

    async def locations(self) -> list[Location]:
        return await self.rt.catalog.locations()

    async def adjust(self, sku: str, location_id: str, delta: int, *, kind: str = "adjust",
                     reason: str = "", actor: str = "system") -> StockLevel:
        """Receive (positive), write off or correct stock by ``delta`` units."""
        if kind not in ("receive", "adjust", "restock"):
            raise InvalidInput("kind must be receive, adjust or restock", field="kind")
        if kind == "receive" and delta <= 0:
            raise InvalidInput("a receipt must be positive", field="delta")
        if delta == 0:
            raise InvalidInput("delta must not be zero", field="delta")
        variant = await self.rt.catalog.variant(sku)
        await self.rt.catalog.location(location_id)
        async def unit() -> list[Event]:
            await self.rt.stock.ensure_level(sku, location_id, variant.allow_backorder)
            moves = StockMoves(self.rt.stock, actor=actor)
            await moves.move(kind, sku, location_id, delta, 0, reason)
            return await self._record(moves, sku, location_id, kind, delta, reason, actor)

        events = await self.rt.transactionally(unit)
        await self.rt.deliver(events, None)
        return await self.rt.stock.level(sku, location_id)

    async def count(self, sku: str, location_id: str, counted: int, *, reason: str = "count",
                    actor: str = "system") -> StockLevel:
        """Set on hand to a physical count; the difference goes to the ledger."""
        if counted < 0:
            raise InvalidInput("a count cannot be negative", field="counted")
        variant = await self.rt.catalog.variant(sku)
        await self.rt.catalog.location(location_id)
        async def unit() -> list[Event]:
            await self.rt.stock.ensure_level(sku, location_id, variant.allow_backorder)
            moves = StockMoves(self.rt.stock, actor=actor)
            delta = await moves.count(sku, location_id, counted, reason)
            if not delta:
                return []
            return await self._record(moves, sku, location_id, "count", delta, reason, actor)

        events = await self.rt.transactionally(unit)
        await self.rt.deliver(events, None)
        return await self.rt.stock.level(sku, location_id)

    async def set_slices(self, sku: str, location_id: str, slices: int) -> StockLevel:
        """Cut a level into ``slices`` rows (1 undoes it) so placements of a hot SKU stop
        queueing on one row: each takes a slice no other placement holds. The units are
        spread evenly; the level's totals, its ledger and availability do not change."""
        if not 1 <= slices <= MAX_SLICES:
            raise InvalidInput(f"slices must be between 1 and {MAX_SLICES}", field="slices")
        variant = await self.rt.catalog.variant(sku)
        await self.rt.catalog.location(location_id)
        async def unit() -> None:
            await self.rt.stock.ensure_level(sku, location_id, variant.allow_backorder)
            await self.rt.stock.set_slices(sku, location_id, slices)

        await self.rt.transactionally(unit)
        return await self.rt.stock.level(sku, location_id)

    async def _record(self, moves: StockMoves, sku: str, location_id: str, kind: str,
                      delta: int, reason: str, actor: str) -> list[Event]:
        await moves.record()
        events = [
            event("stock.adjusted", actor=actor, entity_id=sku,
                  data={"sku": sku, "location_id": location_id, "kind": kind, "delta": delta,
                        "reason": reason}, at=utcnow()),
            event("inventory.availability_changed", actor=actor, data={"skus": [sku]}),
        ]
        await self.rt.journal.append(events)
        return events

    async def levels(self, skus: Sequence[str] | None = None,
                     location_id: str | None = None) -> list[StockLevel]:
        return await self.rt.stock.levels(skus, location_id)

    async def available(self, skus: Sequence[str]) -> dict[str, int]:
        return await self.rt.stock.available(skus)

    async def movements(self, *, sku: str | None = None, order_id: str | None = None,
                        after: str | None = None, limit: int = 500) -> list[Movement]:
        return await self.rt.stock.movements(sku=sku, order_id=order_id, after=after,
                                             limit=limit)

    async def ledger_discrepancies(self) -> list[dict[str, int | str]]:
        return await self.rt.stock.ledger_balance()
