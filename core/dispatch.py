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

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

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


#: which events concern each after-commit hook (the specs say which hooks run after
#: commit; this says, per hook, for which events)
APPLIES: dict[str, Callable[[Event], bool]] = {
    "ordnung_after_transition": lambda ev: ev.transition is not None,
    "ordnung_on_event": lambda ev: True,
    "ordnung_availability_changed": lambda ev: ev.kind == "inventory.availability_changed",
}


def hooks_for(plugins: PluginHost, ev: Event) -> list[str]:
    """The after-commit hooks some plugin implements for ``ev``, in the specs' order."""
    return [hook for hook in after_commit_hooks()
            if APPLIES[hook](ev) and plugins.has_impl(hook)]


def reacts_to(plugins: PluginHost, ev: Event) -> bool:
    """Whether any plugin reacts to ``ev`` after commit (it then needs an outbox row): a
    function of the plugins alone, so the journal knows it before a dispatcher exists."""
    return bool(hooks_for(plugins, ev))


#: a hook's arguments for an event: the event, its order if at hand, and for a delivery
#: just after the commit the availability figures the committing statements returned (None:
#: a late delivery, which reads what it needs afresh)
Arguments = Callable[[Event, Order | None, Mapping[str, int] | None],
                     Awaitable[dict[str, Any]]]


class Dispatcher:
    def __init__(self, plugins: PluginHost, journal: Journal, orders: OrderStore,
                 stock: StockStore, catalog: CatalogStore) -> None:
        self.plugins = plugins
        self.journal = journal
        self.orders = orders
        self.stock = stock
        self.catalog = catalog
        self.metrics: Metrics = NoMetrics()
        arguments: dict[str, Arguments] = {
            "ordnung_after_transition": self._transition_arguments,
            "ordnung_on_event": self._event_arguments,
            "ordnung_availability_changed": self._availability_arguments,
        }
        declared = after_commit_hooks()
        if set(declared) != set(arguments) or set(declared) != set(APPLIES):
            raise RuntimeError(f"the after-commit hooks the specs declare ({sorted(declared)}) "
                               f"are not those the dispatcher runs ({sorted(arguments)})")
        #: in the order the specs declare them
        self.arguments: dict[str, Arguments] = {hook: arguments[hook] for hook in declared}

    def reacts_to(self, ev: Event) -> bool:
        """Whether any plugin reacts to ``ev`` after commit (it then needs an outbox row)."""
        return reacts_to(self.plugins, ev)

    def _hooks_for(self, ev: Event) -> list[str]:
        return hooks_for(self.plugins, ev)

    async def _arguments(self, hook: str, ev: Event, order: Order | None,
                         fresh: Mapping[str, int] | None = None) -> dict[str, Any]:
        return await self.arguments[hook](ev, order, fresh)

    async def _event_arguments(self, ev: Event, order: Order | None,
                               fresh: Mapping[str, int] | None) -> dict[str, Any]:
        return {"event": ev}

    async def _transition_arguments(self, ev: Event, order: Order | None,
                                    fresh: Mapping[str, int] | None) -> dict[str, Any]:
        if order is None and ev.order_id:
            try:
                order = await self.orders.get(ev.order_id)
            except NotFound:
                order = None
        return {"event": ev, "order": order}

    async def _availability_arguments(self, ev: Event, order: Order | None,
                                      fresh: Mapping[str, int] | None) -> dict[str, Any]:
        skus = list(ev.data.get("skus", []))
        # just committed: the figures the reserving statements returned are current (in
        # the event, or told beside it when they came with its own write); a late
        # delivery (sweep, retry) reads them afresh
        known: dict[str, int] = {}
        if fresh is not None:
            if isinstance(told := ev.data.get("available"), dict):
                known.update(told)
            known.update(fresh)
        if fresh is not None and all(s in known for s in skus):
            available = {s: int(known[s]) for s in skus}
        else:
            available = await self.stock.available(skus)
        channels = await self.catalog.active_channel_ids()
        return {"changes": [AvailabilityChange(sku=s, available=available[s],
                                               channels=channels, reason=ev.kind)
                            for s in skus]}

    async def _run(self, hook: str, plugin: str, ev: Event, order: Order | None,
                   fresh: Mapping[str, int] | None) -> bool:
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
                      fresh: bool = True, available: Mapping[str, int] | None = None) -> None:
        """Run every reaction for committed ``events``, then mark them delivered.
        ``fresh``: the events were committed just now, by this process; ``available``:
        then, units available per SKU as the committing statements returned them."""
        delivered: list[str] = []
        known = dict(available or {}) if fresh else None
        for ev in events:
            hooks = self._hooks_for(ev)
            for hook in hooks:
                for plugin in self.plugins.implementers(hook):
                    await self._run(hook, plugin, ev, order, known)
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
