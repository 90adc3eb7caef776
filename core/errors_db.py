"""Recognising database errors the engine reacts to, on both databases."""

from __future__ import annotations


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
