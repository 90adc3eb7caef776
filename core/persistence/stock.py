"""Stock levels and the movement ledger: oversell-proof arithmetic in SQL.

Every change is one guarded UPDATE whose WHERE clause re-checks availability
at the moment the row is written, so two processes can never both take the
last unit; the CHECK constraint on ``stock_levels`` backs it. A placement reserves
all its lines in one statement, which first locks the levels of its SKUs in a
fixed order (SKU, then location), the order every other change keeps, so
concurrent placements cannot deadlock each other. Each change appends a
ledger movement in the same transaction.

A hot level (the free gift, a flash-sale SKU) can be cut into slices: rows of the same
(SKU, location) told apart by ``slice``, whose sums are the level (``set_slices``). A
placement takes one slice with room that no other transaction holds (``SKIP LOCKED``), so
orders of that SKU no longer wait for each other; every reader adds the slices up.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import msgspec

from ordnung.core.domain.common import new_id, utcnow
from ordnung.core.domain.inventory import Allocation, Movement, StockLevel
from ordnung.core.errors import InvalidInput, NotFound
from ordnung.core.persistence.database import Database, Statement, rows_statement, where
from ordnung.core.persistence.generations import OBSERVED_COLUMNS, observe
from ordnung.core.persistence.sole_levels import SOLE_COLUMN, SoleLevels
from ordnung.core.persistence.stock_hints import StockHints


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
    ORDER BY l.priority, l.id, random() LIMIT 1{skip}
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
#: rows this transaction already holds. A sliced SKU's levels are not locked first: once
#: the others are held (``gate``), one of its slices with room that no other transaction
#: holds is picked at random and locked (``SKIP LOCKED``: no wait, so no deadlock either).
_BULK_RESERVE = """
WITH wanted (sku, qty) AS (VALUES {values}){lock},
pick AS {materialized} (
    SELECT wanted.qty AS qty, (
        SELECT s.id FROM stock_levels s JOIN locations l ON l.id = s.location_id
        WHERE s.sku = wanted.sku AND l.active
          AND (s.allow_backorder OR s.on_hand - s.reserved >= wanted.qty)
        ORDER BY l.priority, l.id, random() LIMIT 1{skip_locked}
    ) AS id FROM wanted{gate}
)
UPDATE stock_levels SET reserved = stock_levels.reserved + pick.qty
FROM pick
WHERE stock_levels.id = pick.id
  AND (stock_levels.allow_backorder OR stock_levels.on_hand - stock_levels.reserved >= pick.qty)
RETURNING stock_levels.sku, stock_levels.location_id,
    stock_levels.on_hand - stock_levels.reserved + (
        SELECT COALESCE(SUM(o.on_hand - o.reserved), 0)
        FROM stock_levels o JOIN locations ol ON ol.id = o.location_id
        WHERE o.sku = stock_levels.sku AND ol.active AND o.id <> stock_levels.id
    ) AS available, {sole}{observed}
"""
_BULK_VALUE = "(CAST({} AS VARCHAR(64)), CAST({} AS BIGINT))"
_BULK_LOCK = (",\nlocked AS MATERIALIZED (SELECT s.id FROM stock_levels s "
              "WHERE s.sku IN (SELECT sku FROM wanted) AND NOT EXISTS ("
              "SELECT 1 FROM stock_levels h WHERE h.sku = s.sku AND h.slice > 0) "
              'ORDER BY s.sku COLLATE "C", s.location_id COLLATE "C" FOR UPDATE)')
_BULK_SKIP_LOCKED = " FOR UPDATE OF s SKIP LOCKED"
#: the picks start once every unsliced level is locked (a projection waits for its join)
_BULK_GATE = " CROSS JOIN (SELECT COUNT(*) AS n FROM locked) gate"

_GUARDED_RESERVE = """
UPDATE stock_levels SET reserved = reserved + {}
WHERE id = {} AND (allow_backorder OR on_hand - reserved >= {})
RETURNING location_id
"""

#: a guarded reservation of a slice that no other transaction holds (none: held or full)
_GUARDED_RESERVE_FREE = """
UPDATE stock_levels SET reserved = reserved + {}
WHERE id = (SELECT id FROM stock_levels WHERE id = {}
            AND (allow_backorder OR on_hand - reserved >= {}) FOR UPDATE SKIP LOCKED)
  AND (allow_backorder OR on_hand - reserved >= {})
