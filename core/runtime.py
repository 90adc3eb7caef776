"""The shared machinery behind the Engine's services.

``Runtime`` holds the database, stores, plugins and state machines.
``OrderChange`` is one transaction's worth of change to one order: it moves
entities through their machines (asking guards first), moves stock, and
collects the timeline events; ``Runtime.change_order`` commits all of it at
once, then hands the events to the dispatcher.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from functools import partial
from typing import Any, Protocol, TypeVar

import structlog

from ordnung.core.contexts import TransitionContext
from ordnung.core.dispatch import Dispatcher, reacts_to
from ordnung.core.domain.common import utcnow
from ordnung.core.domain.events import Event
from ordnung.core.domain.orders import Order
from ordnung.core.domain.webhooks import tells_webhooks
from ordnung.core.errors import Conflict, OutOfStock, TransitionVetoed
from ordnung.core.errors_db import TransientConflict
from ordnung.core.invariants import check_order, payment_secured, refresh_money_totals
from ordnung.core.lifecycle.machine import Machine
from ordnung.core.lifecycle.questions import Lifecycle
from ordnung.core.limits import InputLimits
from ordnung.core.observe import Metrics, NoMetrics
from ordnung.core.persistence.accounts import AccountStore
from ordnung.core.persistence.carts import CartStore
from ordnung.core.persistence.catalog import CatalogStore
from ordnung.core.persistence.codec import decode, encode
from ordnung.core.persistence.customers import CustomerStore
from ordnung.core.persistence.database import Database, Statement
from ordnung.core.persistence.idempotency import IdempotencyStore
from ordnung.core.persistence.journal import Journal, event
from ordnung.core.persistence.metrics import MetricsStore
from ordnung.core.persistence.order_parts import OrderPartStore
from ordnung.core.persistence.orders import OrderStore
from ordnung.core.persistence.outbox import OutboxStore
from ordnung.core.persistence.plugin_store import PluginStore
from ordnung.core.persistence.retrying import again, in_transaction
from ordnung.core.persistence.stock import StockStore, Want
from ordnung.core.persistence.webhook_deliveries import DeliveryStore
from ordnung.core.persistence.webhooks import WebhookStore
from ordnung.core.plugin_host import PluginHost
from ordnung.core.stock_moves import StockMoves

log = structlog.get_logger("ordnung")

T = TypeVar("T")


class Stateful(Protocol):
    id: str
    status: str


class _Bound:
    """The block of ``bound``: its ids set on entry, their context variables reset to
    what they were on exit.

    structlog's ``bound_contextvars`` copies the whole context to save what it
    overwrites, through two generator context managers; a placement enters such a block
    half a dozen times. Resetting the tokens restores the same values (an id bound
    outside the block again, none where there was none)."""

    __slots__ = ("_tokens", "_values")

    def __init__(self, values: dict[str, Any]) -> None:
        self._values = values
        self._tokens: Mapping[str, contextvars.Token[Any]] = {}

    def __enter__(self) -> None:
        self._tokens = structlog.contextvars.bind_contextvars(**self._values)

    def __exit__(self, *exc_info: object) -> None:
        structlog.contextvars.reset_contextvars(**self._tokens)


def bound(**values: Any) -> AbstractContextManager[None]:
    """Bind ids (order_id, cart_id...) to every log line inside the block."""
    return _Bound({k: v for k, v in values.items() if v})


class Runtime:
    def __init__(self, db: Database, plugins: PluginHost, machines: dict[str, Machine], *,
                 limits: InputLimits | None = None, tells_brokers: bool = False) -> None:
        """``tells_brokers``: event brokers are installed, so every event is kept in the
        outbox for them."""
        self.db = db
        self.plugins = plugins
        self.machines = machines
        #: what services ask about states, instead of naming them
        self.lifecycle = Lifecycle(machines)
        self.orders = OrderStore(db)
        self.order_parts = OrderPartStore(db)
        self.carts = CartStore(db)
        self.catalog = CatalogStore(db)
        self.customers = CustomerStore(db)
        self.stock = StockStore(db)
        self.journal = Journal(db, reacts_to=partial(reacts_to, plugins),
                               tells_webhooks=tells_webhooks, tells_brokers=tells_brokers)
        self.idempotency = IdempotencyStore(db)
        self.accounts = AccountStore(db)
        self.outbox = OutboxStore(db)
        self.webhooks = WebhookStore(db)
        self.webhook_deliveries = DeliveryStore(db)
        #: figures read for the metrics endpoint
        self.gauges = MetricsStore(db)
        self.dispatcher = Dispatcher(plugins, self.journal, self.orders, self.stock,
                                     self.catalog)
        self.metrics: Metrics = NoMetrics()
        #: bounds on lines, units and codes (from the engine's config)
        self.limits = limits or InputLimits()

    def plugin_store(self, plugin: str) -> PluginStore:
        """The named plugin's own records and counters."""
        return PluginStore(self.db, plugin)

    async def guard(self, ctx: TransitionContext) -> None:
        for plugin, reason in await self.plugins.call("ordnung_guard_transition", ctx=ctx):
            if reason:
                raise TransitionVetoed(ctx.machine, ctx.event, plugin, str(reason))

    async def transactionally(self, unit: Callable[[], Awaitable[T]]) -> T:
        """``await unit()`` in one transaction, run again whole if the database aborts it
        for a concurrent one (``ordnung.core.persistence.retrying``): ``unit`` reads
        afresh what it changes and does nothing outside the database."""
        return await in_transaction(self.db, unit, on_retry=self.transaction_retried)

    async def again(self, exc: TransientConflict, lost: int) -> None:
        """Between tries of a unit of work whose transaction the database aborted: wait,
        or raise ``exc`` when the tries are spent (see ``retrying.again``)."""
        await again(self.db, exc, lost, self.transaction_retried)

    def transaction_retried(self, sqlstate: str) -> None:
        """Count a unit of work run again (a metrics sink written before this figure
        existed has no such method: it is skipped)."""
        count = getattr(self.metrics, "transaction_retried", None)
        if count is not None:
            count(sqlstate)

    async def change_order(self, order_id: str, actor: str,
                           work: Callable[[OrderChange], Awaitable[T]],
                           *, retries: int = 3, known: Order | None = None) -> tuple[T, Order]:
        """Run ``work`` on the locked order in one transaction, then dispatch its events.

        ``known`` is the order as the caller just committed it: the first attempt works on
        a copy of it instead of reading the order again, and the version check of the
        save turns a concurrent change into a retry on a freshly locked read. A
        transaction the database aborted for a concurrent one (a deadlock) is run again
        the same way, on a fresh read, up to ``db.transaction_tries`` times: ``work`` must
        leave side effects outside the database to its caller."""
        with bound(order_id=order_id):
            stale = lost = 0
            while True:
                try:
                    async with self.db.transaction():
                        if not stale + lost and known is not None and known.id == order_id:
                            order = decode(encode(known), Order)
                        else:
                            order = await self.orders.get(order_id, for_update=True)
                        change = OrderChange(self, order, actor)
                        result = await work(change)
                        await change.commit(insert=False)
                    break
                except TransientConflict as exc:
                    lost += 1
                    await self.again(exc, lost)
                except Conflict:
                    stale += 1
                    if stale >= retries:
                        raise
                    log.info("order changed concurrently; retrying", attempt=stale)
            await self.deliver(change.events, change.order)
            return result, change.order

    async def deliver(self, events: Sequence[Event], order: Order | None, *,
                      available: Mapping[str, int] | None = None) -> None:
        """Hand committed events to the reactions (and count them); ``available``: units
        available per SKU as the committing statements returned them."""
        self.metrics.events(events)
        if events:
            await self.dispatcher.deliver(events, order, available=available)


