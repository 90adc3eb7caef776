"""Bearer authentication and the guards that enforce who may do what.

Three kinds of caller: admin keys (scopes), storefront keys (one channel:
catalogue, availability, guest carts they hold the cart token of, placing
orders) and customer tokens (only that customer's carts and orders; from
signing in, or issued by staff). Anything not theirs answers 404, so a
caller cannot even learn that someone else's order or cart exists. A fourth,
the stream token, is no key: it rides in the URL of one order's live status
and opens nothing else.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
from litestar.connection import ASGIConnection
from litestar.exceptions import NotAuthorizedException, PermissionDeniedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware import AbstractAuthenticationMiddleware, AuthenticationResult

from ordnung.api.access import declare
from ordnung.api.asgi import Scope
from ordnung.core import Engine
from ordnung.core.domain.access import Principal
from ordnung.core.errors import InvalidCredentials, InvalidInput, NotFound
from ordnung.core.persistence.generations import Observed
from ordnung.core.requests import PlaceOrder

PUBLIC_PATHS = ["/health", "/schema"]
WEBHOOK_PREFIX = "/webhooks/"
#: the one route a stream token (``?stream_token=``) opens: an order's live status
STREAM_PATH = re.compile(r"^/orders/[^/]+/events/?$")
GRAPHQL_PATH = "/graphql"


def is_ide_page(connection: ASGIConnection[Any, Any, Any, Any]) -> bool:
    """A browser's request for the GraphiQL page without a key: ``GET /graphql`` asking
    for HTML, with no query to run (strawberry answers it with the page, which holds no
    data, and runs nothing). Every query the page then sends needs a key."""
    # the cheap tests first: most requests carry a key (the URL is built only without)
    return (connection.scope.get("method") == "GET"
            and "authorization" not in connection.headers
            and connection.url.path == GRAPHQL_PATH
            and "query" not in connection.query_params
            and "text/html" in connection.headers.get("accept", ""))


class BearerAuthMiddleware(AbstractAuthenticationMiddleware):
    """Who is calling. A credential the worker kept is taken as it was kept and
    confirmed later in the request (``ordnung.api.confirming``), once a statement the
    request runs anyway has brought the ``access`` generation back."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        # what this request sees of the generations (``ordnung.core.persistence.
        # generations``), for this request only
        with Observed().serving():
            await super().__call__(scope, receive, send)

    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]
                                   ) -> AuthenticationResult:
        header = connection.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        if (not header and "stream_token" in connection.query_params
                and STREAM_PATH.match(connection.url.path)):
            return await _stream_caller(connection, connection.query_params["stream_token"])
        if not header and connection.url.path.startswith(WEBHOOK_PREFIX):
            # gateways and carriers that cannot set headers put the key in the URL
            scheme, token = "bearer", connection.query_params.get("access_key", "")
        if is_ide_page(connection):
            return AuthenticationResult(user=None, auth=None)
        if scheme.lower() != "bearer" or not token.strip():
            raise NotAuthorizedException("send 'Authorization: Bearer <key>'")
        engine: Engine = connection.app.state.engine
        principal = await engine.access.verify(token.strip())
        if principal is None:
            raise NotAuthorizedException("unknown or revoked key")
        return AuthenticationResult(user=principal, auth=principal)


async def confirmed(scope: Scope, principal: Principal) -> Principal:
    """``principal`` confirmed current (see ``ordnung.api.confirming``); the request
    acts as the credential looked up again if it changed; 401 if it is no longer good."""
    engine: Engine = scope["app"].state.engine
    current = await engine.access.confirm(principal)
    if current is None:
        raise NotAuthorizedException("unknown or revoked key")
    if current is not principal:
        scope["user"] = scope["auth"] = current
    return current


async def _stream_caller(connection: ASGIConnection[Any, Any, Any, Any],
                         token: str) -> AuthenticationResult:
    """A browser's ``EventSource`` following one order with a stream token: a caller
    that reads that order's live status (in the customer's view) and nothing else."""
    engine: Engine = connection.app.state.engine
    try:
        order_id = await engine.stream_tokens.verify(token.strip())
    except InvalidCredentials as exc:
        raise NotAuthorizedException(exc.detail) from None
    principal = Principal(key_id="stream", kind="stream", order_id=order_id)
    return AuthenticationResult(user=principal, auth=principal)


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    user = connection.scope.get("user")
    if not isinstance(user, Principal):
        raise NotAuthorizedException("not authenticated")
    return user


# The rules: one predicate per kind of guard, raising ``PermissionDeniedException``. The
# REST guards below and the GraphQL resolvers (``ordnung.api.graphql``) call these same
# functions, so a rule is written once for both adapters.


def require_admin(p: Principal, scope: str) -> None:
    """An admin key holding ``scope``."""
    if not p.has(scope):
        raise PermissionDeniedException(f"needs an admin key with the {scope!r} scope")


def require_shopper_or_admin(p: Principal, scope: str) -> None:
    """A storefront key, a customer token, or an admin key holding ``scope``."""
    if p.kind in ("storefront", "customer") or p.has(scope):
        return
    raise PermissionDeniedException(f"needs a storefront key, a customer token or an "
                                    f"admin key with the {scope!r} scope")


def require_storefront(p: Principal) -> None:
    """A storefront (publishable) key."""
    if p.kind != "storefront":
        raise PermissionDeniedException("needs a storefront key")


def require_customer(p: Principal) -> None:
    """A customer's token (a signed-in session or a token issued by staff)."""
    if p.kind != "customer":
        raise PermissionDeniedException("needs a signed-in customer's access token")


