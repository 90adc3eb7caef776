"""Shared bits of the handlers: the engine, the caller, pagination limits."""

from __future__ import annotations

from typing import Any

from litestar import Request

from ordnung.api.idempotency import key_scope
from ordnung.core import Engine
from ordnung.core.domain.access import Principal
from ordnung.core.errors import InvalidInput

MAX_LIMIT = 200


def engine_of(request: Request[Any, Any, Any]) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


def caller(request: Request[Any, Any, Any]) -> Principal:
    user = request.scope.get("user")
    assert isinstance(user, Principal)
    return user


def idempotency_key(request: Request[Any, Any, Any]) -> str | None:
    """The ``Idempotency-Key`` for the engine, scoped like the HTTP layer's (the calling
    key, and a guest's cart token): two callers using the same key string never share
    (or see) a result."""
    raw = request.headers.get("idempotency-key", "").strip()
    return f"{key_scope(caller(request), dict(request.scope))}:{raw}" if raw else None


def check_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between 1 and {MAX_LIMIT}", field="limit")
    return limit
