"""The route decorators of the REST API: litestar's, whose guards see the handler
itself rather than a copy of it.

Litestar hands every guard a fresh copy of the route handler, so that a guard cannot
change the handler for the requests after it. Copying a handler (a large object) cost
about a fiftieth of a guest checkout's server time, on every request. ordnung's guards
(``ordnung.api.auth``) decide from the caller alone and never look at the handler, so
here they are given the handler as it is. Every REST route uses these decorators; a
guard that needs to read the handler may read it, and must not change it.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from litestar import HttpMethod
from litestar.connection import ASGIConnection
from litestar.handlers import HTTPRouteHandler


class GuardedInPlace(HTTPRouteHandler):
    """A route handler whose guards are run with the handler itself (see the module
    docstring)."""

    __slots__ = ()

    async def authorize_connection(self, connection: ASGIConnection[Any, Any, Any, Any]
                                   ) -> None:
        for guard in self.resolve_guards():
            await guard(connection, self)  # type: ignore[misc]  # made async by litestar


get = partial(GuardedInPlace, http_method=HttpMethod.GET)
post = partial(GuardedInPlace, http_method=HttpMethod.POST)
put = partial(GuardedInPlace, http_method=HttpMethod.PUT)
patch = partial(GuardedInPlace, http_method=HttpMethod.PATCH)
delete = partial(GuardedInPlace, http_method=HttpMethod.DELETE)
