"""Every query lives in a store under ``core/persistence/`` (CONTRIBUTING, "The database
style"): services, the API and the plugins ask a store, and never hand SQL to the
database themselves. The check reads the source, so a new inline query fails here before
it is ever run.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).parents[1]
#: where statements may be written: the stores, the migrations
SQL_HOMES = (ROOT / "core" / "persistence", ROOT / "migrations")
CHECKED = (ROOT / "core", ROOT / "api", ROOT / "plugins", ROOT / "plugin")
#: the calls of ``Database`` that run a statement
RUNS = frozenset({"run", "fetch", "fetch_one", "insert_rows"})
STATEMENT = re.compile(r"^\s*(SELECT\s|INSERT\s+INTO\s|UPDATE\s+\w+\s+SET\s|DELETE\s+FROM\s)")


def checked_modules() -> Iterator[Path]:
    for folder in CHECKED:
        for path in sorted(folder.rglob("*.py")):
            if not any(path.is_relative_to(home) for home in SQL_HOMES):
                yield path


def names_the_database(node: ast.expr) -> bool:
    """``db``, ``self.db``, ``self.rt.db``, ``engine.db``...: a ``Database``, by name."""
    if isinstance(node, ast.Name):
        return node.id == "db"
    return isinstance(node, ast.Attribute) and node.attr == "db"


def offences(source: str, where: str) -> Iterator[str]:
    for node in ast.walk(ast.parse(source)):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in RUNS and names_the_database(node.func.value)):
            yield f"{where}:{node.lineno}: runs a statement on the database itself"
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and STATEMENT.match(node.value)):
            yield f"{where}:{node.lineno}: SQL text {node.value[:40]!r}"


def test_statements_are_written_only_in_stores() -> None:
    found = [offence for path in checked_modules()
             for offence in offences(path.read_text(encoding="utf-8"),
                                     str(path.relative_to(ROOT)))]
    assert not found, "move these into a store under core/persistence/:\n" + "\n".join(found)


def test_the_check_sees_inline_sql() -> None:
    """The check itself: it finds a query run straight on the database, and SQL text."""
    code = ("async def f(self):\n"
            "    await self.rt.db.fetch('SELECT pg_advisory_xact_lock(1)')\n"
            "    sql = f\"UPDATE outbox SET broker_at = {now} WHERE id = 1\"\n"
            "    await self.store.fetch(sql)\n")
    assert sorted(line.split(":")[1] for line in offences(code, "sample")) == ["2", "2", "3"]
