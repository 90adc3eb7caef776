"""Configuration mistakes print one clear line naming the setting, never a traceback.

Found: a PostgreSQL database or role that does not exist, a SQLite file in a missing
folder, malformed ``ORDNUNG_PLUGIN_SETTINGS`` and an array instead of an object all
ended in a traceback; a short ``ORDNUNG_ADMIN_KEY`` was refused only after the
migrations had run; ``ORDNUNG_REQUIRE_TAX=maybe`` was silently taken as true.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.databases import PG_ADMIN_URL


def serve(tmp_path: Path, database_url: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ORDNUNG_")}
    environ.update(env)
    return subprocess.run(
        [sys.executable, "-m", "ordnung.api.cli", "serve", "--port", "1",
         "--database-url", database_url],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=environ)


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ordnung serve: ")
    return lines[0]


def pg_url(user: str, database: str) -> str:
    server = PG_ADMIN_URL.split("@", 1)[1].rsplit("/", 1)[0]
    return f"postgresql://{user}@{server}/{database}"


def test_a_postgresql_database_that_does_not_exist(tmp_path: Path) -> None:
    name = f"ordnung_missing_{uuid.uuid4().hex[:8]}"
    line = one_line(serve(tmp_path, pg_url("postgres", name)))
    assert "ORDNUNG_DATABASE_URL" in line and f'database "{name}" does not exist' in line


def test_a_postgresql_role_that_does_not_exist(tmp_path: Path) -> None:
    role = f"nobody_{uuid.uuid4().hex[:8]}"
    line = one_line(serve(tmp_path, pg_url(role, "postgres")))
    assert "ORDNUNG_DATABASE_URL" in line and f'role "{role}" does not exist' in line


def test_a_sqlite_file_in_a_missing_folder(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such" / "folder"
    line = one_line(serve(tmp_path, f"sqlite:///{missing / 'shop.db'}"))
    assert "ORDNUNG_DATABASE_URL" in line and f"the folder {missing} " in line
    assert not missing.exists()


@pytest.mark.parametrize(("value", "expected"), [
    ("{not json", "not valid JSON"),
    ('[{"free_gift": {}}]', "expected a JSON object, got a JSON list"),
    ('{"free_gift": "x"}', "Expected `object`, got `str`"),
])
def test_malformed_plugin_settings(tmp_path: Path, value: str, expected: str) -> None:
    line = one_line(serve(tmp_path, f"sqlite:///{tmp_path / 'shop.db'}",
                          ORDNUNG_PLUGIN_SETTINGS=value))
    assert "ORDNUNG_PLUGIN_SETTINGS" in line and expected in line
    assert not (tmp_path / "shop.db").exists()  # refused before the database was touched


def test_a_short_admin_key_is_refused_before_migrations(tmp_path: Path) -> None:
    line = one_line(serve(tmp_path, f"sqlite:///{tmp_path / 'shop.db'}",
                          ORDNUNG_ADMIN_KEY="too-short"))
    assert "ORDNUNG_ADMIN_KEY" in line and "at least 16 characters" in line
    assert not (tmp_path / "shop.db").exists()


@pytest.mark.parametrize("value", ["maybe", "ture", "2"])
def test_a_switch_that_is_neither_true_nor_false(tmp_path: Path, value: str) -> None:
    line = one_line(serve(tmp_path, f"sqlite:///{tmp_path / 'shop.db'}",
                          ORDNUNG_REQUIRE_TAX=value))
    assert "ORDNUNG_REQUIRE_TAX" in line and repr(value) in line


@pytest.mark.parametrize(("variable", "value"), [("ORDNUNG_MAX_ITEMS", "lots"),
                                                 ("ORDNUNG_MAX_LINES_PER_ORDER", "0")])
def test_an_input_limit_that_is_not_a_positive_whole_number(tmp_path: Path, variable: str,
                                                             value: str) -> None:
    line = one_line(serve(tmp_path, f"sqlite:///{tmp_path / 'shop.db'}", **{variable: value}))
    assert variable in line and value in line
    assert not (tmp_path / "shop.db").exists()


@pytest.mark.parametrize(("name", "value", "expected"), [
    ("ORDNUNG_DB_STATEMENT_TIMEOUT_S", "soon", "expected a number, got 'soon'"),
    ("ORDNUNG_DB_CONNECT_TIMEOUT_S", "-1", "Expected `float` >= 0"),
    ("ORDNUNG_DB_CLOCK_SYNC_S", "0", "Expected `float` > 0"),
])
def test_a_database_timeout_that_cannot_work(tmp_path: Path, name: str, value: str,
                                            expected: str) -> None:
    line = one_line(serve(tmp_path, f"sqlite:///{tmp_path / 'shop.db'}", **{name: value}))
    assert name in line and expected in line, line
