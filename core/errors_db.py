"""Recognising database errors the engine reacts to, on both databases."""

from __future__ import annotations

from typing import Any

from ordnung.core.errors import Conflict, DatabaseUnavailable


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


#: SQLSTATEs of a transaction PostgreSQL aborted so that a concurrent one could go on:
#: nothing it did is kept, and the same work run again succeeds. SQLite has no such
#: error: its write transactions take the one write lock up front (``BEGIN IMMEDIATE``)
#: and never wait for another lock before they commit, so it cannot deadlock; a writer
#: that waited too long for that lock is ``is_unavailable`` ("database is locked").
TRANSIENT_SQLSTATES = {"40001": "serialization_failure", "40P01": "deadlock_detected"}


def transient_sqlstate(exc: BaseException) -> str | None:
    """The SQLSTATE if ``exc`` is asyncpg's ``SerializationError`` or
    ``DeadlockDetectedError`` (the transaction lost to a concurrent one), else None."""
    sqlstate: Any = getattr(exc, "sqlstate", None)
    return sqlstate if sqlstate in TRANSIENT_SQLSTATES else None


def is_transient(exc: BaseException) -> bool:
    return transient_sqlstate(exc) is not None


class TransientConflict(Conflict):
    """The database aborted the transaction in favour of a concurrent one (a deadlock
    victim, a serialization failure). Nothing of it was kept; the engine runs the whole
    unit of work again (``ordnung.core.persistence.retrying``), and raises this only when
    every try lost: the client may send the request again after ``retry_after`` seconds.
    A ``conflict`` to clients, like a concurrent change that outlasted its retries."""

    def __init__(self, sqlstate: str, detail: str = "") -> None:
        super().__init__(detail or "the change collided with concurrent changes to the same "
                         "records and was not made; send the request again", retry=True)
        self.sqlstate = sqlstate
        self.retry_after = 1


def transient(exc: BaseException) -> TransientConflict:
    """The engine's error for ``exc`` (an ``is_transient`` one), chained to it."""
    error = TransientConflict(transient_sqlstate(exc) or "40001")
    error.__cause__ = exc
    return error
