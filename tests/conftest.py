"""Test fixtures: a clean database per test, on SQLite or PostgreSQL.

``ORDNUNG_TEST_DB=sqlite`` (default) gives every test its own database file.
``ORDNUNG_TEST_DB=postgres`` uses the database named by ``ORDNUNG_TEST_PG_URL``
(default: a database this session creates and drops on the local server) and
empties every table before each test. Tests never load entry points: they
register the plugins they need.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from ordnung.core import Engine, EngineConfig
from ordnung.testing.shop import reset_database
from tests.databases import fresh_pg_database
from tests.support import builtin_plugins, seed_shop

TEST_DB = os.environ.get("ORDNUNG_TEST_DB", "sqlite")


def pytest_report_header() -> str:
    return f"ordnung test database: {TEST_DB}"


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """A PostgreSQL database for this test session (created here unless CI gave one)."""
    given = os.environ.get("ORDNUNG_TEST_PG_URL")
    if given:
        yield given
        return
    with fresh_pg_database("ordnung_test") as url:
        yield url


@pytest.fixture
def database_url(tmp_path: Path, request: pytest.FixtureRequest) -> str:
    """A clean database for one test."""
    if TEST_DB == "postgres":
        url: str = request.getfixturevalue("pg_url")
        asyncio.run(reset_database(url))
        return url
    return f"sqlite:///{tmp_path / 'ordnung.db'}"


@pytest.fixture
async def make_engine(database_url: str) -> AsyncIterator[Any]:
    """Build started engines on the test's database; all are stopped at the end."""
    engines: list[Engine] = []

    async def factory(plugins: Any = None, **config: Any) -> Engine:
        settings = config.pop("plugin_settings", {})
        engine = Engine(
            EngineConfig(database_url=database_url, load_entry_points=False, **config),
            plugins=builtin_plugins(settings) if plugins is None else plugins)
        await engine.start()
        engines.append(engine)
        return engine

    yield factory
    for engine in engines:
        await engine.stop()


@pytest.fixture
async def engine(make_engine: Any) -> Engine:
    """An engine with the built-in plugins and the demo shop seeded."""
    eng: Engine = await make_engine()
    await seed_shop(eng)
    return eng
