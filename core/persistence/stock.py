"""Stock levels and the movement ledger: oversell-proof arithmetic in SQL.

Every change is one guarded UPDATE whose WHERE clause re-checks availability
at the moment the row is written, so two processes can never both take the
last unit; the CHECK constraint on ``stock_levels`` backs it. A placement reserves
all its lines in one statement, which first locks the levels of its SKUs in a
fixed order (SKU, then location), the order every other change keeps, so
concurrent placements cannot deadlock each other. Each change appends a
ledger movement in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import msgspec

from ordnung.core.domain.common import new_id, utcnow
from ordnung.core.domain.inventory import Allocation, Movement, StockLevel
from ordnung.core.errors import InvalidInput, NotFound
from ordnung.core.persistence.database import Database, where


class Want(msgspec.Struct, frozen=True):
    """A request to reserve ``quantity`` of ``sku`` for the line ``key``."""

    key: str
    sku: str
    quantity: int
    optional: bool = False


class ReserveOutcome(msgspec.Struct):
    allocations: dict[str, list[Allocation]]
    #: optional wants that could not be met (e.g. a gift out of stock)
    skipped: list[str]
    #: required wants that could not be met: sku, requested, available
    shortages: list[dict[str, object]]
    #: units available per SKU once these reservations commit, where the reserving
    #: statements could tell (saves reading it again for the availability push)
    available: dict[str, int] = msgspec.field(default_factory=dict)


_FAST_RESERVE = """
UPDATE stock_levels SET reserved = reserved + {}
WHERE id = (
    SELECT s.id FROM stock_levels s JOIN locations l ON l.id = s.location_id
    WHERE s.sku = {} AND l.active AND (s.allow_backorder OR s.on_hand - s.reserved >= {})
    ORDER BY l.priority, l.id LIMIT 1
) AND (allow_backorder OR on_hand - reserved >= {})
RETURNING location_id, on_hand - reserved + (
    SELECT COALESCE(SUM(o.on_hand - o.reserved), 0)
    FROM stock_levels o JOIN locations ol ON ol.id = o.location_id
    WHERE o.sku = stock_levels.sku AND ol.active AND o.id <> stock_levels.id
) AS available
"""

#: every want's SKU, its total quantity and the first level with room for it (in location
#: priority order), all reserved by one UPDATE; a SKU whose level has no room any more when
#: the row is written is missing from the answer (``_reserve_one`` then tries it alone).
#: ``{values}`` is one ``_BULK_VALUE`` per SKU. On PostgreSQL ``{lock}`` first locks every
#: level of the wanted SKUs in (SKU, location) order, the order every other stock change
#: keeps (by code point, as Python sorts, whatever the database's collation): the
#: statement cannot deadlock with another, and the fallback of a missed SKU only touches
#: rows this transaction already holds.
_BULK_RESERVE = """
WITH wanted (sku, qty) AS (VALUES {values}),
pick AS {materialized} (
    SELECT wanted.qty AS qty, (
        SELECT s.id FROM stock_levels s JOIN locations l ON l.id = s.location_id
        WHERE s.sku = wanted.sku AND l.active
          AND (s.allow_backorder OR s.on_hand - s.reserved >= wanted.qty)
        ORDER BY l.priority, l.id LIMIT 1
    ) AS id FROM wanted
){lock}
UPDATE stock_levels SET reserved = stock_levels.reserved + pick.qty
FROM pick
WHERE stock_levels.id = pick.id{locked}
  AND (stock_levels.allow_backorder OR stock_levels.on_hand - stock_levels.reserved >= pick.qty)
RETURNING stock_levels.sku, stock_levels.location_id,
    stock_levels.on_hand - stock_levels.reserved + (
        SELECT COALESCE(SUM(o.on_hand - o.reserved), 0)
        FROM stock_levels o JOIN locations ol ON ol.id = o.location_id
        WHERE o.sku = stock_levels.sku AND ol.active AND o.id <> stock_levels.id
    ) AS available
