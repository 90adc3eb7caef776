"""A guarded save names an indexed column only when its value changed, and still leaves
the row exactly as a save naming every column would (``...persistence.changed_columns``)."""

from __future__ import annotations

import sqlite3
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from ordnung.core.persistence.changed_columns import ChangedColumns

SAVES = ChangedColumns("rows", ("status = {}", "owner = {}", "hour = {}"),
                       "data = {}, version = {}", "WHERE id = {} AND version = {}")
INDEXED = st.tuples(st.sampled_from(["open", "placed"]),
                    st.one_of(st.none(), st.sampled_from(["cus_1", "cus_2"])),
                    st.integers(0, 3))


def table(row: tuple[Any, ...]) -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE rows (id TEXT PRIMARY KEY, status TEXT, owner TEXT, "
               "hour INTEGER, data TEXT, version INTEGER)")
    db.execute("CREATE INDEX rows_status ON rows (status, hour)")
    db.execute("INSERT INTO rows VALUES ('r', ?, ?, ?, 'old', 1)", row)
    return db


def save(db: sqlite3.Connection, stored: Any, new: tuple[Any, ...], version: int) -> int:
    sql, named = SAVES.update(stored, new)
    return db.execute(sql.replace("{}", "?"), [*named, "new", version + 1, "r",
                                              version]).rowcount


@given(INDEXED, INDEXED)
def test_a_save_names_the_changed_columns_and_writes_the_new_row(
        stored: tuple[Any, ...], new: tuple[Any, ...]) -> None:
    sql, named = SAVES.update(stored, new)
    for column, before, after in zip(("status", "owner", "hour"), stored, new, strict=True):
        assert (f"{column} = {{}}" in sql) == (before != after)
    assert named == [a for b, a in zip(stored, new, strict=True) if a != b]

    db = table(stored)
    assert save(db, stored, new, 1) == 1
    assert db.execute("SELECT status, owner, hour, data, version FROM rows").fetchone() \
        == (*new, "new", 2)


@given(INDEXED, INDEXED)
def test_a_save_that_does_not_know_the_row_names_every_column(
        stored: tuple[Any, ...], new: tuple[Any, ...]) -> None:
    db = table(stored)
    assert save(db, None, new, 1) == 1
    assert db.execute("SELECT status, owner, hour FROM rows").fetchone() == new
    assert SAVES.update(None, new)[1] == list(new)


def test_the_guard_still_refuses_a_row_saved_since_it_was_read() -> None:
    row = ("open", None, 1)
    db = table(row)
    assert save(db, row, ("placed", None, 1), 0) == 0
    assert db.execute("SELECT status, data, version FROM rows").fetchone() == ("open", "old", 1)
