"""RFC 9457 problem details: one stable ``type`` per kind of error.

The type is a URI under ``https://ordnung.dev/problems/``; its last segment is
the engine error's ``type`` (``out-of-stock``, ``illegal-transition`` ...), so
clients can switch on it without parsing prose.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
import structlog
from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.openapi.spec import Operation
from litestar.plugins import ReceiveRoutePlugin
from litestar.routes import BaseRoute, HTTPRoute

from ordnung.core.errors import DatabaseUnavailable, OrdnungError, RateLimited
from ordnung.core.errors_db import TransientConflict, is_unavailable
from ordnung.core.persistence.sqlite_engine import disk_full

BASE = "https://ordnung.dev/problems/"
MEDIA_TYPE = "application/problem+json"
TITLES = {
    "validation": "The request is not valid",
    "not-found": "Not found",
    "forbidden": "Forbidden",
    "unauthorized": "Missing or invalid API key",
    "conflict": "Conflict with the current state",
    "illegal-transition": "Not allowed in the current state",
    "guard-veto": "A plugin vetoed the change",
    "out-of-stock": "Out of stock",
    "not-for-sale": "Not sold on its own",
    "payment-declined": "Payment declined",
    "invariant-violation": "The change would break an invariant",
    "tax-unavailable": "Tax cannot be computed",
    "idempotency-mismatch": "Idempotency key reused with another request",
    "idempotency-interrupted": "An earlier request with this idempotency key was cut off",
    "request-too-large": "The request body is too large",
    "request-timeout": "The request body did not arrive in time",
    "currency-mismatch": "Currencies do not match",
    "currency-not-sold": "The channel does not sell in this currency",
    "plugin-error": "A plugin failed",
    "invalid-credentials": "Wrong or expired credentials",
    "email-not-verified": "The e-mail address is not verified",
    "rate-limited": "Too many requests",
    "lifecycle-definition": "Lifecycle definition error",
    "database-unavailable": "The database is not available",
    "internal": "Internal error",
    "storage-full": "The database's disk is full",
    "server-busy": "The server is busy",
}
#: seconds a client is told to wait when the database's disk is full
STORAGE_FULL_RETRY_AFTER = 5

log = structlog.get_logger("ordnung.api")


def problem(kind: str, status: int, detail: str, instance: str = "",
            **extra: Any) -> Response[dict[str, Any]]:
    body = {"type": BASE + kind, "title": TITLES.get(kind, kind), "status": status,
            "detail": detail, **({"instance": instance} if instance else {}), **extra}
    return Response(content=body, status_code=status, media_type=MEDIA_TYPE)


class Facts(msgspec.Struct, frozen=True):
    """What an error tells a client, whatever the adapter: the problem ``kind`` (the last
    segment of its type URI), the REST status, the detail and the kind's own facts."""

    kind: str
    status: int
    detail: str
    extra: dict[str, Any]

    @property
    def type_uri(self) -> str:
        return BASE + self.kind


def facts_of(exc: BaseException) -> Facts | None:
    """The one mapping of errors to problems, used by REST (the problem details below)
    and by GraphQL (an error's ``extensions``): an engine error, or the authentication
    and permission errors of ``api/auth.py``. ``None`` for anything else (a bug)."""
    if isinstance(exc, OrdnungError):
        extra = {k: v for k, v in exc.extra.items() if k not in ("type", "detail", "title")}
        return Facts(exc.type, exc.status, exc.detail, extra)
    if isinstance(exc, NotAuthorizedException):
        return Facts("unauthorized", 401, exc.detail, {})
    if isinstance(exc, PermissionDeniedException):
        return Facts("forbidden", 403, exc.detail, {})
    return None


