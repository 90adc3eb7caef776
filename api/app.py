"""The litestar application: a thin HTTP adapter over one Engine per process.

Validation, authentication, idempotency, errors and serialisation live here;
every business rule lives in ``ordnung.core``.
"""

from __future__ import annotations

import asyncio
import mmap
import os
import struct
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, cast

from litestar import Litestar, Request
from litestar.exceptions import HTTPException
from litestar.middleware import DefineMiddleware
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Components, SecurityScheme
from litestar.types import ASGIApp

from ordnung.api.access import AccessDocs
from ordnung.api.auth import PUBLIC_PATHS, BearerAuthMiddleware
from ordnung.api.confirming import ConfirmCredentialMiddleware
from ordnung.api.decoding import strict_input
from ordnung.api.docs_pages import docs_assets_router, docs_render_plugins
from ordnung.api.edge import EdgeMiddleware
from ordnung.api.graphql import graphql_routes
from ordnung.api.idempotency import IdempotencyMiddleware
from ordnung.api.intake import RequestIntakeMiddleware
from ordnung.api.metrics import (
    PrometheusMetrics,
    metrics_endpoint,
    process_exited,
)
from ordnung.api.problems import (
    ProblemDocs,
    handle_http_error,
    handle_ordnung_error,
    handle_unexpected,
)
from ordnung.api.rate_limits import WriteLimits, WriteRateLimitMiddleware
from ordnung.api.rate_shares import Shares
from ordnung.api.routes.accounts import AccountController
from ordnung.api.routes.admin import AdminController
from ordnung.api.routes.carts import CartController
from ordnung.api.routes.catalogue import CatalogueController
from ordnung.api.routes.customers import CustomerController
from ordnung.api.routes.fulfilment import (
    FulfilmentController,
    ShipmentController,
    ShipmentListController,
    shipping_label,
    tracking_webhook,
)
from ordnung.api.routes.health import health, live, ready
from ordnung.api.routes.inventory import ChannelController, InventoryController
from ordnung.api.routes.orders import OrderController
from ordnung.api.routes.payments import PaymentController, payment_webhook
from ordnung.api.routes.reactions import ReactionController
from ordnung.api.routes.returns import ReturnController, ReturnListController
from ordnung.api.routes.webhooks import WebhookController
from ordnung.api.settings import HttpSettings
from ordnung.api.tracing import Tracing, name_the_order, tracing_wanted
from ordnung.core import Engine, EngineConfig
from ordnung.core.errors import OrdnungError

#: bytes of a worker's statistics file: one signed 64-bit statement count
STATS_SIZE = 8


def _start_stats_writer(engine: Engine) -> asyncio.Task[None] | None:
    """With ``ORDNUNG_STATS_DIR`` set, each worker keeps the count of SQL statements it
    has run in ``<pid>.stats`` there (8 bytes, little-endian; the benchmarks read it for
    ``sql_per_order``). The file is memory-mapped, so keeping it current costs no I/O
    on the request path."""
    directory = os.environ.get("ORDNUNG_STATS_DIR")
    if not directory:
        return None
    path = os.path.join(directory, f"{os.getpid()}.stats")
    with open(path, "wb") as fh:
        fh.write(bytes(STATS_SIZE))
    fd = os.open(path, os.O_RDWR)
    shared = mmap.mmap(fd, STATS_SIZE)
    os.close(fd)

    async def write() -> None:
        try:
            while True:
                shared[:STATS_SIZE] = struct.pack("<q", engine.db.statements)
                await asyncio.sleep(0.1)
        finally:
            shared.close()

    return asyncio.create_task(write())


def _before_request(traced: bool) -> Any:
    """Strict decoding of the body for every route (``ordnung.api.decoding``), after
    naming the order on the request's span when tracing."""
    if not traced:
        return strict_input

    async def both(request: Request[Any, Any, Any]) -> None:
        await name_the_order(request)
        await strict_input(request)

    return both