def require_customer_or_admin(p: Principal, scope: str) -> None:
    """A customer token (own data only) or an admin key holding ``scope``."""
    if p.kind == "customer" or p.has(scope):
        return
    raise PermissionDeniedException(f"needs a customer token or an admin key with the "
                                    f"{scope!r} scope")


def require_order_reader(p: Principal, scope: str) -> None:
    """A customer token, an admin key holding ``scope``, or a stream token."""
    if p.kind in ("customer", "stream") or p.has(scope):
        return
    raise PermissionDeniedException(f"needs a customer token, a stream token or an "
                                    f"admin key with the {scope!r} scope")


def require_api_caller(p: Principal) -> None:
    """Any key or customer token (not a stream token): the GraphQL endpoint, whose
    resolvers then apply the rules above field by field."""
    if p.kind not in ("admin", "storefront", "customer"):
        raise PermissionDeniedException("needs an API key or a customer token")


def order_for_caller(p: Principal, data: PlaceOrder) -> PlaceOrder:
    """The order ``p`` may place from ``data``: a storefront key places guest orders on
    its own channel; a customer token orders for its own customer (filled in when
    absent); staff place any."""
    if p.kind == "storefront":
        if data.channel != p.channel:
            raise PermissionDeniedException("a storefront key places orders on its own "
                                            "channel only")
        if data.customer_id is not None:
            raise PermissionDeniedException("a storefront key places guest orders; use a "
                                            "customer token for a customer's order")
    if p.kind == "customer":
        if data.customer_id not in (None, p.customer_id):
            raise PermissionDeniedException("a customer token orders for its customer")
        return msgspec.structs.replace(data, customer_id=p.customer_id)
    return data


def cart_channel(p: Principal, channel: str | None) -> str:
    """The channel of a new cart of ``p``: a storefront key's own (another is refused);
    for a customer token without one, the channel its session was opened on."""
    if p.kind == "storefront":
        if channel not in (None, p.channel):
            raise InvalidInput("a storefront key creates carts for its own channel",
                               field="channel")
        channel = p.channel
    if p.kind == "customer" and channel is None:
        channel = p.channel  # a session remembers where the customer signed in
    if channel is None:
        raise InvalidInput("channel is required", field="channel")
    return channel


# Guards are coroutines: litestar would run a plain function in a worker thread.


def admin(scope: str) -> Any:
    """Guard: an admin key holding ``scope``."""
    async def guard(connection: ASGIConnection[Any, Any, Any, Any],
                    _: BaseRouteHandler) -> None:
        require_admin(principal_of(connection), scope)

    guard.__name__ = f"admin_{scope}"
    return declare(guard, "admin", scope=scope)


def shopper_or_admin(scope: str) -> Any:
    """Guard: a storefront key, a customer token, or an admin key holding ``scope``."""
    async def guard(connection: ASGIConnection[Any, Any, Any, Any],
                    _: BaseRouteHandler) -> None:
        require_shopper_or_admin(principal_of(connection), scope)

    guard.__name__ = f"shopper_or_{scope}"
    return declare(guard, "storefront", "customer", "admin", scope=scope)


async def storefront_key(connection: ASGIConnection[Any, Any, Any, Any],
                         _: BaseRouteHandler) -> None:
    """Guard: a storefront (publishable) key; the account routes act for its channel."""
    require_storefront(principal_of(connection))


async def signed_in_customer(connection: ASGIConnection[Any, Any, Any, Any],
                             _: BaseRouteHandler) -> None:
    """Guard: a customer's token (a signed-in session or a token issued by staff)."""
    require_customer(principal_of(connection))


async def api_caller(connection: ASGIConnection[Any, Any, Any, Any],
                     _: BaseRouteHandler) -> None:
    """Guard: any key or customer token (the GraphQL endpoint), or no key for the
    GraphiQL page alone (``is_ide_page``)."""
    if connection.scope.get("user") is None and is_ide_page(connection):
        return
    require_api_caller(principal_of(connection))


def customer_or_admin(scope: str) -> Any:
    """Guard: a customer token (own data only) or an admin key holding ``scope``."""
    async def guard(connection: ASGIConnection[Any, Any, Any, Any],
                    _: BaseRouteHandler) -> None:
        require_customer_or_admin(principal_of(connection), scope)

    guard.__name__ = f"customer_or_{scope}"
    return declare(guard, "customer", "admin", scope=scope)


def order_reader(scope: str) -> Any:
    """Guard of an order's live status: a customer token, an admin key holding ``scope``,
    or a stream token (which the route then holds to its one order)."""
    async def guard(connection: ASGIConnection[Any, Any, Any, Any],
                    _: BaseRouteHandler) -> None:
        require_order_reader(principal_of(connection), scope)

    guard.__name__ = f"order_reader_{scope}"
    return declare(guard, "customer", "stream", "admin", scope=scope)


declare(storefront_key, "storefront")
declare(signed_in_customer, "customer")
declare(api_caller, "admin", "storefront", "customer")


def ensure_owner(principal: Principal, kind: str, key: str, customer_id: str | None,
                 channel: str | None = None) -> None:
    """404 (not 403) for a customer's access to someone else's data, or a storefront's
    access to another channel's cart."""
    if principal.kind == "customer" and customer_id != principal.customer_id:
        raise NotFound(kind, key)
    if principal.kind == "storefront" and channel is not None and channel != principal.channel:
        raise NotFound(kind, key)