def handle_ordnung_error(request: Request[Any, Any, Any],
                         exc: OrdnungError) -> Response[dict[str, Any]]:
    facts = facts_of(exc)
    assert facts is not None
    extra, status = facts.extra, facts.status
    if isinstance(exc, DatabaseUnavailable):
        log.warning("database unavailable", path=request.url.path, detail=exc.detail)
    elif status >= 500:
        log.error("engine error", error_type=exc.type, detail=exc.detail)
    response = problem(exc.type, status, exc.detail, request.url.path, **extra)
    if isinstance(exc, (RateLimited, DatabaseUnavailable, TransientConflict)):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def handle_http_error(request: Request[Any, Any, Any],
                      exc: HTTPException) -> Response[dict[str, Any]]:
    if isinstance(exc, ValidationException):
        errors = exc.extra if isinstance(exc.extra, list) else []
        fields = [{"field": _field_name(e), "message": _message(e)}
                  for e in errors if isinstance(e, dict)]
        detail = "; ".join(f"{f['field']}: {f['message']}" if f["field"] else f["message"]
                           for f in fields) or exc.detail
        # ``field``: the first offending field, as engine validation errors name theirs
        named = {"field": fields[0]["field"]} if fields and fields[0]["field"] else {}
        return problem("validation", 422, detail, request.url.path, errors=fields, **named)
    if isinstance(exc, NotAuthorizedException | PermissionDeniedException):
        facts = facts_of(exc)
        assert facts is not None
        response = problem(facts.kind, facts.status, facts.detail, request.url.path)
        if facts.status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        return response
    if isinstance(exc, NotFoundException):
        return problem("not-found", 404, exc.detail, request.url.path)
    kind = {405: "method-not-allowed", 409: "conflict", 413: "validation",
            415: "validation", 400: "validation"}.get(exc.status_code, "error")
    status = 422 if kind == "validation" else exc.status_code
    return problem(kind, status, exc.detail, request.url.path)


def _field_name(error: dict[str, Any]) -> str:
    """The offending field as a dotted path. Litestar gives the parent's path as ``key``
    (``data`` for the body itself) and msgspec names the field in the message."""
    message = str(error.get("message", ""))
    key = str(error.get("key", ""))
    where = "" if key == "data" else key
    for marker in ("unknown field `", "required field `"):
        if marker in message:
            name = message.split(marker, 1)[1].split("`", 1)[0]
            return f"{where}.{name}" if where else name
    if "at `$." in message:
        return message.rsplit("at `$.", 1)[1].rstrip("`")
    return where


def _message(error: dict[str, Any]) -> str:
    message = str(error.get("message", ""))
    if message == "'data'" and error.get("key") == "data":  # litestar: no body at all
        return "the request needs a JSON body"
    return message


def refused_by_database(exc: BaseException) -> bool:
    """The database refused a value from the request (out of range, too long, a NUL
    character): asyncpg's and sqlite3's ``DataError``, or sqlite3's ``OverflowError``
    for integers beyond 64 bits. Nothing was written (the transaction rolled back)."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            break
        if isinstance(seen, OverflowError) or any(
                cls.__name__ == "DataError" for cls in type(seen).__mro__):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _unavailable_cause(exc: BaseException) -> BaseException | None:
    """The database driver's connection error or timeout behind ``exc``, if any."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return None
        if type(seen).__module__.startswith(("asyncpg", "sqlite3")) and is_unavailable(seen):
            return seen
        seen = seen.__cause__ or seen.__context__
    return None


def storage_full(exc: BaseException) -> bool:
    """SQLite could not write: its disk is full. Nothing was written (the transaction
    rolled back); the engine recovers by itself once space is freed."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if disk_full(seen):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def handle_unexpected(request: Request[Any, Any, Any],
                      exc: Exception) -> Response[dict[str, Any]]:
    if storage_full(exc):
        log.error("database disk full; request refused", path=request.url.path)
        response = problem("storage-full", 507, "the database's disk is full; nothing was "
                           "stored, try again later", request.url.path)
        response.headers["Retry-After"] = str(STORAGE_FULL_RETRY_AFTER)
        return response
    if refused_by_database(exc):
        log.warning("value refused by the database", path=request.url.path,
                    error=type(exc).__name__)
        return problem("validation", 422, "a value in the request is out of range, too long, "
                       "or contains a NUL character", request.url.path)
    cause = _unavailable_cause(exc)
    if cause is not None:  # a driver error the persistence layer did not see first
        return handle_ordnung_error(request, DatabaseUnavailable(
            f"the database is not available ({type(cause).__name__}); try again shortly"))
    log.exception("unhandled error", path=request.url.path)
    return problem("internal", 500, "an internal error occurred; it has been logged",
                   request.url.path)


# --------------------------------------------------------------------------- OpenAPI


class Problem(msgspec.Struct, kw_only=True):
    """An RFC 9457 problem. Switch on ``type``; the kind may add members (``field`` and
    ``errors`` for validation, ``shortages`` for out-of-stock, ``allowed`` for an illegal
    transition ...)."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None


