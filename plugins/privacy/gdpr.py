"""Privacy (GDPR/CCPA): consent history, a statement of what the shop keeps, request log.

The core exports everything it holds about a customer and, on erasure,
anonymises the customer and their orders while keeping the financial record.
This plugin adds to both:

* **Export** (``ordnung_export_customer_data``), under ``"privacy"``: the
  customer's current consents and their history (recorded with
  ``record_consent``), what the shop keeps, why, on which legal basis and for
  how long (``categories``, from the settings), the retention of the
  financial record, the CCPA disclosures, and the log of earlier requests.
  Every export is logged (date only) as accountability evidence.
* **Erasure** (``ordnung_erase_customer_data``): deletes the plugin's own
  records about the customer (consent history, request log) and keeps only
  an erasure receipt keyed by the customer id with the date and the number of
  records deleted: no personal data.

Storefronts record consent changes with
``await record_consent(engine, customer_id, "newsletter", True, source="checkout")``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec

from ordnung.plugin import Customer, PluginStore, WithContext, hookimpl

CONSENT_KIND = "consent"
REQUEST_KIND = "request"
ERASURE_KIND = "erasure"


class DataCategory(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    category: str
    data: list[str]
    purpose: str
    legal_basis: str
    retention: str


def _default_categories() -> list[DataCategory]:
    return [
        DataCategory(
            category="account", data=["email", "name", "phone", "saved addresses"],
            purpose="your customer account, order confirmations and service messages",
            legal_basis="contract (GDPR Art. 6(1)(b))",
            retention="until you ask us to erase it"),
        DataCategory(
            category="orders", data=["ordered items", "prices, discounts, tax, totals",
                                     "payments and refunds", "shipments and returns"],
            purpose="accounting and tax records",
            legal_basis="legal obligation (GDPR Art. 6(1)(c))",
            retention="kept for the statutory retention period; on erasure your name, "
                      "address and contact details are removed from them"),
        DataCategory(
            category="delivery", data=["shipping and billing address", "tracking numbers",
                                       "shipping labels"],
            purpose="delivering your orders",
            legal_basis="contract (GDPR Art. 6(1)(b))",
            retention="removed on erasure; labels are deleted"),
        DataCategory(
            category="consents", data=["what you agreed to or withdrew, when, and where"],
            purpose="proving consent",
            legal_basis="GDPR Art. 7(1)",
            retention="until you ask us to erase it"),
    ]


def _now() -> str:
    return datetime.now(UTC).isoformat()


async def record_consent(engine: Any, customer_id: str, purpose: str, granted: bool, *,
                         source: str = "", plugin: str = "privacy") -> None:
    """Log a consent given or withdrawn (the customer's current consents live in the core)."""
    at = _now()
    await engine.plugin_store(plugin).put(CONSENT_KIND, f"{customer_id}:{at}:{purpose}", {
        "purpose": purpose, "granted": granted, "source": source, "at": at})


class Privacy(WithContext["Privacy.Settings"]):
    """GDPR/CCPA: consent history, what the shop keeps and why, request log; erases its records."""

    class Settings(msgspec.Struct, forbid_unknown_fields=True):
        #: who is responsible for the data (the shop), and how to reach them about privacy
        controller: str = ""
        contact: str = ""
        categories: list[DataCategory] = msgspec.field(default_factory=_default_categories)
        #: years the financial record (orders, invoices) is kept by law
        financial_retention_years: int = 10
        #: CCPA: whether personal information is sold or shared for advertising
        sells_personal_information: bool = False

        def __post_init__(self) -> None:
            if self.financial_retention_years < 0:
                raise ValueError("financial_retention_years cannot be negative")

    def __init__(self, settings: Privacy.Settings) -> None:
        self.settings = settings

    def _store(self) -> PluginStore:
        return self.started.store

    @hookimpl
    async def ordnung_export_customer_data(self, customer: Customer) -> dict[str, Any]:
        s = self.settings
        store = self._store()
        prefix = f"{customer.id}:"
        history = [data for key, data, _ in await store.records(CONSENT_KIND, prefix)
                   if key.startswith(prefix)]
        requests = [data for key, data, _ in await store.records(REQUEST_KIND, prefix)
                    if key.startswith(prefix)]
        erasure = await store.get(ERASURE_KIND, customer.id)
        at = _now()
        await store.put(REQUEST_KIND, f"{customer.id}:{at}:export",
                        {"kind": "export", "at": at})
        return {
            "controller": {"name": s.controller, "contact": s.contact},
            "consents": {"current": dict(customer.consents), "history": history},
            "data_we_keep": [msgspec.to_builtins(c) for c in s.categories],
            "retention": (f"Orders, payments and invoices are kept for "
                          f"{s.financial_retention_years} years as required by tax and "
                          "accounting law, also after an erasure, without your name, address "
                          "or contact details. Everything else is kept until you ask us to "
                          "erase it."),
            "ccpa": {"sells_personal_information": s.sells_personal_information,
                     "shares_for_cross_context_advertising": s.sells_personal_information,
                     "categories_collected": [c.category for c in s.categories]},
            "requests": requests,
            "erased": erasure,
        }

    @hookimpl
    async def ordnung_erase_customer_data(self, customer: Customer) -> None:
        store = self._store()
        prefix = f"{customer.id}:"
        deleted = 0
        for kind in (CONSENT_KIND, REQUEST_KIND):
            for key, _, _ in await store.records(kind, prefix):
                if key.startswith(prefix):
                    await store.delete(kind, key)
                    deleted += 1
        await store.put(ERASURE_KIND, customer.id, {"erased_at": _now(),
                                                   "records_deleted": deleted})
