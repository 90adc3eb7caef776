"""Guarded saves that name an indexed column only when its value changed.

A column named in an UPDATE's ``SET`` has its entry in every index over it written again,
even when the value is the one already stored. SQLite copies each of those index pages
into its write-ahead log again, at a few microseconds a page: an update of a cart row
that names its three indexed columns unchanged writes three pages, one that leaves them
out writes one. PostgreSQL cannot make such an update HOT, so it adds an entry to every
index of the table. Carts and orders are saved many times with the same status,
customer and e-mail, so their saves name those columns only when the row as read held
other values.

The caller knows what the row held: it read the document at the version its save is
guarded by, and the indexed columns are written from that document. A save that does not
say what it read names every column, as before.
"""

from __future__ import annotations

from collections.abc import Sequence


class ChangedColumns:
    """The statements of one table's guarded save.

    ``indexed``: ``SET`` parts (``"status = {}"``, one placeholder each) that are
    written only when their value changed; ``always``: the parts every save writes;
    ``where``: the guard and what follows it. The statement for each combination of
    changed columns is built once."""

    def __init__(self, table: str, indexed: Sequence[str], always: str, where: str) -> None:
        self.table = table
        self.indexed = tuple(indexed)
        self.always = always
        self.where = where
        self._built: dict[tuple[bool, ...], str] = {}

    def update(self, stored: Sequence[object] | None, new: Sequence[object]
               ) -> tuple[str, list[object]]:
        """The ``UPDATE`` for a row whose indexed values were ``stored`` (None: not
        known) and become ``new``, and the values of the indexed parts it names; the
        values of ``always`` and ``where`` follow them, in that order."""
        if stored is None:
            changed = (True,) * len(self.indexed)
        else:
            changed = tuple(a != b for a, b in zip(stored, new, strict=True))
        sql = self._built.get(changed)
        if sql is None:
            parts = [part for part, named in zip(self.indexed, changed, strict=True) if named]
            sql = f"UPDATE {self.table} SET {', '.join([*parts, self.always])} {self.where}"
            self._built[changed] = sql
        return sql, [value for value, named in zip(new, changed, strict=True) if named]
