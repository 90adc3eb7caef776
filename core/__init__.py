"""ordnung's core: domain types, state machines, pricing, hooks, persistence and the Engine.

It imports no web framework and no vendor library.
"""

from ordnung.core.config import EngineConfig
from ordnung.core.domain.addresses import Address
from ordnung.core.domain.carts import CartLine
from ordnung.core.domain.catalog import Product, Variant
from ordnung.core.domain.inventory import Channel, Location
from ordnung.core.domain.money import Money
from ordnung.core.engine import Engine
from ordnung.core.hookspecs import hookimpl
from ordnung.core.logging import quiet_by_default
from ordnung.core.requests import PaymentInput, PlaceOrder, ReturnLineInput

__all__ = [
    "Address",
    "CartLine",
    "Channel",
    "Engine",
    "EngineConfig",
    "Location",
    "Money",
    "PaymentInput",
    "PlaceOrder",
    "Product",
    "ReturnLineInput",
    "Variant",
    "hookimpl",
]

# a library stays quiet until its host configures logging (structlog's loggers are lazy:
# this takes effect for every module's logger, wherever it was created)
quiet_by_default()
