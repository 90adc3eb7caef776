"""``/metrics`` in the Prometheus text format (prometheus-client).

What an operator watches: requests by route and status with their latency; placement
attempts by outcome; committed events by kind (orders placed, payments by outcome...);
failed plugin reactions; transactions run again after a deadlock; rows the housekeeping
deleted, by kind; the outbox backlog and the age of its oldest undelivered event; database
connections open and in use.

With several worker processes (``ordnung serve --workers N``) every worker keeps its
own counters, so a scrape that reached one worker would see a fraction of them.
prometheus-client's multiprocess mode fixes that: ``ordnung serve`` points
``PROMETHEUS_MULTIPROC_DIR`` at a fresh folder (or the operator's own) before any worker
starts, each worker writes its values there, and a scrape adds them up. The backlog
figures are read from the database at scrape time, so they are the same whichever
worker answers.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from litestar import Request, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from prometheus_client.core import GaugeMetricFamily

from ordnung.api.asgi import Scope
from ordnung.api.auth import admin
from ordnung.api.routes.handlers import get
from ordnung.core import Engine
from ordnung.core.domain.common import utcnow
from ordnung.core.domain.events import Event
from ordnung.core.observe import PlacementOutcome

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
#: methods outside this set are counted as "other" (a client chooses the method: an
#: open label would let it create series without bound)
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

REQUESTS = Counter("ordnung_http_requests", "HTTP requests answered, by route template "
                   "('unmatched' for paths no route serves) and status",
                   ["method", "route", "status"])
LATENCY = Histogram("ordnung_http_request_duration_seconds",
                    "Time from a request's arrival to the end of its answer",
                    ["method", "route"],
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
PLACEMENTS = Counter("ordnung_placement_attempts", "Placement requests by outcome (placed, "
                     "declined, out_of_stock, refused); a repeated idempotent request "
                     "counts again, the orders themselves are events", ["outcome"])
EVENTS = Counter("ordnung_events", "Committed events by kind (order.placed, "
                 "payment.captured, shipment.shipped ...)", ["kind"])
PAYMENTS = Counter("ordnung_payments", "Payment state changes by outcome (authorized, "
                   "captured, refunded, voided, failed ...)", ["outcome"])
TRANSACTION_RETRIES = Counter(
    "ordnung_transaction_retries", "Units of work run again because the database aborted "
    "their transaction for a concurrent one, by SQLSTATE (40P01 deadlock, 40001 "
    "serialization failure)", ["sqlstate"])
HOUSEKEEPING_DELETED = Counter(
    "ordnung_housekeeping_deleted", "Rows the housekeeping deleted once their time was over, "
    "by kind (rate_limits, idempotency_records, sessions_expired, guest_carts, outbox ...)",
    ["kind"])
REACTION_FAILURES = Counter("ordnung_reaction_failures", "Plugin reactions that raised "
                            "(each is recorded and retried)", ["plugin", "hook"])
DB_OPEN = Gauge("ordnung_db_connections_open", "Database connections open",
                multiprocess_mode="livesum")
DB_IN_USE = Gauge("ordnung_db_connections_in_use", "Database connections in use",
                  multiprocess_mode="livesum")


class PrometheusMetrics:
    """The engine's metrics sink (``ordnung.core.observe.Metrics``) for this process."""

    def __init__(self) -> None:
        # each series looked up once (see ``RequestSeries``): a placement counts five
        # events or more
        self._events: dict[str, Any] = {}
        self._payments: dict[str, Any] = {}

    def placement(self, outcome: PlacementOutcome, channel: str) -> None:
        PLACEMENTS.labels(outcome).inc()

    def events(self, events: Sequence[Event]) -> None:
        for ev in events:
            series = self._events.get(ev.kind)
            if series is None:
                series = self._events[ev.kind] = EVENTS.labels(ev.kind)
            series.inc()
            if ev.machine == "payment" and ev.to_state:
                series = self._payments.get(ev.to_state)
                if series is None:
                    series = self._payments[ev.to_state] = PAYMENTS.labels(ev.to_state)
                series.inc()

    def reaction_failed(self, plugin: str, hook: str) -> None:
        REACTION_FAILURES.labels(plugin, hook).inc()

    def transaction_retried(self, sqlstate: str) -> None:
        TRANSACTION_RETRIES.labels(sqlstate).inc()

    def housekeeping_deleted(self, deleted: Mapping[str, int]) -> None:
        for kind, count in deleted.items():
            HOUSEKEEPING_DELETED.labels(kind).inc(count)