def create_app(config: EngineConfig | None = None, *, engine: Engine | None = None,
               admin_key: str | None = None, demo: bool | None = None,
               http: HttpSettings | None = None, rate_limits: WriteLimits | None = None,
               tracer_provider: Any | None = None) -> Litestar:
    """Build the app. Without arguments everything comes from ``ORDNUNG_*`` variables:
    ``ORDNUNG_DATABASE_URL``, ``ORDNUNG_PLUGINS``, ``ORDNUNG_ADMIN_KEY``, ``ORDNUNG_DEMO``,
    ``ORDNUNG_TRACING``, the HTTP edge's limits (``ordnung.api.settings``) and the write
    rate limits (``ordnung.api.rate_limits``).
    ``tracer_provider`` (an OpenTelemetry one) turns tracing on with that provider."""
    bootstrap_key = admin_key if admin_key is not None else os.environ.get("ORDNUNG_ADMIN_KEY")
    seed_demo = demo if demo is not None else os.environ.get("ORDNUNG_DEMO") == "1"
    tracing = Tracing(tracer_provider) if tracer_provider is not None or tracing_wanted() \
        else None

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        own = engine is None
        eng = engine or Engine(config or EngineConfig.from_env(background_tasks=True))
        await eng.start()
        eng.observe_with(PrometheusMetrics(),
                         tracer=tracing.tracer if tracing is not None else None)
        if seed_demo:
            from ordnung.api.seed import seed_demo_shop

            await seed_demo_shop(eng)
        if bootstrap_key:
            await eng.access.ensure_admin(bootstrap_key)
        app.state.engine = eng
        stats = _start_stats_writer(eng)
        try:
            yield
        finally:
            if stats is not None:
                stats.cancel()
            if own:
                await eng.stop()
            if tracing is not None:
                tracing.shutdown()
            process_exited()

    # outermost first: request intake (the body, whole and within limits), then
    # authentication, then idempotency, then the write rate limits (behind idempotency, so
    # a replayed answer is not counted again), then the confirmation of a credential the
    # worker kept (after the statements that bring its generation back); the outermost
    # layer wraps the whole app, below
    middleware: list[Any] = [DefineMiddleware(cast(Any, RequestIntakeMiddleware),
                                              settings=http or HttpSettings.from_env()),
                             DefineMiddleware(BearerAuthMiddleware, exclude=PUBLIC_PATHS),
                             IdempotencyMiddleware,
                             DefineMiddleware(cast(Any, WriteRateLimitMiddleware),
                                              limits=rate_limits or WriteLimits.from_env(),
                                              shares=Shares()),
                             ConfirmCredentialMiddleware]
    with warnings.catch_warnings():
        # strawberry's litestar controller leaves its dependencies to be inferred, which
        # litestar 2 still does (and warns of, for 3.0): nothing an operator can act on
        warnings.filterwarnings("ignore", message=r".*Inferred dependency field",
                                category=DeprecationWarning)
        app = Litestar(
            route_handlers=[
                health, live, ready, metrics_endpoint, CatalogueController, InventoryController,
                ChannelController, CustomerController, CartController, OrderController,
                PaymentController, payment_webhook, FulfilmentController, ShipmentController,
                ShipmentListController, tracking_webhook, shipping_label,
                ReturnController, ReturnListController, AdminController, ReactionController,
                WebhookController,
                AccountController,
                docs_assets_router(), *graphql_routes(),
            ],
            lifespan=[lifespan],
            middleware=middleware,
            plugins=[ProblemDocs(), AccessDocs(),
                     *([tracing.plugin] if tracing is not None else [])],
            before_request=_before_request(tracing is not None),
            exception_handlers={
                OrdnungError: handle_ordnung_error,
                HTTPException: handle_http_error,
                Exception: handle_unexpected,
            },
            openapi_config=OpenAPIConfig(
                title="ordnung", version="0.1.0",
                description="Headless commerce order engine: REST API. Every request needs "
                            "'Authorization: Bearer <key>' except /health and the docs. Errors "
                            "are RFC 9457 problem details.",
                path="/schema",
                render_plugins=docs_render_plugins(),
                components=Components(security_schemes={"bearer": SecurityScheme(
                    type="http", scheme="bearer")}),
                security=[{"bearer": []}],
            ),
            debug=False,
            # logging is the process's to configure (ordnung serve, or the embedding app)
            logging_config=None,
        )
    # outermost, outside litestar's exception handling (it sees every answer as the
    # client does): the request id and log line, the metrics, draining (ordnung.api.edge)
    app.asgi_handler = cast(ASGIApp, EdgeMiddleware(app.asgi_handler))
    return app
