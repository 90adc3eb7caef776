"""Settings of the HTTP edge, read from ``ORDNUNG_*`` variables.

They bound what one request may cost a worker before any handler runs, and so
belong to the adapter, not to the engine (an embedded engine reads no bodies).
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import msgspec

from ordnung.core.errors import ConfigError

MIB = 1024 * 1024


class HttpSettings(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    #: largest request body accepted, in bytes (``ORDNUNG_MAX_BODY_BYTES``)
    max_body_bytes: Annotated[int, msgspec.Meta(ge=1)] = MIB
    #: deepest nesting of arrays and objects accepted in a JSON body
    #: (``ORDNUNG_MAX_JSON_DEPTH``)
    max_json_depth: Annotated[int, msgspec.Meta(ge=1)] = 32
    #: seconds a client has to send the whole body once the headers are in
    #: (``ORDNUNG_BODY_TIMEOUT_SECONDS``)
    body_timeout_seconds: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    #: seconds a client has to send a request's headers, from the moment its connection
    #: opens or its previous response ends (``ORDNUNG_HEADER_TIMEOUT_SECONDS``)
    header_timeout_seconds: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    #: seconds an idle keep-alive connection is kept open between requests
    #: (``ORDNUNG_KEEP_ALIVE_TIMEOUT_SECONDS``)
    keep_alive_timeout_seconds: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    #: connections (and running requests) one worker serves at once; beyond it a new
    #: request is answered 503 at once (``ORDNUNG_MAX_CONNECTIONS``)
    max_connections: Annotated[int, msgspec.Meta(ge=1)] = 1000
    #: seconds a stopping server gives running requests to finish; open event streams
    #: end at once, anything still running after it is cut off
    #: (``ORDNUNG_SHUTDOWN_GRACE_SECONDS``, ``ordnung serve --shutdown-grace``)
    shutdown_grace_seconds: Annotated[float, msgspec.Meta(ge=0)] = 10.0

    @classmethod
    def from_env(cls, **overrides: Any) -> HttpSettings:
        """The settings from ``ORDNUNG_*`` variables; a value that cannot work raises
        ``ConfigError`` naming its variable."""
        values: dict[str, Any] = {}
        for field, variable in VARIABLES.items():
            if os.environ.get(variable):
                values[field] = os.environ[variable]
        values.update(overrides)
        try:
            return msgspec.convert(values, cls, strict=False)
        except msgspec.ValidationError as exc:
            message, _, where = str(exc).partition(" - at `$.")
            raise ConfigError(VARIABLES.get(where.rstrip("`"), "ORDNUNG_*"), message) from None


VARIABLES = {"max_body_bytes": "ORDNUNG_MAX_BODY_BYTES",
             "max_json_depth": "ORDNUNG_MAX_JSON_DEPTH",
             "body_timeout_seconds": "ORDNUNG_BODY_TIMEOUT_SECONDS",
             "header_timeout_seconds": "ORDNUNG_HEADER_TIMEOUT_SECONDS",
             "keep_alive_timeout_seconds": "ORDNUNG_KEEP_ALIVE_TIMEOUT_SECONDS",
             "max_connections": "ORDNUNG_MAX_CONNECTIONS",
             "shutdown_grace_seconds": "ORDNUNG_SHUTDOWN_GRACE_SECONDS"}
