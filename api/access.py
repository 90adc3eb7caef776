"""Who may call each operation, stated in the OpenAPI document from the guards themselves.

The guards in ``api/auth.py`` enforce access; each registers here what it lets through
(``Access``). ``AccessDocs`` reads that for every route when the app is built and writes
it into the operation: an ``x-ordnung-access`` extension (machine-readable) and a
sentence in the description, plus the one-line summary from the handler's docstring. So
the document cannot drift from what the API enforces, and a route that says nothing
(no guard, not public, or no docstring) stops the app from being built — a test builds it.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

from litestar.handlers import HTTPRouteHandler
from litestar.openapi.spec import OpenAPIResponse, Operation, Schema
from litestar.plugins import ReceiveRoutePlugin
from litestar.routes import BaseRoute, HTTPRoute

#: the kinds of caller, in the order the documents list them
CALLERS = ("public", "admin", "storefront", "customer", "cart", "stream")
_PHRASES = {
    "public": "anyone, no key needed",
    "storefront": "a storefront (publishable) key",
    "customer": "a customer token (that customer's own data only)",
    "cart": "a storefront key holding the cart's token (`X-Cart-Token`)",
    "stream": "a stream token for this order (`?stream_token=`)",
}


@dataclass(frozen=True)
class Access:
    """What a guard (or a public route) lets through."""

    callers: frozenset[str]
    #: the admin scope an admin key needs (when ``admin`` is among the callers)
    scope: str | None = None

    def statement(self) -> str:
        parts = []
        for kind in CALLERS:
            if kind not in self.callers:
                continue
            parts.append(f"an admin key with the `{self.scope}` scope" if kind == "admin"
                         else _PHRASES[kind])
        return "Who may call: " + "; or ".join(parts) + "."

    def document(self) -> dict[str, Any]:
        return {"callers": [k for k in CALLERS if k in self.callers],
                "admin_scope": self.scope, "statement": self.statement()}


PUBLIC = Access(frozenset({"public"}))
#: guard -> what it lets through (filled by ``declare``)
_GUARDS: dict[Any, Access] = {}


def declare(guard: Any, *callers: str, scope: str | None = None) -> Any:
    """Record what ``guard`` lets through; returns it (for use on guard factories)."""
    unknown = set(callers) - set(CALLERS)
    assert not unknown, unknown
    _GUARDS[guard] = Access(frozenset(callers), scope)
    return guard


class AccessUndeclared(RuntimeError):
    """A route whose callers or summary the OpenAPI document cannot state."""


def access_of(handler: HTTPRouteHandler) -> Access:
    """What the route's guards let through; ``PUBLIC`` for routes outside authentication."""
    if handler.opt.get("exclude_from_auth") or handler.opt.get("public"):
        return PUBLIC
    guards = handler.resolve_guards()
    declared = [_GUARDS[g] for g in guards if g in _GUARDS]
    if not guards or len(declared) != len(guards):
        raise AccessUndeclared(
            f"{handler.handler_name} ({sorted(handler.paths)}): every route needs a guard "
            "from api/auth.py (or opt={'public': True} and to be outside authentication)")
    callers = frozenset.intersection(*(a.callers for a in declared))
    scopes = {a.scope for a in declared if a.scope}
    access = Access(callers, ",".join(sorted(scopes)) or None)
    if "storefront" in access.callers and "cart_token" in handler.parsed_fn_signature.parameters:
        # a storefront key reaches a cart only with the cart's token
        access = Access(access.callers - {"storefront"} | {"cart"}, access.scope)
    return access


def summary_of(handler: HTTPRouteHandler) -> tuple[str, str]:
    """The docstring's first paragraph, on one line (the summary), and the rest."""
    # the function's own docstring only (``inspect.getdoc`` would fall back to the
    # route decorator's class docstring)
    doc = inspect.cleandoc(getattr(handler.fn, "__doc__", None) or "")
    first, _, rest = doc.partition("\n\n")
    first = " ".join(first.split())
    if not first:
        raise AccessUndeclared(f"{handler.handler_name} ({sorted(handler.paths)}): every "
                               "route needs a docstring; its first line is the summary")
    return first, rest.strip()


@dataclass
class AccessOperation(Operation):
    """An operation that carries ``x-ordnung-access``."""

    x_ordnung_access: dict[str, Any] | None = field(
        default=None, metadata={"alias": "x-ordnung-access"})


def operation_class(base: type[Operation], access: Access) -> type[Operation]:
    """``base`` (e.g. the problem-aware operation) that also states ``access``."""
    document = access.document()

    @dataclass
    class Stated(AccessOperation, base):  # type: ignore[valid-type, misc]
        def __post_init__(self) -> None:
            parent = getattr(super(), "__post_init__", None)
            if parent is not None:
                parent()
            self.x_ordnung_access = document
            _any_of_answers(self)

    return Stated


def _any_of_answers(operation: Operation) -> None:
    """An answer that is one type or another by caller (the whole order for staff, the
    customer's view for everyone else) is ``anyOf``, not ``oneOf``: the customer's view
    is a subset, so an answer can match both."""
    for status, response in (operation.responses or {}).items():
        if not status.startswith("2") or not isinstance(response, OpenAPIResponse):
            continue
        for media in (response.content or {}).values():
            schema = media.schema
            if isinstance(schema, Schema) and schema.one_of:
                schema.any_of, schema.one_of = schema.one_of, None


class AccessDocs(ReceiveRoutePlugin):
    """Writes summary, description and ``x-ordnung-access`` into every operation."""

    def receive_route(self, route: BaseRoute) -> None:
        if not isinstance(route, HTTPRoute):
            return
        for handler in route.route_handlers:
            if not handler.resolve_include_in_schema():
                continue
            access = access_of(handler)
            summary, rest = summary_of(handler)
            handler.summary = summary
            handler.description = "\n\n".join(p for p in (rest, access.statement()) if p)
            handler.operation_class = operation_class(handler.operation_class, access)
