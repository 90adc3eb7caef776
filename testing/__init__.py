"""ordnung's plugin author's kit: a shop to test in and conformance suites per plugin kind.

* ``open_shop`` / ``Shop`` / ``run``: a real Engine on a temporary SQLite database with a
  small catalogue and helper plugins (payment, carrier, tax) for the roles yours does
  not play; see :mod:`ordnung.testing.shop`.
* ``PaymentGatewayConformance``, ``CarrierConformance``, ``TaxConformance``,
  ``LoyaltyConformance``: subclass one as ``class Test...`` and set ``plugin``, ``name``
  and ``settings``; see :mod:`ordnung.testing.conformance`.
* the pytest plugin (entry point ``pytest11: ordnung``, always active once ordnung is
  installed): ``--ordnung-database-url`` runs the suites on PostgreSQL; see
  :mod:`ordnung.testing.pytest_plugin`.
"""

from ordnung.testing.conformance import (
    CarrierConformance,
    Conformance,
    LoyaltyConformance,
    PaymentGatewayConformance,
    TaxConformance,
)
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
