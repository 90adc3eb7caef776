"""A database's schema read back in one normalised form, to compare with what the code
expects (``ordnung.core.persistence.tables``).

Both dialects are reduced to the same shape: per table, each column's type (``text``,
``varchar(64)``, ``bigint``, ``integer``, ``boolean``, ``timestamptz``) and whether it
may be NULL, the primary key's columns in order, and every other index by name with
its table, columns, uniqueness and the condition of a partial index. SQLite names the
index of a UNIQUE constraint itself (``sqlite_autoindex_...``); PostgreSQL after the
constraint.
"""

from __future__ import annotations

import re
from typing import Any, NamedTuple

from piccolo.columns import BigInt, Boolean, Column, Integer, Text, Timestamptz, Varchar
from piccolo.table import Table

from ordnung.core.persistence.database import Database
from ordnung.core.persistence.tables import ALL_TABLES, COMPOSITE_KEYS, INDEXES, Index

#: the migration runner's own bookkeeping, not part of the application's schema
BOOKKEEPING = ("migration",)


class ColumnShape(NamedTuple):
    type: str
    nullable: bool


class TableShape(NamedTuple):
    columns: dict[str, ColumnShape]
    primary_key: tuple[str, ...]


class Schema(NamedTuple):
    tables: dict[str, TableShape]
    indexes: dict[str, Index]


_TYPES: tuple[tuple[type[Column], str], ...] = (
    (Timestamptz, "timestamptz"), (BigInt, "bigint"), (Integer, "integer"),
    (Boolean, "boolean"), (Varchar, "varchar"), (Text, "text"))

_PG_TYPES = {"character varying": "varchar", "text": "text", "bigint": "bigint",
             "integer": "integer", "boolean": "boolean",
             "timestamp with time zone": "timestamptz",
             "timestamp without time zone": "timestamp"}

_PG_COLUMNS = (
    "SELECT table_name, column_name, data_type, character_maximum_length AS length, "
    "is_nullable FROM information_schema.columns WHERE table_schema = current_schema()")
_PG_PRIMARY_KEYS = (
    "SELECT t.relname AS table_name, a.attname AS column_name, k.n AS position "
    "FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid "
    "JOIN pg_namespace s ON s.oid = t.relnamespace "
    "JOIN unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n) ON TRUE "
    "JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = k.attnum "
    "WHERE i.indisprimary AND s.nspname = current_schema() ORDER BY t.relname, k.n")
_PG_INDEXES = (
    "SELECT t.relname AS table_name, x.relname AS index_name, i.indisunique AS is_unique, "
    "COALESCE(pg_get_expr(i.indpred, i.indrelid), '') AS predicate, "
    "ARRAY(SELECT a.attname FROM unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, n) "
    "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
    "ORDER BY k.n) AS columns "
    "FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid "
    "JOIN pg_class x ON x.oid = i.indexrelid JOIN pg_namespace s ON s.oid = t.relnamespace "
    "WHERE NOT i.indisprimary AND s.nspname = current_schema()")

_SQLITE_TABLES = ("SELECT name FROM sqlite_master WHERE type = 'table' "
                  "AND name NOT LIKE 'sqlite_%' ORDER BY name")
_SQLITE_COLUMNS = 'SELECT name, type, "notnull", pk FROM pragma_table_info({})'
_SQLITE_INDEXES = ('SELECT name, "unique", origin, partial FROM pragma_index_list({}) '
                   "WHERE origin <> 'pk'")
_SQLITE_INDEX_COLUMNS = "SELECT name FROM pragma_index_info({}) ORDER BY seqno"
_SQLITE_INDEX_SQL = "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = {}"


def condition(sql: str) -> str:
    """A partial index's condition, written the same way whatever the dialect printed:
    lower case, no parentheses, single spaces."""
    return " ".join(sql.replace("(", " ").replace(")", " ").lower().split())


def _type_of(column: Column) -> str:
    for kind, name in _TYPES:
        if isinstance(column, kind):
            return f"varchar({column.length})" if isinstance(column, Varchar) else name
    raise TypeError(f"no normalised type for {type(column).__name__}")


def _shape_of(table: type[Table]) -> TableShape:
    columns = {c._meta.name: ColumnShape(_type_of(c),
                                         bool(c._meta.null) and not c._meta.primary_key)
               for c in table._meta.columns}
    name = table._meta.tablename
    key = COMPOSITE_KEYS.get(name) or (table._meta.primary_key._meta.name,)
    return TableShape(columns, key)


