"""Levels that are their SKU's only one: reserved with the placement's writes, in one statement.

A placement's reservation decides where its units come from (the first level with room,
in location priority order), and the order's rows (its allocations, its ledger
movements) name that location. So the reservation used to be a statement of its own,
run before the order's writes could be built: on PostgreSQL ``BEGIN``, the reservation,
the writes, ``COMMIT`` — four round trips, with the reserved rows locked from the first
to the last, while the worker also serves its other requests. A hot SKU's row (the free
gift, a flash sale) is then held for all of that time by every order that takes it.

Most SKUs are stocked at one location only, and for them there is nothing to decide: the
units come from that level or from nowhere. A worker learns which levels are their SKU's
only one from the reservations it runs (the reserving statement says so), and when every
line of a placement is on such a level, the placement reserves with its writes: one
statement (``reserving``) locks the levels in the order every stock change keeps,
reserves, and refuses itself whole, through a division by zero, unless every level took
its units and is still its SKU's only active, unsliced one. PostgreSQL then runs the
placement as that one statement, without ``BEGIN`` and ``COMMIT``, and the rows are
locked only while it runs. A refusal writes nothing: the placement forgets those levels
and runs as before (a shortage is reported as before, a gift out of stock is skipped as
before), and its next reservation of them teaches the worker again.

What is learned is a guess, never the answer: the statement checks it. A new location, a
level cut into slices or a location closed makes the guess wrong once, and costs that
placement one refused statement.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from ordnung.core.persistence.database import Heading

#: SKUs a worker keeps a level for (all are dropped when it has more)
MAX_SKUS = 10_000

#: the row of ``stock_levels`` at hand is its SKU's only one at an active location
_ALONE = ("NOT EXISTS (SELECT 1 FROM stock_levels o JOIN locations ol ON ol.id = "
          "o.location_id WHERE o.sku = stock_levels.sku AND o.id <> stock_levels.id "
          "AND ol.active)")

#: a column the reserving statement adds on PostgreSQL: whether the level it reserved is
#: its SKU's only active, unsliced one
SOLE_COLUMN = f"stock_levels.slice = 0 AND {_ALONE} AS sole, stock_levels.id AS level_id"

#: the levels of the placement, locked in (SKU, location) order as every stock change
#: locks them (so it cannot deadlock with one), then each reserved by its SKU's total if
#: it has room, is unsliced, at an active location and still its SKU's only active level;
#: ``{ids}`` and ``{values}`` take one placeholder (pair) per level
_RESERVING = (
    "sole_locked AS MATERIALIZED (SELECT id FROM stock_levels WHERE id IN ({ids}) "
    'ORDER BY sku COLLATE "C", location_id COLLATE "C" FOR UPDATE), '
    "sole_reserved AS (UPDATE stock_levels SET reserved = stock_levels.reserved + w.qty "
    "FROM (VALUES {values}) AS w (id, qty) CROSS JOIN (SELECT COUNT(*) AS n FROM "
    "sole_locked) AS gate "
    "WHERE stock_levels.id = w.id AND stock_levels.slice = 0 "
    "AND (stock_levels.allow_backorder OR stock_levels.on_hand - stock_levels.reserved >= w.qty) "
    "AND EXISTS (SELECT 1 FROM locations l WHERE l.id = stock_levels.location_id AND l.active) "
    f"AND {_ALONE} "
    "RETURNING stock_levels.sku, stock_levels.on_hand - stock_levels.reserved AS available)")
_VALUE = "(CAST({} AS VARCHAR(200)), CAST({} AS BIGINT))"
_RESERVED = "sole_reserved"


class SoleLevels:
    """Per worker: SKU → (its only level's row id, that level's location)."""

    def __init__(self) -> None:
        self._levels: dict[str, tuple[str, str]] = {}

    def learn(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """What reserving statements returned (rows with ``SOLE_COLUMN``)."""
        for row in rows:
            if row["sole"]:
                if len(self._levels) >= MAX_SKUS:
                    self._levels.clear()
                self._levels[row["sku"]] = (row["level_id"], row["location_id"])
            else:
                self._levels.pop(row["sku"], None)

    def forget(self, skus: Iterable[str]) -> None:
        for sku in skus:
            self._levels.pop(sku, None)

    def of(self, skus: Iterable[str]) -> dict[str, tuple[str, str]] | None:
        """Each SKU's (level, location), if every one has a level known to be its only."""
        found: dict[str, tuple[str, str]] = {}
        for sku in skus:
            level = self._levels.get(sku)
            if level is None:
                return None
            found[sku] = level
        return found


def reserving(totals: Mapping[str, int], levels: Mapping[str, tuple[str, str]]
              ) -> Heading:
    """What reserves ``totals`` (units per SKU) on ``levels`` (``SoleLevels.of``) at the
    head of the placement's writes (``Database.run_headed``): the statement stands only
    if every level took its units, and returns the units then available per SKU, as
    JSON pairs."""
    skus: Sequence[str] = sorted(totals)
    sql = _RESERVING.format(ids=", ".join("{}" for _ in skus),
                            values=", ".join(_VALUE for _ in skus))
    ids = [levels[sku][0] for sku in skus]
    return Heading(
        sql=sql, args=[*ids, *(v for sku in skus for v in (levels[sku][0], totals[sku]))],
        condition=f"(SELECT COUNT(*) FROM {_RESERVED}) = {len(skus)}",
        returns=f"(SELECT json_agg(json_build_array(sku, available)) FROM {_RESERVED})")
