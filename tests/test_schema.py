"""The schema the code expects is the schema the migrations build, on both databases.

The table classes, composite keys and indexes of ``ordnung.core.persistence.tables``
are compared with what an empty database holds once migrated, read back through the
database's own catalogue: a column, type, nullability, primary key or index that
differs fails here, whichever side drifted.
"""

from __future__ import annotations

from ordnung.core.persistence import schema
from ordnung.core.persistence.database import Database
from ordnung.core.persistence.tables import INDEXES, Index


async def test_the_migrated_schema_is_the_schema_the_code_expects(database_url: str) -> None:
    async with Database(database_url).session() as db:
        await db.migrate()
        have = await schema.actual(db)
    assert schema.differences(schema.expected(), have) == []
    # the comparison sees every table, column and index
    assert "plugin_records" in have.tables and "webhook_attempts" in have.tables
    assert len(have.indexes) == len(INDEXES)


async def test_any_drift_is_reported(database_url: str) -> None:
    async with Database(database_url).session() as db:
        await db.migrate()
        have = await schema.actual(db)
    want = schema.expected()
    carts = want.tables["carts"]
    drifted = schema.Schema(
        {**want.tables, "carts": carts._replace(
            columns={**carts.columns, "token_hash": schema.ColumnShape("varchar(64)", False)},
            primary_key=("id", "channel"))},
        {**want.indexes, "carts_status": Index("carts", ("status",))})
    assert schema.differences(drifted, have) == [
        "column carts.token_hash: expected ColumnShape(type='varchar(64)', nullable=False), "
        "database has ColumnShape(type='varchar(64)', nullable=True)",
        "primary key of carts: expected ('id', 'channel'), database has ('id',)",
        "index carts_status: expected Index(table='carts', columns=('status',), unique=False, "
        "where=''), database has None"]
