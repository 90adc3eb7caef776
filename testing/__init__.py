"""ordnung's plugin author's kit: a shop to test in and conformance suites per plugin kind.

* ``open_shop`` / ``Shop`` / ``run``: a real Engine on a temporary SQLite database with a
  small catalogue and helper plugins (payment, carrier, tax) for the roles yours does
  not play; see :mod:`ordnung.testing.shop`. Its products and stock (``KIT_PRODUCTS``,
  ``KIT_STOCK``) are described, with the demo shop's and the test suite's, in
  :mod:`ordnung.testing.catalogue`.
* ``PaymentGatewayConformance``, ``CarrierConformance``, ``TaxConformance``,
  ``LoyaltyConformance``: subclass one as ``class Test...`` and set ``plugin``, ``name``
  and ``settings``; see :mod:`ordnung.testing.conformance`.
* the pytest plugin (entry point ``pytest11: ordnung``, always active once ordnung is
  installed): ``--ordnung-database-url`` runs the suites on PostgreSQL; see
  :mod:`ordnung.testing.pytest_plugin`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ordnung.testing.shop import (
    KIT_ADDRESS,
    KIT_CARRIER,
    KIT_GATEWAY,
    KIT_GIFT_PLUGIN,
    KIT_PRODUCTS,
    KIT_SHIPPING_METHOD,
    KIT_STOCK,
    KIT_TAX,
    KitCarrier,
    KitGateway,
    KitGift,
    KitTax,
    Shop,
    open_shop,
    reset_database,
    run,
)

if TYPE_CHECKING:
    from ordnung.testing.conformance import (
        CarrierConformance,
        Conformance,
        LoyaltyConformance,
        PaymentGatewayConformance,
        TaxConformance,
    )

#: the suites import pytest: they load on first use, so that importing the shop or the
#: catalogue (``ordnung serve --demo`` seeds from it) needs no test extra
_SUITES = frozenset({"CarrierConformance", "Conformance", "LoyaltyConformance",
                     "PaymentGatewayConformance", "TaxConformance"})


def __getattr__(name: str) -> Any:
    if name in _SUITES:
        from ordnung.testing import conformance

        return getattr(conformance, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = [
    "CarrierConformance",
    "Conformance",
    "KIT_ADDRESS",
    "KIT_CARRIER",
    "KIT_GATEWAY",
    "KIT_GIFT_PLUGIN",
    "KIT_PRODUCTS",
    "KIT_SHIPPING_METHOD",
    "KIT_STOCK",
    "KIT_TAX",
    "KitCarrier",
    "KitGateway",
    "KitGift",
    "KitTax",
    "LoyaltyConformance",
    "PaymentGatewayConformance",
    "Shop",
    "TaxConformance",
    "open_shop",
    "reset_database",
    "run",
]