def expected() -> Schema:
    """The schema the code expects: the table classes, composite keys and indexes."""
    return Schema({t._meta.tablename: _shape_of(t) for t in ALL_TABLES},
                  {name: index._replace(where=condition(index.where))
                   for name, index in INDEXES.items()})


async def actual(db: Database) -> Schema:
    """The schema of ``db`` as it is (the migration runner's bookkeeping left out)."""
    schema = await (_postgres(db) if db.is_postgres else _sqlite(db))
    for table in BOOKKEEPING:
        schema.tables.pop(table, None)
    return Schema(schema.tables, {name: index for name, index in schema.indexes.items()
                                  if index.table not in BOOKKEEPING})


async def _postgres(db: Database) -> Schema:
    columns: dict[str, dict[str, ColumnShape]] = {}
    for r in await db.run(_PG_COLUMNS):
        kind = _PG_TYPES.get(r["data_type"], r["data_type"])
        if kind == "varchar":
            kind = f"varchar({r['length']})"
        columns.setdefault(r["table_name"], {})[r["column_name"]] = ColumnShape(
            kind, r["is_nullable"] == "YES")
    keys: dict[str, list[str]] = {}
    for r in await db.run(_PG_PRIMARY_KEYS):
        keys.setdefault(r["table_name"], []).append(r["column_name"])
    indexes = {r["index_name"]: Index(r["table_name"], tuple(r["columns"]),
                                      bool(r["is_unique"]), condition(r["predicate"]))
               for r in await db.run(_PG_INDEXES)}
    return Schema({t: TableShape(c, tuple(keys.get(t, ()))) for t, c in columns.items()},
                  indexes)


async def _sqlite(db: Database) -> Schema:
    tables: dict[str, TableShape] = {}
    indexes: dict[str, Index] = {}
    for (table,) in ((r["name"],) for r in await db.run(_SQLITE_TABLES)):
        rows: list[Any] = await db.run(_SQLITE_COLUMNS, table)
        columns = {r["name"]: ColumnShape(" ".join(r["type"].lower().split()),
                                      not r["notnull"] and not r["pk"]) for r in rows}
        key = tuple(r["name"] for r in sorted(rows, key=lambda r: r["pk"]) if r["pk"])
        tables[table] = TableShape(columns, key)
        for index in await db.run(_SQLITE_INDEXES, table):
            names = tuple(r["name"] for r in await db.run(_SQLITE_INDEX_COLUMNS,
                                                           index["name"]))
            where = ""
            if index["partial"]:
                sql = (await db.run(_SQLITE_INDEX_SQL, index["name"]))[0]["sql"]
                where = condition(re.split(r"\bWHERE\b", sql, maxsplit=1,
                                           flags=re.IGNORECASE)[1])
            indexes[index["name"]] = Index(table, names, bool(index["unique"]), where)
    return Schema(tables, indexes)


def differences(want: Schema, have: Schema) -> list[str]:
    """Every way ``have`` differs from ``want``, one line each (empty: they agree)."""
    found: list[str] = []
    for table in sorted(set(want.tables) | set(have.tables)):
        if table not in have.tables:
            found.append(f"table {table}: expected, not in the database")
            continue
        if table not in want.tables:
            found.append(f"table {table}: in the database, no table class declares it")
            continue
        expected_shape, shape = want.tables[table], have.tables[table]
        for column in sorted(set(expected_shape.columns) | set(shape.columns)):
            wanted, got = expected_shape.columns.get(column), shape.columns.get(column)
            if wanted != got:
                found.append(f"column {table}.{column}: expected {wanted}, database has {got}")
        if expected_shape.primary_key != shape.primary_key:
            found.append(f"primary key of {table}: expected {expected_shape.primary_key}, "
                         f"database has {shape.primary_key}")
    # SQLite names the index of a UNIQUE constraint itself: those match by what they index
    unnamed = [i for n, i in have.indexes.items() if n.startswith("sqlite_autoindex_")]
    for name in sorted(set(want.indexes) | set(have.indexes)):
        if name.startswith("sqlite_autoindex_"):
            continue
        wanted_index, got_index = want.indexes.get(name), have.indexes.get(name)
        if got_index is None and wanted_index is not None and wanted_index in unnamed:
            unnamed.remove(wanted_index)
            continue
        if wanted_index != got_index:
            found.append(f"index {name}: expected {wanted_index}, database has {got_index}")
    found += [f"unique constraint {i}: in the database, not expected" for i in unnamed]
    return found
