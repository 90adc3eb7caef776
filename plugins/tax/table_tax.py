"""Table-driven tax: a rate per country (and optionally region) and tax class.

Answers ``None`` for a destination it has no table for, so the engine fails
closed instead of charging zero tax.
"""

from __future__ import annotations

import msgspec

from ordnung.plugin import LineTax, PricingContext, TaxAnswer, hookimpl, require_iso


class TableTax:
    """Tax rates from a table keyed by country (or ``country-region``) and tax class."""

    class Settings(msgspec.Struct, forbid_unknown_fields=True):
        #: {"DE": {"standard": "0.19", "reduced": "0.07", "shipping": "0.19"}}
        rates: dict[str, dict[str, str]] = msgspec.field(default_factory=lambda: {
            "DE": {"standard": "0.19", "reduced": "0.07", "shipping": "0.19"},
            "FR": {"standard": "0.20", "reduced": "0.055", "shipping": "0.20"},
            "AT": {"standard": "0.20", "reduced": "0.10", "shipping": "0.20"},
        })
        prices_include_tax: bool = True
        label: str = "VAT"

        def __post_init__(self) -> None:
            require_iso("rates", self.rates, places=True)

    def __init__(self, settings: TableTax.Settings) -> None:
        self.settings = settings

    @hookimpl
    def ordnung_tax(self, ctx: PricingContext) -> TaxAnswer | None:
        address = ctx.shipping_address or ctx.billing_address
        if address is None:
            return None
        table = self.settings.rates.get(f"{address.country}-{address.region}") \
            or self.settings.rates.get(address.country)
        if table is None:
            return None
        lines = []
        for line in ctx.lines:
            rate = table.get(line.tax_class, table.get("standard"))
            if rate is None:
                return None
            lines.append(LineTax(line_id=line.id, rate=rate, label=self.settings.label))
        return TaxAnswer(lines=lines, shipping_rate=table.get("shipping", "0"),
                         shipping_label=self.settings.label,
                         prices_include_tax=self.settings.prices_include_tax)
