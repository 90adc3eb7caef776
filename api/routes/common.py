"""Shared bits of the handlers: the engine, the caller, pagination limits."""

from __future__ import annotations

from typing import Any, TypeVar

from litestar import Request, Response
from litestar.datastructures import ResponseHeader

from ordnung.api.idempotency import key_scope
from ordnung.core import Engine
from ordnung.core.domain.access import Principal
from ordnung.core.errors import InvalidInput

MAX_LIMIT = 200

T = TypeVar("T")

#: ``response_headers=`` of a route that creates something (documents ``created``'s header)
LOCATION = [ResponseHeader(name="Location", documentation_only=True,
                           description="The URL of the created resource")]


def created(data: T, location: str) -> Response[T]:
    """A 201 answer with ``Location``: where the new resource is (a client need not build
    the URL from the body)."""
    return Response(data, status_code=201, headers={"Location": location})


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
