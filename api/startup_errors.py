"""One clear line for a database that cannot be opened at start, instead of a traceback.

A person starting ``ordnung serve`` with a mistyped database name, a role that does not
exist or a SQLite file in a folder that does not exist should read what to fix, naming
the setting, not a page of asyncpg or sqlite3 internals. The drivers' exceptions are
recognised here, at the command line's edge (the core stays free of vendor imports).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from urllib.parse import unquote, urlsplit

import asyncpg

SETTING = "ORDNUNG_DATABASE_URL"


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in seen:
        seen.append(current)
        if isinstance(current, BaseExceptionGroup):
            seen.extend(current.exceptions)
        current = current.__cause__ or current.__context__
    return seen


def sqlite_path(url: str) -> Path | None:
    parts = urlsplit(url)
    if parts.scheme != "sqlite":
        return None
    path = unquote(parts.netloc + parts.path)
    if url.startswith("sqlite:////"):  # sqlite:////abs/path.db
        return Path("/" + path.lstrip("/"))
    return Path(path.removeprefix("/"))  # sqlite:///relative/path.db


def describe_database_error(exc: BaseException, url: str, shown_url: str) -> str | None:
    """A one-line explanation naming the setting, or None if ``exc`` is something else."""
    where = f"{SETTING}={shown_url}"
    for err in _chain(exc):
        if isinstance(err, asyncpg.InvalidCatalogNameError):
            return f"{where}: {err} (create it, e.g. `createdb`, or fix the name)"
        if isinstance(err, asyncpg.InvalidAuthorizationSpecificationError
                      | asyncpg.InvalidPasswordError):
            return f"{where}: {err} (create the role, or fix the user or password)"
        if isinstance(err, sqlite3.OperationalError) and "unable to open" in str(err):
            path = sqlite_path(url)
            if path is not None and not path.absolute().parent.is_dir():
                return (f"{where}: the folder {path.absolute().parent} of the SQLite file "
                        "does not exist (create it, or choose another path)")
            return f"{where}: cannot open the SQLite file {path} ({err})"
        if isinstance(err, ConnectionRefusedError | TimeoutError) or (
                isinstance(err, OSError) and err.errno is not None):
            return f"{where}: cannot reach the database server ({err})"
    return None