def pool_use(engine: Engine) -> tuple[int, int]:
    """(connections open, in use) of this process's pool."""
    return engine.db.pool_use()


#: the (open, in use) figures last written to the pool gauges by this process (a
#: forked child starts with gauges of its own: it writes its first figures)
_pool_written: list[tuple[int, int] | None] = [None]
os.register_at_fork(after_in_child=lambda: _pool_written.__setitem__(0, None))


def record_pool(engine: Engine) -> tuple[int, int]:
    """Set the pool gauges to ``engine``'s figures; a gauge already showing its figure
    is not written again (in multiprocess mode each write goes to a shared file)."""
    figures = pool_use(engine)
    if figures != _pool_written[0]:
        DB_OPEN.set(figures[0])
        DB_IN_USE.set(figures[1])
        _pool_written[0] = figures
    return figures


class RequestSeries:
    """The request counter's and the latency histogram's series, looked up once each.

    ``labels(...)`` builds the label tuple and takes the metric's lock on every call;
    the series it returns stays the same for the life of the process (nothing here
    removes one), so each is kept by its labels."""

    def __init__(self) -> None:
        self.counters: dict[tuple[str, str, int], Any] = {}
        self.latencies: dict[tuple[str, str], Any] = {}

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        counter = self.counters.get((method, route, status))
        if counter is None:
            counter = self.counters[method, route, status] = REQUESTS.labels(
                method, route, str(status))
        counter.inc()
        latency = self.latencies.get((method, route))
        if latency is None:
            latency = self.latencies[method, route] = LATENCY.labels(method, route)
        latency.observe(seconds)


def route_of(scope: Scope) -> str:
    """The route's template (``/orders/{order_id:str}``), set by litestar's router; a
    path no route serves has none."""
    return str(scope.get("path_template") or "unmatched")


async def database_families(engine: Engine) -> list[GaugeMetricFamily]:
    """Figures read from the database at scrape time (the same from every worker)."""
    count, oldest = await engine.runtime.gauges.backlog()
    failures = await engine.runtime.gauges.open_failures()
    age = max(0.0, (utcnow() - oldest).total_seconds()) if count and oldest else 0.0
    families = [
        GaugeMetricFamily("ordnung_outbox_backlog", "Events not yet delivered to their "
                          "reactions", value=count),
        GaugeMetricFamily("ordnung_outbox_oldest_undelivered_seconds", "Age of the oldest "
                          "undelivered event (0 when there is none)", value=age),
        GaugeMetricFamily("ordnung_reaction_failures_open", "Failed plugin reactions not "
                          "yet resolved", value=failures),
    ]
    return families


class _Families:
    def __init__(self, families: list[GaugeMetricFamily]) -> None:
        self.families = families

    def collect(self) -> list[GaugeMetricFamily]:
        return self.families


@get("/metrics", guards=[admin("metrics")], tags=["operations"], media_type=CONTENT_TYPE_LATEST)
async def metrics_endpoint(request: Request[Any, Any, Any]) -> Response[bytes]:
    """Prometheus metrics of every worker (text format)."""
    engine: Engine = request.app.state.engine
    record_pool(engine)
    if os.environ.get(MULTIPROC_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        processes = generate_latest(registry)
    else:
        processes = generate_latest(REGISTRY)
    fresh = CollectorRegistry()
    fresh.register(_Families(await database_families(engine)))
    return Response(processes + generate_latest(fresh), media_type=CONTENT_TYPE_LATEST)


def process_exited() -> None:
    """A worker that stops takes its live gauges with it (multiprocess mode)."""
    if os.environ.get(MULTIPROC_ENV):
        multiprocess.mark_process_dead(os.getpid())