"""
_BULK_VALUE = "(CAST({} AS VARCHAR(64)), CAST({} AS BIGINT))"
_BULK_LOCK = (",\nlocked AS MATERIALIZED (SELECT s.id FROM stock_levels s "
              "WHERE s.sku IN (SELECT sku FROM wanted) "
              'ORDER BY s.sku COLLATE "C", s.location_id COLLATE "C" FOR UPDATE)')
_BULK_LOCKED = " AND stock_levels.id IN (SELECT id FROM locked)"

_GUARDED_RESERVE = """
UPDATE stock_levels SET reserved = reserved + {}
WHERE id = {} AND (allow_backorder OR on_hand - reserved >= {})
RETURNING location_id
"""

_LEVELS_FOR_SKU = """
SELECT s.id, s.location_id, s.on_hand - s.reserved AS available, s.allow_backorder
FROM stock_levels s JOIN locations l ON l.id = s.location_id
WHERE s.sku = {} AND l.active
ORDER BY l.priority, l.id
"""

_SHIFT = (
    "UPDATE stock_levels SET on_hand = on_hand + {}, reserved = reserved + {} "
    "WHERE id = {} AND on_hand + {} >= 0 AND reserved + {} >= 0 "
    "AND (allow_backorder OR on_hand + {} >= reserved + {}) RETURNING id")
_ON_HAND = "SELECT on_hand FROM stock_levels WHERE id = {}"
_LEVEL_EXISTS = "SELECT id FROM stock_levels WHERE id = {}"
_INSERT_LEVEL = ("INSERT INTO stock_levels (id, sku, location_id, on_hand, reserved, "
                 "allow_backorder) VALUES ({}, {}, {}, 0, 0, {})")
_SET_BACKORDER = "UPDATE stock_levels SET allow_backorder = {} WHERE sku = {}"
_LEVEL = "SELECT on_hand, reserved FROM stock_levels WHERE id = {}"
#: the levels list: filters are added to it, then ``_LEVELS_ORDER``
_LEVELS = "SELECT sku, location_id, on_hand, reserved FROM stock_levels"
_LEVELS_ORDER = " ORDER BY sku, location_id"
_AVAILABLE = (
    "SELECT s.sku, SUM(s.on_hand - s.reserved) AS available FROM stock_levels s "
    "JOIN locations l ON l.id = s.location_id "
    "WHERE l.active AND s.sku IN ({}) GROUP BY s.sku")
_MOVEMENT_COLUMNS = ("id", "sku", "location_id", "kind", "on_hand_delta", "reserved_delta",
                     "order_id", "reason", "actor", "at")
#: the ledger list: filters are added to it, then ``_MOVEMENTS_PAGE``
_MOVEMENTS = f"SELECT {', '.join(_MOVEMENT_COLUMNS)} FROM stock_movements"
_MOVEMENTS_PAGE = " ORDER BY id LIMIT {}"
_LEDGER_BALANCE = (
    "SELECT s.sku, s.location_id, s.on_hand, s.reserved, "
    "COALESCE(SUM(m.on_hand_delta), 0) AS ledger_on_hand, "
    "COALESCE(SUM(m.reserved_delta), 0) AS ledger_reserved "
    "FROM stock_levels s LEFT JOIN stock_movements m "
    "ON m.sku = s.sku AND m.location_id = s.location_id "
    "GROUP BY s.sku, s.location_id, s.on_hand, s.reserved")


def level_id(sku: str, location_id: str) -> str:
    return f"{sku}@{location_id}"


class StockStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._on_hand_locked = _ON_HAND + db.lock_suffix
        #: the one-statement reservation, by its number of SKUs
        self._bulk: dict[int, str] = {}

    # -- reservations -------------------------------------------------------------
    async def reserve(self, wants: Sequence[Want]) -> ReserveOutcome:
        """Reserve every want; call inside a transaction.

        One statement reserves all SKUs whose first level with room can take the
        total wanted of that SKU; the rest (spread over locations, or short) are
        tried want by want, in SKU order. Required wants that cannot be met are
        reported in ``shortages`` (the caller raises and the transaction rolls back,
        taking the other reservations with it); optional ones are skipped.
        """
        if any(want.quantity <= 0 for want in wants):
            raise InvalidInput("quantity must be positive", field="quantity")
        outcome = ReserveOutcome(allocations={}, skipped=[], shortages=[])
        totals: dict[str, int] = {}
        lines: dict[str, int] = {}
        for want in wants:
            totals[want.sku] = totals.get(want.sku, 0) + want.quantity
            lines[want.sku] = lines.get(want.sku, 0) + 1
        reserved = await self._reserve_all(totals) if totals else {}
        unknown: set[str] = set()  # SKUs reserved by a split: availability not returned
        for want in sorted(wants, key=lambda w: (w.sku, w.optional, w.key)):
            row = reserved.get(want.sku)
            if row is not None:
                outcome.allocations[want.key] = [Allocation(location_id=row["location_id"],
                                                            quantity=want.quantity)]
                outcome.available[want.sku] = int(row["available"])
            else:
                # a SKU's only want was just tried whole at its first level with room
                await self._reserve_one(want, outcome, unknown,
                                        tried_whole=lines[want.sku] == 1)
        return outcome

    async def _reserve_all(self, totals: dict[str, int]) -> dict[str, dict[str, Any]]:
        """Reserve each SKU's total at its first level with room, in one statement;
        the rows reserved, by SKU."""
        skus = sorted(totals)
        sql = self._bulk.get(len(skus))
        if sql is None:
            sql = _BULK_RESERVE.format(
                values=", ".join(_BULK_VALUE for _ in skus),
                materialized="MATERIALIZED" if self.db.is_postgres else "",
                lock=_BULK_LOCK if self.db.is_postgres else "",
                locked=_BULK_LOCKED if self.db.is_postgres else "")
            self._bulk[len(skus)] = sql
        rows = await self.db.fetch(sql, *[v for sku in skus for v in (sku, totals[sku])])
        return {row["sku"]: row for row in rows}

    async def _reserve_one(self, want: Want, outcome: ReserveOutcome, unknown: set[str],
                           *, tried_whole: bool) -> None:
        """Reserve one want on its own: at its first level with room (unless that was just
        tried), else spread over the levels in priority order."""
        rows = [] if tried_whole else await self.db.fetch(
            _FAST_RESERVE, want.quantity, want.sku, want.quantity, want.quantity)
        if rows:
            outcome.allocations[want.key] = [Allocation(location_id=rows[0]["location_id"],
                                                        quantity=want.quantity)]
            if want.sku not in unknown:
                outcome.available[want.sku] = int(rows[0]["available"])
            return
        unknown.add(want.sku)
        outcome.available.pop(want.sku, None)
        allocations, short_by = await self._reserve_split(want)
        if short_by == 0:
            outcome.allocations[want.key] = allocations
            return
        # undo the partial split for this want before reporting it
        for alloc in allocations:
            await self._shift(want.sku, alloc.location_id, 0, -alloc.quantity)
        if want.optional:
            outcome.skipped.append(want.key)
        else:
            available = await self.available([want.sku])
            outcome.shortages.append({"sku": want.sku, "requested": want.quantity,
                                      "available": max(available.get(want.sku, 0), 0)})

    async def _reserve_split(self, want: Want) -> tuple[list[Allocation], int]:
        """Spread a want over locations in priority order; returns what is still missing."""
        remaining = want.quantity
        allocations: list[Allocation] = []
        for _attempt in range(3):
            levels = await self.db.fetch(_LEVELS_FOR_SKU, want.sku)
            progressed = False
            for level in levels:
                if remaining == 0:
                    break
                take = remaining if level["allow_backorder"] else min(remaining,
                                                                      level["available"])
                if take <= 0:
                    continue
                rows = await self.db.fetch(_GUARDED_RESERVE, take, level["id"], take)
                if rows:
                    allocations.append(Allocation(location_id=level["location_id"],
                                                  quantity=take))
                    remaining -= take
                    progressed = True
            if remaining == 0 or not progressed:
                break
        return allocations, remaining

    async def _shift(self, sku: str, location_id: str, on_hand: int, reserved: int) -> None:
        """Apply deltas to one level, refusing anything the invariants forbid."""
        rows = await self.db.run(_SHIFT, on_hand, reserved, level_id(sku, location_id),
                                 on_hand, reserved, on_hand, reserved)
        if not rows:
            level = await self.level(sku, location_id)
            raise InvalidInput(
                f"stock of {sku} at {location_id} cannot change by on_hand {on_hand:+d}, "
                f"reserved {reserved:+d} (on hand {level.on_hand}, reserved {level.reserved})",
                field="quantity", sku=sku, location_id=location_id,
            )

    async def apply(self, changes: Iterable[tuple[str, str, int, int]]) -> None:
        """Apply ``(sku, location, on_hand_delta, reserved_delta)`` changes in lock order."""
        for sku, location_id, on_hand, reserved in sorted(changes, key=lambda c: (c[0], c[1])):
            if on_hand or reserved:
                await self._shift(sku, location_id, on_hand, reserved)

    async def set_on_hand(self, sku: str, location_id: str, counted: int) -> int:
        """Set on hand to a counted figure; returns the delta applied."""
        rows = await self.db.run(self._on_hand_locked, level_id(sku, location_id))
        if not rows:
            raise NotFound("stock level", level_id(sku, location_id))
        delta = counted - rows[0]["on_hand"]
        if delta:
            await self._shift(sku, location_id, delta, 0)
        return int(delta)

    # -- levels -------------------------------------------------------------------
    async def ensure_level(self, sku: str, location_id: str, allow_backorder: bool) -> bool:
        """Create the level row if missing; True if it was created."""
        if await self.db.run(_LEVEL_EXISTS, level_id(sku, location_id)):
            return False
        await self.db.run(_INSERT_LEVEL, level_id(sku, location_id), sku, location_id,
                          allow_backorder)
        return True

    async def set_backorder(self, sku: str, allow: bool) -> None:
        await self.db.run(_SET_BACKORDER, allow, sku)

    async def level(self, sku: str, location_id: str) -> StockLevel:
        r = await self.db.fetch_one(_LEVEL, level_id(sku, location_id))
        if r is None:
            raise NotFound("stock level", level_id(sku, location_id))
        return StockLevel(sku=sku, location_id=location_id, on_hand=r["on_hand"],
                          reserved=r["reserved"])

    async def levels(self, skus: Sequence[str] | None = None,
                     location_id: str | None = None) -> list[StockLevel]:
        if skus is not None and not skus:
            return []
        clause, args = where(("sku IN ({})", list(skus) if skus is not None else None),
                             ("location_id = {}", location_id))
        rows = await self.db.run(_LEVELS + clause + _LEVELS_ORDER, *args)
        return [StockLevel(sku=r["sku"], location_id=r["location_id"], on_hand=r["on_hand"],
                           reserved=r["reserved"]) for r in rows]

    async def available(self, skus: Sequence[str]) -> dict[str, int]:
        """Available units per SKU over all active locations (the same for every channel)."""
        if not skus:
            return {}
        rows = await self.db.run(_AVAILABLE.format(", ".join("{}" for _ in skus)), *skus)
        out = {sku: 0 for sku in skus}
        out.update({r["sku"]: int(r["available"]) for r in rows})
        return out

    # -- ledger -------------------------------------------------------------------
    async def record(self, movements: Sequence[Movement]) -> None:
        if not movements:
            return
        await self.db.insert_rows(
            "stock_movements", _MOVEMENT_COLUMNS,
            [(m.id, m.sku, m.location_id, m.kind, m.on_hand_delta, m.reserved_delta,
              m.order_id, m.reason, m.actor, m.at) for m in movements])

    async def movements(self, sku: str | None = None, order_id: str | None = None,
                        limit: int = 500, after: str | None = None) -> list[Movement]:
        clause, args = where(("sku = {}", sku), ("order_id = {}", order_id),
                             ("id > {}", after))
        rows = await self.db.run(_MOVEMENTS + clause + _MOVEMENTS_PAGE, *args, limit)
        return [Movement(**{k: r[k] for k in Movement.__struct_fields__}) for r in rows]

    async def ledger_balance(self) -> list[dict[str, int | str]]:
        """Rows where the level disagrees with the sum of its movements (should be none)."""
        rows = await self.db.fetch(_LEDGER_BALANCE)
        return [r for r in rows if r["on_hand"] != r["ledger_on_hand"]
                or r["reserved"] != r["ledger_reserved"]]


def movement(sku: str, location_id: str, kind: str, on_hand: int, reserved: int, *,
             order_id: str | None = None, reason: str = "", actor: str = "",
             at: datetime | None = None) -> Movement:
    return Movement(id=new_id("mv"), sku=sku, location_id=location_id, kind=kind,
                    on_hand_delta=on_hand, reserved_delta=reserved, order_id=order_id,
                    reason=reason, actor=actor, at=at or utcnow())
