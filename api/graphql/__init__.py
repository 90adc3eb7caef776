"""The GraphQL adapter: ``/graphql`` on the same litestar app and ``Engine`` as REST.

A browser asking ``GET /graphql`` for HTML (no ``query``) gets GraphiQL, whose assets
ship inside the package (``static/graphiql``) and are served under ``/graphql/assets``:
the page works with no internet. The page itself holds no data, so it needs no key;
every query it sends does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from litestar import Request, Response
from litestar.background_tasks import BackgroundTasks
from litestar.datastructures import CacheControlHeader
from litestar.di import Provide
from litestar.router import Router
from litestar.static_files import create_static_files_router
from litestar.types import ControllerRouterHandler, Dependencies
from strawberry.litestar import make_graphql_controller

from ordnung.api.auth import GRAPHQL_PATH as PATH
from ordnung.api.auth import api_caller
from ordnung.api.graphql.schema import OrdnungSchema, build_schema

__all__ = ["OrdnungSchema", "build_schema", "graphql_routes"]

ASSETS_DIR = Path(__file__).resolve().parent.parent / "static" / "graphiql"
ASSETS_PATH = "/graphql/assets"


async def _no_root_value() -> None:
    """No root value."""


def _fresh_response(root_value: None) -> Response[Any]:
    """The response an operation may set headers on. strawberry builds it in a worker
    thread, a thread hop per request for one empty object: built on the event loop
    here. It takes ``root_value`` only to run after it: litestar resolves dependencies
    of the same depth concurrently, in a task group of their own, which costs more than
    the dependencies themselves; chained, each is awaited in turn."""
    return Response({}, background=BackgroundTasks([]))


async def _http_context(request: Request[Any, Any, Any],
                        response: Response[Any]) -> dict[str, Any]:
    """What resolvers find in ``info.context``: the request and the response."""
    return {"request": request, "response": response}


#: strawberry's dependencies of an HTTP operation, the same values built one after the
#: other (a subscription's are strawberry's own)
HTTP_DEPENDENCIES: Dependencies = {
    "root_value": Provide(_no_root_value),
    "response": Provide(_fresh_response, sync_to_thread=False),
    "context": Provide(_http_context),
}


def graphql_routes(schema: OrdnungSchema | None = None) -> list[ControllerRouterHandler]:
    """``/graphql`` (POST, and GET for queries or the GraphiQL page), behind the REST
    authentication middleware and a guard letting any key or customer token in; each
    field then applies the same permission predicates as its REST route. Not in the
    OpenAPI document (GraphQL describes itself: ``schema.graphql``). And the page's
    assets."""
    base: Any = make_graphql_controller(schema or build_schema(), path=PATH,
                                        graphql_ide="graphiql")
    page = (ASSETS_DIR / "index.html").read_text()

    class GraphQLController(base):
        guards = [api_caller]
        include_in_schema = False
        #: ``?query=`` is a GraphQL document, not a REST parameter: the document is bounded
        #: by the token limit and its arguments by ``CheckArguments`` (api/decoding.py)
        opt = {"own_parameter_checks": True}
        dependencies: ClassVar[Dependencies] = {
            **base.dependencies, **HTTP_DEPENDENCIES}

        @property
        def graphql_ide_html(self) -> str:
            return page

    assets: Router = create_static_files_router(
        path=ASSETS_PATH, directories=[ASSETS_DIR], include_in_schema=False,
        cache_control=CacheControlHeader(max_age=86400), name="graphiql-assets",
        opt={"exclude_from_auth": True})
    return [GraphQLController, assets]
