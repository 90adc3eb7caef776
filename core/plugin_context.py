"""What a plugin gets at start: its name, its settings, its store, its logger, and the
few engine operations a plugin may call.

A plugin used to receive the whole ``Engine`` as ``Any`` and a ``name`` attribute the
host set on it; everything on the engine was then part of the plugin API by accident.
The context is that API on purpose: ``PluginEngine`` lists every operation the
built-in plugins need, typed and documented, and nothing more. What a plugin may not
do (write another plugin's store, change money or state outside its hook answers)
it cannot reach from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import structlog
from structlog.typing import FilteringBoundLogger

from ordnung.core.domain.catalog import Variant
from ordnung.core.domain.coupons import CouponGrant
from ordnung.core.domain.customers import Customer
from ordnung.core.domain.orders import Order
from ordnung.core.errors import PluginError
from ordnung.core.persistence.plugin_store import PluginStore

if TYPE_CHECKING:
    from ordnung.core.engine import Engine

S = TypeVar("S")

#: how many orders ``PluginEngine.customer_orders`` returns at most per page
ORDERS_PAGE = 200


class PluginEngine:
    """The engine operations open to one plugin; changes are made in its name.

    Reads: ``customer``, ``customer_orders``, ``variant``, ``payment_secured``.
    Writes, each through the engine's own operation (with its checks, its timeline
    event and its transaction): ``add_note``, ``record_notification``, and
    ``issue_coupon`` (which asks the coupon plugin through ``ordnung_issue_coupon``).
    """

    def __init__(self, engine: Engine, plugin: str) -> None:
        self._engine = engine
        self._plugin = plugin

    @property
    def actor(self) -> str:
        """Who the timeline names for what this plugin does."""
        return f"plugin:{self._plugin}"

    async def customer(self, customer_id: str) -> Customer:
        return await self._engine.customers.get(customer_id)

    async def customer_orders(self, customer_id: str, *, after: str | None = None,
                              limit: int = ORDERS_PAGE) -> list[Order]:
        """A page of the customer's orders, oldest first; ``after`` the last id seen."""
        return await self._engine.orders.list(customer_id=customer_id, after=after,
                                              limit=limit)

    async def variant(self, sku: str) -> Variant:
        return await self._engine.catalog.variant(sku)

    def payment_secured(self, order: Order) -> bool:
        """Whether the order's payments cover its total (or grant terms)."""
        return self._engine.orders.payment_secured(order)

    async def add_note(self, order_id: str, note: str) -> Order:
        """A note in the order's timeline (``order.note``)."""
        return await self._engine.orders.add_note(order_id, note, actor=self.actor)

    async def record_notification(self, order_id: str, *, channel: str, notice: str,
                                  to: str = "", **data: Any) -> Order:
        """Record that the customer was told (``notification.sent``, passed to webhooks)."""
        return await self._engine.orders.record_notification(
            order_id, channel=channel, notice=notice, to=to, actor=self.actor, **data)

    def coupon_issuers(self) -> list[str]:
        """The plugins that issue coupons (implement ``ordnung_issue_coupon``)."""
        return self._engine.host.implementers("ordnung_issue_coupon")

    async def issue_coupon(self, grant: CouponGrant, *, issuer: str) -> bool:
        """Have the plugin ``issuer`` issue ``grant``; False if the code exists already."""
        if issuer not in self.coupon_issuers():
            raise PluginError(self._plugin, f"{issuer!r} does not issue coupons")
        return bool(await self._engine.host.call("ordnung_issue_coupon", to=issuer,
                                                 grant=grant))


@dataclass(frozen=True, slots=True)
class PluginContext(Generic[S]):
    """One plugin's view of the running engine (``ordnung_plugin_started``).

    ``S`` is the plugin's ``Settings`` Struct (``None`` for a plugin without settings).
    """

    #: the plugin's name: its entry point's, or the one it was registered under
    name: str
    #: its validated settings (the instance the plugin was constructed with)
    settings: S
    #: its own records and counters
    store: PluginStore
    #: a structlog logger bound to ``plugin=<name>``
    log: FilteringBoundLogger
    #: the engine operations it may call
    engine: PluginEngine


def plugin_context(engine: Engine, name: str) -> PluginContext[Any]:
    return PluginContext(
        name=name, settings=engine.host.settings_of(name), store=engine.plugin_store(name),
        log=structlog.get_logger(f"ordnung.plugins.{name}").bind(plugin=name),
        engine=PluginEngine(engine, name))