RETURNING location_id
"""
#: a sliced spread runs in this savepoint: giving up gives its slices back to the others
_SPREAD_SAVEPOINT = "SAVEPOINT stock_spread"
_SPREAD_RELEASE = "RELEASE SAVEPOINT stock_spread"
_SPREAD_ROLLBACK = "ROLLBACK TO SAVEPOINT stock_spread"
#: tries of a sliced spread over the slices free at the time, before it waits for them
SPREAD_TRIES = 30

_LEVELS_FOR_SKU = """
SELECT s.id, s.location_id, s.slice, s.on_hand - s.reserved AS available, s.allow_backorder
FROM stock_levels s JOIN locations l ON l.id = s.location_id
WHERE s.sku = {} AND l.active
ORDER BY l.priority, l.id, s.slice
"""

_SHIFT_GUARD = ("on_hand + {} >= 0 AND reserved + {} >= 0 "
                "AND (allow_backorder OR on_hand + {} >= reserved + {})")
#: a move onto an unsliced level (the row of slice 0 when the level has no other)
_SHIFT = (
    "UPDATE stock_levels SET on_hand = on_hand + {}, reserved = reserved + {} "
    "WHERE id = {} AND " + _SHIFT_GUARD + " AND NOT EXISTS (SELECT 1 FROM stock_levels o "
    "WHERE o.sku = stock_levels.sku AND o.location_id = stock_levels.location_id "
    "AND o.slice > 0) RETURNING id")
#: a move that takes units (release, ship, write-off) from one slice that has them, picked
#: at random among those no other transaction holds; ``{skip}`` is empty on SQLite
_SHIFT_ONE = (
    "UPDATE stock_levels SET on_hand = on_hand + {}, reserved = reserved + {} "
    "WHERE id = (SELECT id FROM stock_levels WHERE sku = {} AND location_id = {} AND "
    + _SHIFT_GUARD + " ORDER BY random() LIMIT 1{skip}) AND " + _SHIFT_GUARD
    + " RETURNING id")
#: every slice of a level, locked in slice order (the whole level changes at once)
_SLICES = ("SELECT id, slice, on_hand, reserved, allow_backorder FROM stock_levels "
           "WHERE sku = {} AND location_id = {} ORDER BY slice")
_SET_SLICE = "UPDATE stock_levels SET on_hand = {}, reserved = {} WHERE id = {}"
_INSERT_SLICE = ("INSERT INTO stock_levels (id, sku, location_id, on_hand, reserved, "
                 "allow_backorder, slice) VALUES ({}, {}, {}, {}, {}, {}, {})")
_DELETE_SLICES = "DELETE FROM stock_levels WHERE sku = {} AND location_id = {} AND slice >= {}"
_LEVEL_EXISTS = "SELECT id FROM stock_levels WHERE id = {}"
_INSERT_LEVEL = ("INSERT INTO stock_levels (id, sku, location_id, on_hand, reserved, "
                 "allow_backorder) VALUES ({}, {}, {}, 0, 0, {})")
_SET_BACKORDER = "UPDATE stock_levels SET allow_backorder = {} WHERE sku = {}"
_LEVEL = ("SELECT COUNT(*) AS n, SUM(on_hand) AS on_hand, SUM(reserved) AS reserved "
          "FROM stock_levels WHERE sku = {} AND location_id = {}")
#: the levels list (its slices added up): filters are added to it, then ``_LEVELS_ORDER``
_LEVELS = "SELECT sku, location_id, SUM(on_hand) AS on_hand, SUM(reserved) AS reserved " \
    "FROM stock_levels"
_LEVELS_ORDER = " GROUP BY sku, location_id ORDER BY sku, location_id"
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
    "FROM (SELECT sku, location_id, SUM(on_hand) AS on_hand, SUM(reserved) AS reserved "
    "FROM stock_levels GROUP BY sku, location_id) s LEFT JOIN stock_movements m "
    "ON m.sku = s.sku AND m.location_id = s.location_id "
    "GROUP BY s.sku, s.location_id, s.on_hand, s.reserved")


def wanted_per_sku(wants: Sequence[Want]) -> dict[str, int]:
    """The units ``wants`` ask for, added up per SKU (a SKU's levels are reserved once)."""
    totals: dict[str, int] = {}
    for want in wants:
        totals[want.sku] = totals.get(want.sku, 0) + want.quantity
    return totals


def level_id(sku: str, location_id: str, slice_no: int = 0) -> str:
    """A level's row id: slice 0 keeps the id levels had before slices."""
    base = f"{sku}@{location_id}"
    return base if slice_no == 0 else f"{base}#{slice_no}"


def spread(total: int, count: int) -> list[int]:
    """``total`` over ``count`` slices as evenly as can be, the larger parts first: spread
    on hand and reserved alike and no slice holds more reserved than on hand when the
    level does not."""
    return [total // count + (1 if i < total % count else 0) for i in range(count)]


class StockStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._slices_locked = _SLICES + db.lock_suffix
        self._guarded_free = _GUARDED_RESERVE_FREE if db.is_postgres else _GUARDED_RESERVE
        self._fast_reserve = _FAST_RESERVE.replace(
            "{skip}", " FOR UPDATE OF s SKIP LOCKED" if db.is_postgres else "")
        self._shift_one = _SHIFT_ONE.replace(
            "{skip}", " FOR UPDATE SKIP LOCKED" if db.is_postgres else "")
        #: the one-statement reservation, by its number of SKUs
        self._bulk: dict[int, str] = {}
        #: what this worker last learned of SKUs' availability (``stock_hints``)
        self.hints = StockHints()
        #: the levels this worker learned are their SKU's only one (``sole_levels``)
        self.sole = SoleLevels()

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
        totals = wanted_per_sku(wants)
        lines: dict[str, int] = {}
        for want in wants:
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
        self.hints.learn(outcome.available)
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
                skip_locked=_BULK_SKIP_LOCKED if self.db.is_postgres else "",
                gate=_BULK_GATE if self.db.is_postgres else "", observed=OBSERVED_COLUMNS,
                sole=SOLE_COLUMN + ", " if self.db.is_postgres else "")
            self._bulk[len(skus)] = sql
        rows = await self.db.fetch(sql, *[v for sku in skus for v in (sku, totals[sku])])
        if rows:  # the placement's first statement: it confirms what the request kept
            observe(rows[0])
        if self.db.is_postgres:
            self.sole.learn(rows)
        return {row["sku"]: row for row in rows}

    async def _reserve_one(self, want: Want, outcome: ReserveOutcome, unknown: set[str],
                           *, tried_whole: bool) -> None:
        """Reserve one want on its own: at its first level with room (unless that was just
        tried), else spread over the levels in priority order."""
        rows = [] if tried_whole else await self.db.fetch(
            self._fast_reserve, want.quantity, want.sku, want.quantity, want.quantity)
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
        levels = await self.db.fetch(_LEVELS_FOR_SKU, want.sku)
        if self.db.is_postgres and any(level["slice"] for level in levels):
            return await self._reserve_sliced(want, levels)
        return await self._spread(want, levels)

    async def _spread(self, want: Want, levels: list[dict[str, Any]]
                      ) -> tuple[list[Allocation], int]:
        """Take what each level has, in order, waiting for levels another transaction
        holds (an unsliced SKU's are already this transaction's: see ``_BULK_RESERVE``).
        Once a pass takes nothing it stops, unless the figures it read showed enough (the
        slice it waited for was emptied by the one it waited for: read again). It waits only
        for levels after every one it holds, in the order of the read (as every spread
        does), so spreads never wait for each other in a circle; a level before one it
        holds is only taken if no one else holds it."""
        remaining = want.quantity
        allocations: list[Allocation] = []
        held: set[str] = set()
        for attempt in range(SPREAD_TRIES):
            if attempt:
                levels = await self.db.fetch(_LEVELS_FOR_SKU, want.sku)
            enough = sum(_take(level, remaining) for level in levels) >= remaining
            last = max((i for i, level in enumerate(levels) if level["id"] in held), default=-1)
            progressed = False
            for i, level in enumerate(levels):
                if remaining == 0:
                    break
                take = _take(level, remaining)
                if take <= 0:
                    continue
                sql = _GUARDED_RESERVE if i > last else self._guarded_free
                if await self.db.fetch(sql, *self._guarded_args(sql, take, level["id"])):
                    allocations = _merged(allocations, level["location_id"], take)
                    remaining -= take
                    progressed = True
                    held.add(level["id"])
                    last = max(last, i)
            if remaining == 0 or not (progressed or enough):
                break
        return allocations, remaining

    async def _reserve_sliced(self, want: Want, levels: list[dict[str, Any]]
                              ) -> tuple[list[Allocation], int]:
        """Spread a want over the slices no other transaction holds, without waiting.

        The transaction may already hold rows it does not know of (its other lines'
        levels; a slice a locking read locked, then found emptied): waiting for a slice
        now could close a circle with a transaction that holds the slice and waits for
        one of those. So a try that falls short gives its slices back (the savepoint) and
        tries again a moment later, until the committed figures say the units are not
        there. Only after ``SPREAD_TRIES`` does it wait."""
        for attempt in range(SPREAD_TRIES):
            if attempt:
                await asyncio.sleep(random.uniform(0.001, 0.003) * min(attempt, 10))
                levels = await self.db.fetch(_LEVELS_FOR_SKU, want.sku)
            if sum(_take(level, want.quantity) for level in levels) < want.quantity:
                return [], want.quantity
            await self.db.run(_SPREAD_SAVEPOINT)
            remaining = want.quantity
            allocations: list[Allocation] = []
            for level in levels:
                take = _take(level, remaining)
                if take > 0 and await self.db.fetch(
                        self._guarded_free, *self._guarded_args(self._guarded_free, take,
                                                                level["id"])):
                    allocations = _merged(allocations, level["location_id"], take)
                    remaining -= take
            if remaining == 0:
                await self.db.run(_SPREAD_RELEASE)
                return allocations, 0
            await self.db.run(_SPREAD_ROLLBACK)
        return await self._spread(want, await self.db.fetch(_LEVELS_FOR_SKU, want.sku))

    @staticmethod
    def _guarded_args(sql: str, take: int, level_id: str) -> tuple[object, ...]:
        """The arguments of a guarded reservation (the free one checks room twice)."""
        if sql is _GUARDED_RESERVE:
            return (take, level_id, take)
        return (take, level_id, take, take)

    async def _shift(self, sku: str, location_id: str, on_hand: int, reserved: int) -> None:
        """Apply deltas to one level, refusing anything the invariants forbid.

        An unsliced level takes them in one guarded statement; a move that takes units goes
        to one slice that has them; anything else (a receipt onto slices, a release no one
        slice holds) locks the level's slices and spreads the new totals over them."""
        if on_hand < reserved:  # fewer units available than this worker last learned
            self.hints.forget((sku,))
        if on_hand > 0 or reserved > 0:
            rows = await self.db.run(_SHIFT, on_hand, reserved, level_id(sku, location_id),
                                     on_hand, reserved, on_hand, reserved)
        else:
            guard = (on_hand, reserved, on_hand, reserved)
            rows = await self.db.run(self._shift_one, on_hand, reserved, sku, location_id,
                                     *guard, *guard)
        if not rows:
            await self._respread(sku, location_id, on_hand, reserved)

    async def _respread(self, sku: str, location_id: str, on_hand: int, reserved: int,
                        count: int | None = None) -> None:
        """Lock every slice of the level, apply the deltas to its totals and spread them
        over ``count`` slices (default: as many as it has)."""
        rows = await self.db.run(self._slices_locked, sku, location_id)
        if not rows:
            raise NotFound("stock level", level_id(sku, location_id))
        total_on_hand = sum(int(r["on_hand"]) for r in rows) + on_hand
        total_reserved = sum(int(r["reserved"]) for r in rows) + reserved
        backorder = bool(rows[0]["allow_backorder"])
        if total_on_hand < 0 or total_reserved < 0 or (
                not backorder and total_reserved > total_on_hand):
            raise InvalidInput(
                f"stock of {sku} at {location_id} cannot change by on_hand {on_hand:+d}, "
                f"reserved {reserved:+d} (on hand {total_on_hand - on_hand}, "
                f"reserved {total_reserved - reserved})",
                field="quantity", sku=sku, location_id=location_id,
            )
        count = count or len(rows)
        have = {int(r["slice"]): (int(r["on_hand"]), int(r["reserved"])) for r in rows}
        if count < len(rows):
            await self.db.run(_DELETE_SLICES, sku, location_id, count)
        for slice_no, (hand, held) in enumerate(zip(spread(total_on_hand, count),
                                                    spread(total_reserved, count),
                                                    strict=True)):
            if slice_no not in have:
                await self.db.run(_INSERT_SLICE, level_id(sku, location_id, slice_no), sku,
                                  location_id, hand, held, backorder, slice_no)
            elif have[slice_no] != (hand, held):
                await self.db.run(_SET_SLICE, hand, held,
                                  level_id(sku, location_id, slice_no))

    async def set_slices(self, sku: str, location_id: str, count: int) -> None:
        """Cut a level into ``count`` slices (1: one row again), its units spread evenly;
        call inside a transaction."""
        if count < 1:
            raise InvalidInput("a level needs at least one slice", field="slices")
        self.sole.forget((sku,))
        await self._respread(sku, location_id, 0, 0, count)

    async def apply(self, changes: Iterable[tuple[str, str, int, int]]) -> None:
        """Apply ``(sku, location, on_hand_delta, reserved_delta)`` changes in lock order."""
        for sku, location_id, on_hand, reserved in sorted(changes, key=lambda c: (c[0], c[1])):
            if on_hand or reserved:
                await self._shift(sku, location_id, on_hand, reserved)

    async def set_on_hand(self, sku: str, location_id: str, counted: int) -> int:
        """Set on hand to a counted figure; returns the delta applied."""
        rows = await self.db.run(self._slices_locked, sku, location_id)
        if not rows:
            raise NotFound("stock level", level_id(sku, location_id))
        delta = counted - sum(int(r["on_hand"]) for r in rows)
        if delta < 0:
            self.hints.forget((sku,))
        if delta and len(rows) == 1:
            await self._shift(sku, location_id, delta, 0)
        elif delta:
            await self._respread(sku, location_id, delta, 0)
        return int(delta)

    # -- levels -------------------------------------------------------------------
    async def ensure_level(self, sku: str, location_id: str, allow_backorder: bool) -> bool:
        """Create the level row if missing; True if it was created."""
        if await self.db.run(_LEVEL_EXISTS, level_id(sku, location_id)):
            return False
        self.sole.forget((sku,))
        await self.db.run(_INSERT_LEVEL, level_id(sku, location_id), sku, location_id,
                          allow_backorder)
        return True

    async def set_backorder(self, sku: str, allow: bool) -> None:
        await self.db.run(_SET_BACKORDER, allow, sku)

    async def level(self, sku: str, location_id: str) -> StockLevel:
        r = await self.db.fetch_one(_LEVEL, sku, location_id)
        if r is None or not r["n"]:
            raise NotFound("stock level", level_id(sku, location_id))
        return StockLevel(sku=sku, location_id=location_id, on_hand=int(r["on_hand"]),
                          reserved=int(r["reserved"]))

    async def levels(self, skus: Sequence[str] | None = None,
                     location_id: str | None = None) -> list[StockLevel]:
        if skus is not None and not skus:
            return []
        clause, args = where(("sku IN ({})", list(skus) if skus is not None else None),
                             ("location_id = {}", location_id))
        rows = await self.db.run(_LEVELS + clause + _LEVELS_ORDER, *args)
        return [StockLevel(sku=r["sku"], location_id=r["location_id"],
                           on_hand=int(r["on_hand"]), reserved=int(r["reserved"]))
                for r in rows]

    async def available(self, skus: Sequence[str]) -> dict[str, int]:
        """Available units per SKU over all active locations (the same for every channel)."""
        if not skus:
            return {}
        rows = await self.db.run(_AVAILABLE.format(", ".join("{}" for _ in skus)), *skus)
        out = {sku: 0 for sku in skus}
        out.update({r["sku"]: int(r["available"]) for r in rows})
        self.hints.learn(out)
        return out

    # -- ledger -------------------------------------------------------------------
    async def record(self, movements: Sequence[Movement]) -> None:
        await self.db.run_together(self.recording(movements))

    @staticmethod
    def recording(movements: Sequence[Movement]) -> list[Statement]:
        """The statement that writes the movements' ledger rows, if there are any (to
        run with the change's other writes)."""
        if not movements:
            return []
        return [rows_statement(
            "stock_movements", _MOVEMENT_COLUMNS,
            [(m.id, m.sku, m.location_id, m.kind, m.on_hand_delta, m.reserved_delta,
              m.order_id, m.reason, m.actor, m.at) for m in movements])]

    async def movements(self, sku: str | None = None, order_id: str | None = None,
                        limit: int = 500, after: str | None = None) -> list[Movement]:
        clause, args = where(("sku = {}", sku), ("order_id = {}", order_id),
                             ("id > {}", after))
        rows = await self.db.run(_MOVEMENTS + clause + _MOVEMENTS_PAGE, *args, limit)
        return [Movement(**{k: r[k] for k in Movement.__struct_fields__}) for r in rows]

    async def ledger_balance(self) -> list[dict[str, int | str]]:
        """Rows where the level disagrees with the sum of its movements (should be none)."""
        rows = [{**r, "on_hand": int(r["on_hand"]), "reserved": int(r["reserved"])}
                for r in await self.db.fetch(_LEDGER_BALANCE)]
        return [r for r in rows if r["on_hand"] != r["ledger_on_hand"]
                or r["reserved"] != r["ledger_reserved"]]


def movement(sku: str, location_id: str, kind: str, on_hand: int, reserved: int, *,
             order_id: str | None = None, reason: str = "", actor: str = "",
             at: datetime | None = None) -> Movement:
    return Movement(id=new_id("mv"), sku=sku, location_id=location_id, kind=kind,
                    on_hand_delta=on_hand, reserved_delta=reserved, order_id=order_id,
                    reason=reason, actor=actor, at=at or utcnow())


def _take(level: dict[str, Any], wanted: int) -> int:
    """What a level can give towards ``wanted`` by its figures."""
    return wanted if level["allow_backorder"] else min(wanted, int(level["available"]))


def _merged(allocations: list[Allocation], location_id: str, quantity: int) -> list[Allocation]:
    """``allocations`` with ``quantity`` more at ``location_id`` (slices of one location
    make one allocation)."""
    for i, alloc in enumerate(allocations):
        if alloc.location_id == location_id:
            return [*allocations[:i], Allocation(location_id=location_id,
                                                 quantity=alloc.quantity + quantity),
                    *allocations[i + 1:]]
    return [*allocations, Allocation(location_id=location_id, quantity=quantity)]
