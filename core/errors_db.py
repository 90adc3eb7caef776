"""Recognising database errors the engine reacts to, on both databases."""

from __future__ import annotations

from ordnung.core.errors import DatabaseUnavailable


def is_unique_violation(exc: BaseException) -> bool:
    """True for a unique/primary-key violation from asyncpg or sqlite3."""
    name = type(exc).__name__
    if name == "UniqueViolationError":
        return True
    return name == "IntegrityError" and "UNIQUE" in str(exc).upper()


def is_check_violation(exc: BaseException) -> bool:
    name = type(exc).__name__
    if name == "CheckViolationError":
        return True
    return name == "IntegrityError" and "CHECK" in str(exc).upper()


#: asyncpg's errors for a connection that is gone, refused, or cannot be had now.
#: ``InternalClientError`` ("cannot switch to state ...") is what an idle pooled
#: connection raises once the server has sent its shutdown notice on it: dead too.
_CONNECTION_ERRORS = frozenset({
    "InternalClientError", "ConnectionDoesNotExistError", "PostgresConnectionError",
    "CannotConnectNowError", "ConnectionFailureError", "ClientCannotConnectError",
    "ConnectionRejectionError",
    "SQLServerRejectedEstablishmentOfSQLConnectionError", "TooManyConnectionsError",
    "AdminShutdownError", "CrashShutdownError", "QueryCanceledError",
})


def is_unavailable(exc: BaseException) -> bool:
    """True when a statement failed because the database could not be reached in time
    (not because of what it said): a lost or refused connection, a server shutting
    down, a timeout. Only meaningful for exceptions raised by a database call."""
    if isinstance(exc, (TimeoutError, OSError)):
        return True
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & _CONNECTION_ERRORS:
        return True
    if "OperationalError" in names and "database is locked" in str(exc):
        return True  # SQLite: another writer held the lock for the whole busy timeout
    return "InterfaceError" in names and "closed" in str(exc)


def unavailable(exc: BaseException) -> DatabaseUnavailable:
    """The engine's error for ``exc`` (an ``is_unavailable`` one), chained to it."""
    error = DatabaseUnavailable(
        f"the database is not available ({type(exc).__name__}); try again shortly")
    error.__cause__ = exc
    return error
