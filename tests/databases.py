"""Throw-away PostgreSQL databases for the test session and the fuzz runner.

``ORDNUNG_TEST_PG_ADMIN_URL`` names a database on the server that the user may
create and drop databases from (default: the local server's ``postgres``).
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import asyncpg

PG_ADMIN_URL = os.environ.get("ORDNUNG_TEST_PG_ADMIN_URL",
                              "postgresql://postgres@127.0.0.1:5432/postgres")


async def pg_admin(sql: str) -> None:
    """Run one statement on the admin database (CREATE/DROP DATABASE)."""
    conn = await asyncpg.connect(PG_ADMIN_URL)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextmanager
def fresh_pg_database(prefix: str) -> Iterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped afterwards."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    asyncio.run(pg_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        asyncio.run(pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
