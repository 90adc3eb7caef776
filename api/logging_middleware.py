"""Request logging: one structured line per request with its id; never headers or bodies.

The outermost layer (``ordnung.api.edge``) does it, around the whole application and
outside litestar's own exception handling (as litestar's OpenTelemetry integration
does), because that is the only place that sees every request as the client does: a
401 from authentication, a 404 for a path no route matches, a 405. Inside it, those
answers are exceptions still on their way out, and were logged as 500 or not at all.
Every answer carries ``x-request-id`` (the client's own, if it sent one, else a new
one), and every line logged while the request runs is bound to it.
"""

from __future__ import annotations

import os

from ordnung.api.asgi import Scope

#: longest client-sent request id kept (it is echoed and logged)
MAX_REQUEST_ID = 64
REQUEST_ID = b"x-request-id"


def new_request_id() -> str:
    """A random (version 4) UUID as 32 hex digits, as ``uuid.uuid4().hex`` writes it,
    without building a ``UUID`` on the way."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40  # version 4
    raw[8] = raw[8] & 0x3F | 0x80  # the RFC 4122 variant
    return raw.hex()


def request_id_of(scope: Scope) -> str:
    """The client's ``X-Request-Id`` (its printable characters, at most
    ``MAX_REQUEST_ID``), or a new id."""
    given = ""
    for name, value in scope["headers"]:
        if name == REQUEST_ID:
            given = value.decode("latin-1")  # the last one counts
    given = "".join(c for c in given[:MAX_REQUEST_ID] if c.isprintable()) if given else ""
    return given or new_request_id()
