"""Strict decoding of every request body, and the engine's input check on the result
and on the path and query parameters.

Litestar converts a body to a handler's type leniently (``"1"`` becomes ``1``). This
``before_request`` hook runs first, for every route that takes a JSON body: it
decodes the body strictly with msgspec against the handler's own type (wrong types,
unknown fields, missing fields and the schemas' constraints refuse the request) and
then applies ``ordnung.core.validation.check_input`` with the engine's limits (control
characters, lengths, counts, ISO 3166 codes). Anything refused is a 422 problem naming
the field, and the handler never runs, so nothing is stored. Path and query
parameters get the text rules (no control characters, a length bound) too.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from litestar import Request
from litestar.exceptions import ValidationException
from litestar.utils.scope.state import ScopeState

from ordnung.core import Engine
from ordnung.core.validation import check_input, check_parameter

#: the start of a message that names its own field (``country: must be ...``)
OWN_FIELD = re.compile(r"([a-z_][a-z0-9_]*): ")


async def strict_input(request: Request[Any, Any, Any]) -> None:
    """Refuse a parameter with a control character, or a body that does not decode
    strictly to the handler's type or breaks an input limit; otherwise let the handler
    run with the value decoded here."""
    handler = request.scope.get("route_handler")
    if handler is None:
        return None
    engine: Engine = request.app.state.engine
    limits = engine.config.limits
    for name, value in request.path_params.items():
        if isinstance(value, str):
            check_parameter(name, value, limits)
    if request.scope.get("query_string") and not handler.opt.get("own_parameter_checks"):
        # the GraphQL endpoint checks its documents' arguments itself (a document in
        # ``?query=`` may span lines and exceed a parameter's length)
        for name, value in request.query_params.multi_items():
            check_parameter(name, value, limits)
    parameter = handler.parsed_fn_signature.parameters.get("data")
    if parameter is None:
        return None
    body = await request.body()
    if not body.strip():
        return None  # litestar answers a missing body itself
    target = parameter.annotation
    try:
        value = msgspec.json.decode(body, type=target, strict=True)
    except msgspec.ValidationError as exc:
        # ``key``: where msgspec stopped (for an unknown or missing field, its parent);
        # a check of a type's own (``__post_init__``) names its field as "field: reason"
        message, _, where = str(exc).partition(" - at `$")
        where = where.rstrip("`").lstrip(".")
        named = OWN_FIELD.match(message)
        if named and where:
            where = f"{where}.{named.group(1)}"
            exc = msgspec.ValidationError(f"{message} - at `$.{where}`")
        raise ValidationException(detail="Validation failed",
                                  extra=[{"key": where or "data", "message": str(exc)}]
                                  ) from None
    except msgspec.DecodeError as exc:
        raise ValidationException(detail=f"the body is not valid JSON: {exc}") from None
    check_input(value, limits)
    # the handler's ``data`` is this value: litestar reads a body's JSON once per request
    # (``Request.json``) and converts it to the handler's type, which for a value of that
    # type already is a no-op, so the body is not decoded a second time
    ScopeState.from_scope(request.scope).json = value
    return None
