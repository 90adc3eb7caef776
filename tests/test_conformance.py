"""Every built-in plugin passes the conformance suite of its kind (ordnung.testing).

The suites are the ones third-party plugin authors run; here they run on the
test-suite's database (SQLite or PostgreSQL, as ORDNUNG_TEST_DB says).
"""

from __future__ import annotations

import pytest

from ordnung.core import Address
from ordnung.plugins.carriers.flat_rate import FlatRate
from ordnung.plugins.carriers.free_shipping import FreeShipping
from ordnung.plugins.carriers.store_pickup import StorePickup
from ordnung.plugins.carriers.weight_bands import WeightBands
from ordnung.plugins.loyalty.coupons import Coupons
from ordnung.plugins.loyalty.free_gift import FreeGift
from ordnung.plugins.payments.manual import ManualPayments
from ordnung.plugins.payments.sandbox import SandboxGateway
from ordnung.plugins.tax.eu_vat import EuVat
from ordnung.plugins.tax.table_tax import TableTax
from ordnung.plugins.tax.us_sales_tax import UsSalesTax
from ordnung.testing import (
    CarrierConformance,
    LoyaltyConformance,
    PaymentGatewayConformance,
    TaxConformance,
)

BERLIN = Address(name="Erika Mustermann", line1="Heidestraße 17", city="Berlin",
                 postal_code="51147", country="DE")
NEW_YORK = Address(name="John Doe", line1="350 5th Ave", city="New York", region="NY",
                   postal_code="10118", country="US")


@pytest.fixture
def ordnung_database_url(database_url: str) -> str:
    """Run the suites on this test-suite's clean database (overrides the kit's default)."""
    return database_url


# --------------------------------------------------------------------------- payments


class TestSandboxGateway(PaymentGatewayConformance):
    plugin = SandboxGateway
    name = "sandbox"
    approve_token = "tok_success"
    decline_token = "tok_decline"


class TestSandboxGatewayAsync(TestSandboxGateway):
    """``tok_async``: the gateway confirms later; nothing is captured before."""

    approve_token = "tok_async"
    authorizes = "awaits_confirmation"


class TestManualPayments(PaymentGatewayConformance):
    plugin = ManualPayments
    name = "manual"
    method = "bank_transfer"
    authorizes = "pending"


# --------------------------------------------------------------------------- carriers


class TestFlatRate(CarrierConformance):
    plugin = FlatRate
    name = "flat_rate"
    settings = {"countries": ["DE", "AT"]}
    unserved_address = NEW_YORK


class TestWeightBands(CarrierConformance):
    plugin = WeightBands
    name = "weight_bands"
    # 1 kg, 5 kg and 31.5 kg bands: a light cart and one with a 12 kg pan
    lines = (("KIT-SHIRT", 1), ("KIT-HEAVY", 1))


class TestWeightBandsLight(TestWeightBands):
    lines = (("KIT-SHIRT", 2),)


class TestFreeShipping(CarrierConformance):
    plugin = FreeShipping
    name = "free_shipping"
    settings = {"fallback_prices": {"EUR": 495}, "countries": ["DE", "AT"]}
    unserved_address = NEW_YORK


class TestFreeShippingOverTheThreshold(TestFreeShipping):
    lines = (("KIT-POSTER", 2),)


class TestStorePickup(CarrierConformance):
    plugin = StorePickup
    name = "store_pickup"
    settings = {"countries": ["DE"]}
    unserved_address = NEW_YORK


# --------------------------------------------------------------------------- tax


class TestTableTax(TaxConformance):
    plugin = TableTax
    name = "table_tax"
    unserved_address = NEW_YORK


class TestEuVat(TaxConformance):
    plugin = EuVat
    name = "eu_vat"
    unserved_address = NEW_YORK


class TestUsSalesTax(TaxConformance):
    plugin = UsSalesTax
    name = "us_sales_tax"
    address = NEW_YORK
    currency = "USD"
    unserved_address = BERLIN


# --------------------------------------------------------------------------- loyalty


class TestFreeGift(LoyaltyConformance):
    plugin = FreeGift
    name = "free_gift"
    settings = {"tiers": [
        {"threshold": 5000, "currency": "EUR", "sku": "KIT-GIFT", "name": "tote bag"},
        {"threshold": 20000, "currency": "EUR", "sku": "KIT-GIFT", "quantity": 2}]}


class TestCoupons(LoyaltyConformance):
    plugin = Coupons
    name = "coupons"
    settings = {"coupons": [
        {"code": "SAVE10", "percent": 10, "stackable": True},
        {"code": "FIFTY", "amount": 5000, "currency": "EUR", "stackable": True},
        {"code": "ONCE", "percent": 5, "stackable": True, "max_uses": 1},
    ]}
    # FIFTY takes the first cart (EUR 25.00) to zero: the core caps it
    codes = ("save10", "FIFTY", "ONCE")
