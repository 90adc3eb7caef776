"""The GraphQL adapter: ``/graphql`` on the same litestar app and ``Engine`` as REST."""

from __future__ import annotations

from typing import Any

from litestar.types import ControllerRouterHandler
from strawberry.litestar import make_graphql_controller

from ordnung.api.auth import api_caller
from ordnung.api.graphql.schema import OrdnungSchema, build_schema

__all__ = ["OrdnungSchema", "build_schema", "graphql_controller"]


def graphql_controller(schema: OrdnungSchema | None = None) -> ControllerRouterHandler:
    """``/graphql`` (POST, and GET for queries): behind the REST authentication middleware
    and a guard letting any key or customer token in; each field then applies the same
    permission predicates as its REST route. Not in the OpenAPI document (GraphQL
    describes itself: ``schema.graphql``)."""
    base: Any = make_graphql_controller(schema or build_schema(), path="/graphql",
                                        graphql_ide=None)

    class GraphQLController(base):
        guards = [api_caller]
        include_in_schema = False

    return GraphQLController
