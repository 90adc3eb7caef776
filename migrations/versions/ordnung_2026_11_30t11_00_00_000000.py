"""Stock levels in slices: a hot level's units spread over several rows.

A level is the rows of one (SKU, location), told apart by ``slice``; slice 0 is the row
every level always had (same id), and an unsliced level is that row alone. Readers add the
slices up. The unique key moves from (sku, location) to (sku, location, slice). SQLite
cannot drop a UNIQUE constraint, so there the table is rebuilt (same columns and CHECK,
plus ``slice``) and its rows copied.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ordnung.migrations.raw import run_statements

if TYPE_CHECKING:
    from ordnung.core.persistence.database import Database

ID = "2026-11-30T11:00:00:000000"
DESCRIPTION = "stock levels in slices: slice column, unique (sku, location, slice)"

_INDEX = ("CREATE UNIQUE INDEX stock_levels_sku_location_slice "
          "ON stock_levels (sku, location_id, slice)")

POSTGRES = [
    "ALTER TABLE stock_levels DROP CONSTRAINT stock_levels_sku_location",
    "ALTER TABLE stock_levels ADD COLUMN slice INTEGER NOT NULL DEFAULT 0",
    _INDEX,
]

SQLITE = [
    """CREATE TABLE stock_levels_sliced (
        id VARCHAR(140) PRIMARY KEY,
        sku VARCHAR(64) NOT NULL REFERENCES variants (sku),
        location_id VARCHAR(64) NOT NULL REFERENCES locations (id),
        on_hand BIGINT NOT NULL DEFAULT 0,
        reserved BIGINT NOT NULL DEFAULT 0,
        allow_backorder BOOLEAN NOT NULL DEFAULT FALSE,
        slice INTEGER NOT NULL DEFAULT 0,
        CONSTRAINT stock_never_oversold CHECK (
            on_hand >= 0 AND reserved >= 0 AND (allow_backorder OR reserved <= on_hand)
        )
    )""",
    "INSERT INTO stock_levels_sliced (id, sku, location_id, on_hand, reserved, "
    "allow_backorder, slice) SELECT id, sku, location_id, on_hand, reserved, "
    "allow_backorder, 0 FROM stock_levels",
    "DROP TABLE stock_levels",
    "ALTER TABLE stock_levels_sliced RENAME TO stock_levels",
    _INDEX,
]


async def apply(db: Database) -> None:
    """Run this migration's statements on ``db`` (inside the caller's transaction)."""
    await run_statements(db, POSTGRES if db.is_postgres else SQLITE)
