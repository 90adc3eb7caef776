"""After-commit reactions, driven from the outbox.

The process that committed an event delivers it at once; an event whose
writer died is picked up by ``sweep`` once its lease expires. A reaction
that raises is recorded per (event, hook, plugin) and retried with backoff
by ``retry_failed`` — never silently lost, never re-run for plugins that
already succeeded.

Which hooks run after commit is what their specs declare (``phase="after-commit"``);
the dispatcher only knows, for each of them, which events concern it and how its
arguments are made, and refuses to start when the two disagree.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, NamedTuple

import structlog

from ordnung.core.domain.events import Event
from ordnung.core.domain.inventory import AvailabilityChange
from ordnung.core.domain.orders import Order
from ordnung.core.errors import NotFound
from ordnung.core.hook_contracts import after_commit_hooks
from ordnung.core.observe import Metrics, NoMetrics
from ordnung.core.persistence.catalog import CatalogStore
from ordnung.core.persistence.journal import Journal
from ordnung.core.persistence.orders import OrderStore
from ordnung.core.persistence.stock import StockStore
from ordnung.core.plugin_host import PluginHost

log = structlog.get_logger("ordnung.dispatch")


Arguments = Callable[[Event, Order | None, bool], Awaitable[dict[str, Any]]]


class Reaction(NamedTuple):
    """How the dispatcher runs one after-commit hook."""

    #: whether an event concerns the hook at all
    applies: Callable[[Event], bool]
    #: the hook's arguments for an event (the order as committed, if known; ``fresh``)
    arguments: Arguments


class Dispatcher:
    def __init__(self, plugins: PluginHost, journal: Journal, orders: OrderStore,
                 stock: StockStore, catalog: CatalogStore) -> None:
        self.plugins = plugins
        self.journal = journal
        self.orders = orders
        self.stock = stock
        self.catalog = catalog
        self.metrics: Metrics = NoMetrics()
        reactions = {
            "ordnung_after_transition": Reaction(lambda ev: ev.transition is not None,
                                                 self._transition_arguments),
            "ordnung_on_event": Reaction(lambda ev: True, self._event_arguments),
            "ordnung_availability_changed": Reaction(
                lambda ev: ev.kind == "inventory.availability_changed",
                self._availability_arguments),
        }
        declared = after_commit_hooks()
        if set(declared) != set(reactions):
            raise RuntimeError(f"the after-commit hooks the specs declare ({sorted(declared)}) "
                               f"are not those the dispatcher runs ({sorted(reactions)})")
        #: in the order the specs declare them
        self.reactions: dict[str, Reaction] = {hook: reactions[hook] for hook in declared}

    def reacts_to(self, ev: Event) -> bool:
        """Whether any plugin reacts to ``ev`` after commit (it then needs an outbox row)."""
        return bool(self._hooks_for(ev))

    def _hooks_for(self, ev: Event) -> list[str]:
        return [hook for hook, reaction in self.reactions.items()
                if reaction.applies(ev) and self.plugins.has_impl(hook)]

    async def _arguments(self, hook: str, ev: Event, order: Order | None,
                         fresh: bool = False) -> dict[str, Any]:
        return await self.reactions[hook].arguments(ev, order, fresh)

    async def _event_arguments(self, ev: Event, order: Order | None,
                               fresh: bool) -> dict[str, Any]:
        return {"event": ev}

    async def _transition_arguments(self, ev: Event, order: Order | None,
                                    fresh: bool) -> dict[str, Any]:
        if order is None and ev.order_id:
            try:
                order = await self.orders.get(ev.order_id)
            except NotFound:
                order = None
        return {"event": ev, "order": order}

    async def _availability_arguments(self, ev: Event, order: Order | None,
                                      fresh: bool) -> dict[str, Any]:
        skus = list(ev.data.get("skus", []))
        known = ev.data.get("available")
        # just committed: the figures the reserving statements returned are current;
        # a late delivery (sweep, retry) reads them afresh
        if fresh and isinstance(known, dict) and all(s in known for s in skus):
            available = {s: int(known[s]) for s in skus}
        else:
            available = await self.stock.available(skus)
        channels = await self.catalog.active_channel_ids()
        return {"changes": [AvailabilityChange(sku=s, available=available[s],
                                               channels=channels, reason=ev.kind)
                            for s in skus]}

    async def _run(self, hook: str, plugin: str, ev: Event, order: Order | None,
                   fresh: bool) -> bool:
        try:
            kwargs = await self._arguments(hook, ev, order, fresh)
            await self.plugins.call(hook, to=plugin, **kwargs)
            return True
        except Exception as exc:  # a reaction failure must never undo the commit
            log.warning("reaction failed; will retry", hook=hook, plugin=plugin,
                        event_id=ev.id, event_kind=ev.kind, error=repr(exc))
            self.metrics.reaction_failed(plugin, hook)
            await self.journal.record_failure(ev.id, hook, plugin, repr(exc))
            return False

    async def deliver(self, events: Sequence[Event], order: Order | None = None, *,
                      fresh: bool = True) -> None:
        """Run every reaction for committed ``events``, then mark them delivered.
        ``fresh``: the events were committed just now, by this process."""
        delivered: list[str] = []
        for ev in events:
            hooks = self._hooks_for(ev)
            for hook in hooks:
                for plugin in self.plugins.implementers(hook):
                    await self._run(hook, plugin, ev, order, fresh)
            if hooks:  # only events with reactions have an outbox row to mark
                delivered.append(ev.id)
        self.journal.mark_dispatched_soon(delivered)

    async def sweep(self, limit: int = 100) -> int:
        """Deliver events whose writer did not (crash, lost connection)."""
        events = await self.journal.claim_stale(limit)
        if events:
            await self.deliver(events, fresh=False)
        return len(events)

    async def retry_failed(self) -> tuple[int, int]:
        """Retry due failed reactions; returns (succeeded, failed again)."""
        ok = failed = 0
        for failure in await self.journal.due_failures():
            if await self.retry(failure):
                ok += 1
            else:
                failed += 1
        return ok, failed

    async def retry(self, failure: dict[str, Any]) -> bool:
        """Run one failed reaction again now: True if it succeeded (or can never run
        again: its event is gone, or its plugin no longer implements the hook), and the
        failure is resolved; False if it failed again (recorded, with the next attempt
        backed off)."""
        ev = await self.journal.outbox_event(failure["outbox_id"])
        if ev is None or not self.plugins.implements(failure["plugin"], failure["hook"]):
            await self.journal.resolve_failure(failure["id"])
            return True
        try:
            kwargs = await self._arguments(failure["hook"], ev, None)
            await self.plugins.call(failure["hook"], to=failure["plugin"], **kwargs)
        except Exception as exc:
            self.metrics.reaction_failed(failure["plugin"], failure["hook"])
            await self.journal.record_failure(ev.id, failure["hook"], failure["plugin"],
                                              repr(exc))
            return False
        await self.journal.resolve_failure(failure["id"])
        return True
