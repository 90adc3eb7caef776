"""The Engine: ordnung's public, in-process async API.

Everything a storefront, the REST and GraphQL adapters, or a plugin can do
goes through one of its services::

    engine = Engine(EngineConfig(database_url="sqlite:///shop.db"))
    async with engine:
        order = await engine.orders.place(PlaceOrder(...))

Services: ``catalog``, ``inventory``, ``channels``, ``customers``, ``carts``,
``orders``, ``payments``, ``fulfilment``, ``returns``, ``access`` (API keys),
``accounts`` (customer sign-up, sign-in, sessions, password reset),
``reactions`` (plugin reactions that failed after their change committed),
``idempotency`` (request keys for the REST and GraphQL adapters), ``reconcile``
(finishes placements a crashed process left with an authorization in flight),
``webhooks`` (endpoints told of changes by signed HTTP requests, and their delivery log;
``webhook_worker`` delivers in the background), ``housekeeping`` (deletes what is kept
only for a while: rate-limit counters, old idempotency records, expired sessions and
tokens, abandoned carts, outbox rows every worker is done with).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import Any

import structlog

from ordnung.core.config import DEFAULT_PLUGINS, EngineConfig
from ordnung.core.errors import PluginError
from ordnung.core.lifecycle import build_machines
from ordnung.core.lifecycle.machine import Machine, StateExtension
from ordnung.core.observe import Metrics, Tracer
from ordnung.core.persistence.database import Database, Timeouts
from ordnung.core.persistence.plugin_store import PluginStore
from ordnung.core.plugin_context import plugin_context
from ordnung.core.plugin_host import PluginHost
from ordnung.core.pricing import PricingPipeline
from ordnung.core.runtime import Runtime
from ordnung.core.services.access import AccessService
from ordnung.core.services.accounts import AccountService
from ordnung.core.services.broker_worker import BrokerWorker
from ordnung.core.services.carts import CartService
from ordnung.core.services.catalog import CatalogService
from ordnung.core.services.channels import ChannelService
from ordnung.core.services.customers import CustomerService
from ordnung.core.services.fulfilment import FulfilmentService
from ordnung.core.services.housekeeping import HousekeepingService
from ordnung.core.services.idempotency import IdempotencyService
from ordnung.core.services.inventory import InventoryService
from ordnung.core.services.orders import OrderService
from ordnung.core.services.payments import PaymentService
from ordnung.core.services.reactions import ReactionService
from ordnung.core.services.reconcile import ReconcileService
from ordnung.core.services.returns import ReturnService
from ordnung.core.services.stream_tokens import StreamTokenService
from ordnung.core.services.webhook_worker import WebhookWorker
from ordnung.core.services.webhooks import WebhookService

log = structlog.get_logger("ordnung.engine")

PluginSpec = Any | tuple[Any, str] | tuple[Any, str, Mapping[str, Any]]


class Engine:
    def __init__(self, config: EngineConfig | None = None,
                 plugins: Iterable[PluginSpec] = ()) -> None:
        """``plugins`` are registered directly, besides entry points: an object, or
        ``(object_or_class, name)`` or ``(class, name, settings)``."""
        self.config = config or EngineConfig.from_env()
        self.host = PluginHost()
        self._extra_plugins = list(plugins)
        c = self.config
        self.db = Database(c.database_url, pool_size=c.pool_size, timeouts=Timeouts(
            connect=c.db_connect_timeout_s, acquire=c.db_acquire_timeout_s,
            statement=c.db_statement_timeout_s, clock_sync=c.db_clock_sync_s),
            transaction_tries=c.transaction_tries)
        self._started = False
        self._background: list[asyncio.Task[None]] = []

    # -- lifecycle ----------------------------------------------------------------
    async def start(self) -> Engine:
        if self._started:
            return self
        for spec in self._extra_plugins:
            if isinstance(spec, tuple):
                self.host.register(*spec)
            else:
                self.host.register(spec)
        if self.config.load_entry_points:
            self.host.load_entry_points(self.config.plugins, self.config.plugin_settings,
                                        defaults=DEFAULT_PLUGINS)
        elif self.config.plugin_settings:
            unknown = set(self.config.plugin_settings) - set(self.host.names())
            if unknown:
                raise PluginError(", ".join(sorted(unknown)), "has settings but is not loaded")
        self.host.check()
        extensions: list[StateExtension] = []
        for _, answer in await self.host.call("ordnung_lifecycle_extensions"):
            extensions.extend(answer)
        self.machines: dict[str, Machine] = build_machines(extensions)
        await self.db.start()
        try:
            if self.config.migrate:
                await self.db.migrate()
            publishers = await self.host.call("ordnung_event_publisher")
            self.runtime = rt = Runtime(self.db, self.host, self.machines,
                                        limits=self.config.limits,
                                        tells_brokers=bool(publishers))
            self.dispatcher = rt.dispatcher
            self.broker_worker = BrokerWorker(
                rt.outbox, publishers, interval_s=self.config.webhooks_interval_s,
                timeout_s=self.config.webhooks_timeout_s,
                backoff_base_s=self.config.broker_backoff_base_s,
                backoff_max_s=self.config.broker_backoff_max_s)
            self.pipeline = PricingPipeline(self.host, rt.catalog.variants, rt.stock.available,
                                            require_tax=self.config.require_tax,
                                            plenty=rt.stock.hints.plenty)
            self.catalog = CatalogService(rt)
            self.inventory = InventoryService(rt)
            self.channels = ChannelService(rt)
            self.customers = CustomerService(rt)
            self.payments = PaymentService(rt)
            self.orders = OrderService(rt, self.pipeline, self.channels, self.customers,
                                       self.payments)
            self.carts = CartService(rt, self.pipeline, self.channels, self.customers, self.orders)
            self.fulfilment = FulfilmentService(rt)
            self.returns = ReturnService(rt, self.payments)
            self.access = AccessService(rt, customer_token_ttl=self.config.customer_token_ttl)
            self.accounts = AccountService(rt, self.customers, self.config)
            self.stream_tokens = StreamTokenService(rt, ttl=self.config.stream_token_ttl)
            self.reactions = ReactionService(rt.journal, self.dispatcher)
            self.idempotency = IdempotencyService(self.db, self.config.idempotency_lease_seconds)
            self.reconcile = ReconcileService(rt, self.payments,
                                              grace_s=self.config.reconcile_grace_s,
                                              interval_s=self.config.reconcile_interval_s)
            self.webhooks = WebhookService(rt.webhooks, self.config)
            self.webhook_worker = WebhookWorker(rt, self.config)
            self.housekeeping = HousekeepingService(self.db, self.config)
            self._started = True
            await self.host.call("ordnung_plugin_started",
                                 each=lambda name: {"context": plugin_context(self, name)})
            if self.config.background_tasks:
                self._background = [asyncio.create_task(self._maintenance_loop()),
                                    asyncio.create_task(self.reconcile.loop()),
                                    asyncio.create_task(self.webhook_worker.loop())]
                if publishers:
                    self._background.append(asyncio.create_task(self.broker_worker.loop()))
        except BaseException:
            # a failed start must not leave a bound database or an open pool behind
            self._started = False
            await self.db.stop()
            raise
        log.info("engine started", database=self.db.kind, plugins=self.host.names())
        return self

    async def stop(self) -> None:
        for task in self._background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._background:
            await self.webhook_worker.stop()
            await self.broker_worker.stop()
        self._background = []
        if self._started:
            await self.accounts.drain()
        with contextlib.suppress(Exception):  # best effort: unmarked events are redelivered
            await self.runtime.journal.close()
        await self.db.stop()
        self._started = False

    async def __aenter__(self) -> Engine:
        return await self.start()

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.stop()

    # -- maintenance ----------------------------------------------------------------
    async def run_maintenance(self) -> dict[str, int]:
        """Deliver events a crashed writer left behind and retry failed reactions."""
        swept = await self.dispatcher.sweep()
        ok, failed = await self.dispatcher.retry_failed()
        return {"swept": swept, "retried_ok": ok, "retried_failed": failed}

    async def run_housekeeping(self) -> dict[str, int]:
        """One housekeeping pass now: rows deleted, by kind (empty if another process
        holds the job's lease). The background maintenance runs one every
        ``housekeeping_interval_s``."""
        return await self.housekeeping.run_once()

    async def _maintenance_loop(self, interval: float = 5.0) -> None:
        try:
            while True:
                try:
                    await self.run_maintenance()
                except Exception as exc:  # keep the loop alive; the next round retries
                    log.warning("maintenance round failed", error=repr(exc))
                try:
                    await self.housekeeping.run_when_due()
                except Exception as exc:  # the database may be away: the next pass retries
                    log.warning("housekeeping pass failed", error=repr(exc))
                await asyncio.sleep(interval)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.housekeeping.release())

    def observe_with(self, metrics: Metrics | None = None, tracer: Tracer | None = None) -> None:
        """Report placements, committed events and failed reactions to ``metrics``, and
        open a ``tracer`` span around every plugin hook call (``ordnung serve`` installs
        Prometheus metrics, and OpenTelemetry when tracing is on; by default the engine
        records nothing)."""
        if metrics is not None:
            self.runtime.metrics = metrics
            self.dispatcher.metrics = metrics
            self.housekeeping.metrics = metrics
        if tracer is not None:
            self.host.tracer = tracer

    def plugin_store(self, plugin: str) -> PluginStore:
        """A plugin's own storage, for use outside hooks (e.g. issuing a coupon)."""
        return self.runtime.plugin_store(plugin)

    # -- introspection --------------------------------------------------------------
    def plugins(self) -> list[dict[str, Any]]:
        return self.host.describe()

    def lifecycle(self) -> dict[str, Any]:
        return {name: m.describe() for name, m in self.machines.items()}