class ReservationRefused(Exception):
    """The order's writes refused themselves whole: a reservation that went with them
    (``OrderChange.reserve_lines(with_writes=True)``) found a level without room, or not
    its SKU's only one any more. Nothing was written; the transaction is over."""


class OrderChange:
    """Changes to one order inside one transaction."""

    def __init__(self, runtime: Runtime, order: Order, actor: str) -> None:
        self.rt = runtime
        self.order = order
        self.actor = actor
        self.events: list[Event] = []
        #: every stock movement of this change goes through here
        self.stock = StockMoves(runtime.stock, actor=actor, order_id=order.id)
        #: further rows the change writes with the order (its external references)
        self.writes: list[Statement] = []
        self._version = order.version
        self._stored = runtime.orders.columns(order)

    # -- state machines -------------------------------------------------------------
    def machine(self, name: str) -> Machine:
        return self.rt.machines[name]

    def require(self, machine: str, entity: Stateful, capability: str) -> None:
        self.machine(machine).require(entity.id, entity.status, capability)

    def can(self, machine: str, entity: Stateful, capability: str) -> bool:
        return self.machine(machine).allows(entity.status, capability)

    def has_transition(self, machine: str, entity: Stateful, event_name: str) -> bool:
        return self.machine(machine).target(entity.status, event_name) is not None

    async def transition(self, machine: str, entity: Stateful, event_name: str,
                         data: dict[str, Any] | None = None) -> str:
        """Move ``entity`` by ``event_name`` after the guards agree; record the event."""
        source = entity.status
        target = self.machine(machine).next_state(entity.id, source, event_name)
        await self.rt.guard(TransitionContext(
            machine=machine, entity_id=entity.id, source=source, event=event_name,
            target=target, actor=self.actor, order=self.order, data=data or {}))
        entity.status = target
        self.emit(f"{machine}.{target}", machine=machine, entity_id=entity.id,
                  from_state=source, to_state=target, transition=event_name, data=data)
        return target

    def emit(self, kind: str, *, data: dict[str, Any] | None = None, **fields: Any) -> Event:
        self.order.event_seq += 1
        ev = event(kind, order_id=self.order.id, seq=self.order.event_seq, actor=self.actor,
                   data=data, **fields)
        self.events.append(ev)
        return ev

    # -- stock ------------------------------------------------------------------------
    async def move_stock(self, kind: str, sku: str, location_id: str, on_hand: int,
                         reserved: int, reason: str = "") -> None:
        await self.stock.move(kind, sku, location_id, on_hand, reserved, reason)

    async def reserve_lines(self, reason: str, *, with_writes: bool = False) -> list[str]:
        """Reserve every line of a new order (gift lines optional): the allocations go
        on the lines, a shortage raises ``OutOfStock``; returns the skipped gift lines.

        ``with_writes``: where the worker knows every line's level to be its SKU's only
        one, the reservation goes with the order's writes, in ``commit``'s statement
        (``StockMoves.reserve_with_writes``), which raises ``ReservationRefused`` if a
        level had no room after all: nothing was written, and the caller reserves again
        without it (a shortage and a gift out of stock are then told as usual)."""
        wants = [Want(key=line.id, sku=line.sku, quantity=line.quantity, optional=line.gift)
                 for line in self.order.lines]
        if with_writes and (allocations := self.stock.reserve_with_writes(wants, reason)):
            for line in self.order.lines:
                line.allocations = allocations[line.id]
            return []
        outcome = await self.stock.reserve(wants, reason)
        if outcome.shortages:
            raise OutOfStock(outcome.shortages)
        for line in self.order.lines:
            line.allocations = outcome.allocations.get(line.id, [])
        return outcome.skipped

    async def release_open_reservations(self, reason: str) -> None:
        """Give back every reserved, unshipped unit of the order."""
        for line in sorted(self.order.lines, key=lambda ln: ln.sku):
            for alloc in line.allocations:
                if alloc.quantity:
                    await self.move_stock("release", line.sku, alloc.location_id, 0,
                                          -alloc.quantity, reason)
            line.cancelled = line.quantity - line.shipped
            line.allocations = []

    async def release_claims(self) -> None:
        """Let plugins give back what they claimed for this order (coupon uses...)."""
        await self.rt.plugins.call(
            "ordnung_release_resources", order=self.order,
            each=lambda plugin: {"store": self.rt.plugin_store(plugin)})

    def remember(self, namespace: str, reference: str, entity_id: str) -> None:
        """Map a gateway reference or a tracking number to this order and ``entity_id``
        (first writer wins), written with the change."""
        self.writes.append(self.rt.orders.remembering(namespace, reference, self.order.id,
                                                      entity_id))

    # -- commit -------------------------------------------------------------------------
    async def advance(self) -> None:
        """Fire ``payment_secured`` when the payments allow and the state has that edge."""
        if self.has_transition("order", self.order, "payment_secured") and payment_secured(
                self.order):
            await self.transition("order", self.order, "payment_secured")

    async def commit(self, *, insert: bool, also: Sequence[Statement] = ()) -> list[int]:
        """Write the change: the order's row and everything that goes with it, in one
        statement on PostgreSQL. ``also``: further writes of the caller's to run with
        them; how many rows each one's ``RETURNING`` gave (a guarded save's check)."""
        await self.advance()
        moved = self.stock.availability
        if moved:
            data: dict[str, Any] = {"skus": sorted(moved)}
            if moved <= self.stock.known_availability.keys():
                data["available"] = {s: self.stock.known_availability[s] for s in data["skus"]}
            self.emit("inventory.availability_changed", data=data)
        refresh_money_totals(self.order)
        check_order(self.order)
        self.order.updated_at = utcnow()
        # the order's row, its look-up rows, its references, its ledger rows, its events
        # and their outbox rows: written together (one statement on PostgreSQL), none
        # reading what another writes
        if insert:
            first = self.rt.orders.inserting(self.order)
            parts: list[Statement] = []
        else:
            first = self.rt.orders.saving(self.order, self._version, stored=self._stored)
            parts = self.rt.order_parts.recording(self.order)
        statements = [first, *parts, *self.writes, *also, *self.stock.recording(),
                      *self.rt.journal.appending(self.events)]
        start = 1 + len(parts) + len(self.writes)
        if self.stock.heading is not None and insert:
            # the reservation heads the writes, and each of ``also`` must match a row
            headed = await self.rt.db.run_headed(
                self.stock.heading, statements, required=range(start, start + len(also)))
            if not headed.stood:
                self.stock.refused()
                raise ReservationRefused
            self.stock.reserved(headed.returned)
            return [1] * len(also)
        rows = await self.rt.db.run_together(
            statements, guarded=not insert and not also)  # ``also``'s checks need the transaction
        if not insert:
            self.rt.orders.saved(self.order, rows[0])
        return rows[start:start + len(also)]
