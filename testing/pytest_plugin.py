"""The ``ordnung`` pytest plugin (entry point ``pytest11: ordnung``).

Installed with ordnung, it is active in every pytest run. It adds

* the option ``--ordnung-database-url URL`` (or ``ORDNUNG_KIT_DATABASE_URL``): run the
  conformance suites on that database (PostgreSQL: emptied before each test)
  instead of a temporary SQLite file;
* the fixture ``ordnung_database_url``: the database one conformance test uses;
* the fixture ``ordnung_shop_url``: the same, for your own tests with ``open_shop``.

Nothing here touches a test that does not ask for these fixtures.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

OPTION = "--ordnung-database-url"
ENV = "ORDNUNG_KIT_DATABASE_URL"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ordnung", "ordnung plugin conformance kit")
    group.addoption(OPTION, action="store", default=None, metavar="URL",
                    help="database for ordnung conformance suites (default: a temporary "
                         f"SQLite file per test; env {ENV})")


@pytest.fixture
def ordnung_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A clean database for one conformance test."""
    url: str | None = request.config.getoption(OPTION) or os.environ.get(ENV)
    if not url:
        return f"sqlite:///{tmp_path / 'ordnung-kit.db'}"
    from ordnung.testing.shop import reset_database, run

    run(reset_database(url))
    return url


@pytest.fixture
def ordnung_shop_url(ordnung_database_url: str) -> str:
    """The database for ``open_shop(database_url=...)`` in your own tests."""
    return ordnung_database_url
