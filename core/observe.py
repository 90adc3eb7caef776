"""What the engine reports about itself while it works: metrics and trace spans.

The core counts a few things an operator watches (placements by outcome, committed
events, failed plugin reactions, transactions run again after a deadlock, rows the
housekeeping deleted) and opens a span around every plugin hook call without knowing
who listens: it calls a ``Metrics`` object and a ``Tracer``, which do nothing unless the
host installs them (``ordnung serve`` installs Prometheus metrics, and OpenTelemetry
tracing when asked; an embedding application may install its own with
``Engine.observe_with``). No metrics or tracing library is imported here.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from typing import Any, Literal, Protocol

from ordnung.core.domain.events import Event
from ordnung.core.domain.orders import Order
from ordnung.core.errors import OutOfStock, PaymentDeclined

PlacementOutcome = Literal["placed", "declined", "out_of_stock", "refused"]


class Metrics(Protocol):
    def placement(self, outcome: PlacementOutcome, channel: str) -> None:
        """One placement attempt ended: ``placed`` (an order exists, its payment
        authorized or pending), ``declined`` (payment declined), ``out_of_stock``, or
        ``refused`` (any other error: invalid, vetoed, unavailable)."""

    def events(self, events: Sequence[Event]) -> None:
        """Events that were just committed (each counts once, in the committing process)."""

    def reaction_failed(self, plugin: str, hook: str) -> None:
        """A plugin's after-commit reaction raised (it is recorded and retried)."""

    def transaction_retried(self, sqlstate: str) -> None:
        """A unit of work is run again because the database aborted its transaction for
        a concurrent one (``sqlstate``: ``40P01`` deadlock, ``40001`` serialization
        failure). Optional: a sink without it is not told."""

    def housekeeping_deleted(self, deleted: Mapping[str, int]) -> None:
        """A housekeeping pass deleted these rows, by kind (``rate_limits``,
        ``idempotency_records`` ...; 0 for a kind it found nothing of). Optional: a sink
        without it is not told."""


class Tracer(Protocol):
    def span(self, name: str, attributes: Mapping[str, str]) -> AbstractContextManager[object]:
        """A span around one unit of work (a plugin hook call), child of the current one."""


class NoMetrics:
    """The default: nothing is recorded."""

    def placement(self, outcome: PlacementOutcome, channel: str) -> None:
        return None

    def events(self, events: Sequence[Event]) -> None:
        return None

    def reaction_failed(self, plugin: str, hook: str) -> None:
        return None

    def transaction_retried(self, sqlstate: str) -> None:
        return None

    def housekeeping_deleted(self, deleted: Mapping[str, int]) -> None:
        return None


def counts_placements(
        place: Callable[..., Awaitable[Order]]) -> Callable[..., Awaitable[Order]]:
    """Count the outcome of every call of a placement method (through ``self.metrics``).

    A repeat of an idempotent placement is an attempt too; the orders themselves are
    counted once each by their ``order.placed`` event."""

    @functools.wraps(place)
    async def counted(self: Any, request: Any, *args: Any, **kwargs: Any) -> Order:
        channel = str(getattr(request, "channel", "") or "")
        try:
            order = await place(self, request, *args, **kwargs)
        except PaymentDeclined:
            self.metrics.placement("declined", channel)
            raise
        except OutOfStock:
            self.metrics.placement("out_of_stock", channel)
            raise
        except Exception:
            self.metrics.placement("refused", channel)
            raise
        self.metrics.placement("placed", order.channel)
        return order

    return counted