DESCRIPTIONS = {
    401: "Missing, unknown or revoked API key (problem type unauthorized)",
    402: "The payment was declined (payment-declined)",
    403: "The key may not do this (forbidden)",
    404: "No such resource, or not the caller's (not-found)",
    408: "The request body did not arrive within the body timeout (request-timeout)",
    409: "Conflicts with the current state: conflict, illegal-transition, guard-veto, "
         "out-of-stock or invariant-violation; a change that collided with concurrent "
         "changes on every try and was not made (conflict with \"retry\": true, and "
         "Retry-After); for a POST also an Idempotency-Key whose first request is still "
         "running (conflict, with Retry-After) or was cut off after it had changed "
         "something (idempotency-interrupted)",
    413: "The request body is larger than the server accepts (request-too-large)",
    422: "The request is not valid (validation, tax-unavailable, currency-mismatch, "
         "currency-not-sold, idempotency-mismatch); nothing was changed",
    429: "Too many attempts (rate-limited); the Retry-After header says how many seconds "
         "to wait",
    503: "The database did not answer in time (database-unavailable); the statement that "
         "failed changed nothing; the Retry-After header says how many seconds to wait",
}
#: route-specific wording where the shared one would mislead
ACCOUNT_401 = "Wrong e-mail or password, or an unknown, expired, spent or revoked token " \
              "(invalid-credentials); or a missing, unknown or revoked API key (unauthorized)"


#: the methods the write rate limits count
WRITES = frozenset({"POST", "PATCH", "PUT", "DELETE"})


def problems(*statuses: int) -> dict[int, ResponseSpec]:
    """``responses=`` for a route handler: the problem answers it can give besides the
    ones every route shares (see ``ProblemDocs``)."""
    return {status: ResponseSpec(data_container=Problem, media_type=MEDIA_TYPE,
                                 description=DESCRIPTIONS[status], generate_examples=False)
            for status in statuses}


@dataclass
class ProblemOperation(Operation):
    """An operation without litestar's generic 400 answer: this API never sends one
    (malformed and invalid requests are 422 problems, documented by ``ProblemDocs``)."""

    def __post_init__(self) -> None:
        if self.responses:
            self.responses.pop("400", None)


class ProblemDocs(ReceiveRoutePlugin):
    """Documents the problem answers that come from the shared machinery rather than
    from a route's own work: 401 and 403 from authentication and guards; 422 for a body
    or parameter that fails validation or that the database refuses (PostgreSQL takes no
    NUL character, not even in a look-up); 409 and 422 for a POST's ``Idempotency-Key``;
    409 for every write that touches the database (its transaction lost to concurrent
    ones on every try: ``TransientConflict``);
    408 and 413 from request intake for a route that takes a body; 429 for every
    authenticated write (POST, PATCH, PUT, DELETE) over one of the write rate limits; 503
    when the database does not answer in time (every route but those marked
    ``opt={"database": False}``). Routes add their own with ``responses=problems(...)``."""

    def receive_route(self, route: BaseRoute) -> None:
        if not isinstance(route, HTTPRoute):
            return
        for handler in route.route_handlers:
            handler.operation_class = ProblemOperation
            shared = set()
            if handler.resolve_guards():
                shared |= {401, 403}
            if "POST" in handler.http_methods:
                shared |= {409, 422}
            if _takes_input(handler):
                shared.add(422)
            if "data" in handler.parsed_fn_signature.parameters:
                shared |= {408, 413}
            if handler.http_methods & WRITES and not handler.opt.get("exclude_from_auth"):
                shared.add(429)  # the write rate limits (ordnung.api.rate_limits)
            if handler.opt.get("database", True):
                shared.add(503)
                if handler.http_methods & WRITES:
                    shared.add(409)  # lost to concurrent transactions on every try
            handler.responses = {**problems(*sorted(shared)), **(handler.responses or {})}


def _takes_input(handler: HTTPRouteHandler) -> bool:
    """A body, or a path, query or header parameter."""
    return any(name != "request" for name in handler.parsed_fn_signature.parameters)
