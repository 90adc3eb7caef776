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
             "body_timeout_seconds": "ORDNUNG_BODY_TIMEOUT_SECONDS"}
