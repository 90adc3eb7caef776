"""EU VAT: table-driven rates per member state and tax class, prices including VAT.

Which rates
    The destination (shipping address, else billing address) picks the
    country's table when it is an EU member state (``oss=True``, the One-Stop
    Shop rule for distance sales); with ``oss=False`` every EU destination is
    charged the seller's domestic rates. A destination outside the EU, or a
    member state missing from ``rates``, is "not mine": the plugin answers
    ``None`` and, unless another tax plugin answers, the engine refuses the
    order with ``TaxUnavailable`` (fail closed, never zero tax).

Tax classes
    A line's ``tax_class`` is looked up in the country's table; a class the
    country has no rate for is charged the **standard** rate (the VAT
    Directive's default: reduced rates apply only where a member state
    provides one). Shipping is charged the standard rate of the same country.

B2B reverse charge
    When the buyer gives a VAT number (``billing_address.vat_id``, else the
    shipping address's) that is valid in format and check digits
    (``stdnum.eu.vat``; no online VIES look-up) and belongs to another member
    state than the seller's, and the goods go to an EU member state other than
    the seller's, every line and shipping get rate 0 with
    ``reverse_charge=True`` and a note naming the VAT number. With
    ``net_prices_for_reverse_charge`` (the default) the VAT contained in the
    tax-inclusive prices is taken off each line as a discount
    (``ordnung_adjustments``), so the business pays the net price; shipping
    is charged as quoted. An invalid VAT number is ignored: VAT is charged
    normally and the tax note says why.

Rounding is the core's: per line, half-up (``core/pricing/tax.py``).
"""

from __future__ import annotations

from fractions import Fraction

import msgspec
from stdnum.eu import vat as eu_vat_number

from ordnung.plugin import (
    EU_MEMBER_STATES,
    Address,
    Discount,
    LineTax,
    Money,
    PricingContext,
    TaxAnswer,
    hookimpl,
    require_iso,
)

#: member states (ISO 3166-1), Northern Ireland's "XI" numbers count for goods
EU_COUNTRIES = EU_MEMBER_STATES
#: VAT number prefixes that differ from the ISO country code
VAT_PREFIX_COUNTRY = {"EL": "GR", "XI": "GB"}


def _default_rates() -> dict[str, dict[str, str]]:
    # "reduced" is each country's main reduced rate (food, books in most); other reduced
    # rates are named after their level, "super_reduced" is the lowest
    return {
        "DE": {"standard": "0.19", "reduced": "0.07"},
        "FR": {"standard": "0.20", "reduced": "0.055", "reduced_10": "0.10",
               "super_reduced": "0.021"},
        "AT": {"standard": "0.20", "reduced": "0.10", "reduced_13": "0.13"},
        "NL": {"standard": "0.21", "reduced": "0.09"},
        "IT": {"standard": "0.22", "reduced": "0.10", "reduced_5": "0.05",
               "super_reduced": "0.04"},
        "ES": {"standard": "0.21", "reduced": "0.10", "super_reduced": "0.04"},
        "BE": {"standard": "0.21", "reduced": "0.06", "reduced_12": "0.12"},
        "PL": {"standard": "0.23", "reduced": "0.08", "reduced_5": "0.05"},
    }


class VatCheck(msgspec.Struct, frozen=True):
    """What the buyer's VAT number means for this order."""

    number: str = ""
    valid: bool = False
    country: str = ""
    reverse_charge: bool = False
    reason: str = ""


class EuVat:
    """EU VAT by destination and tax class, VAT-inclusive prices, B2B reverse charge."""

    class Settings(msgspec.Struct, forbid_unknown_fields=True):
        #: the seller's member state (where its VAT registration is)
        seller_country: str = "DE"
        #: {"DE": {"standard": "0.19", "reduced": "0.07"}, ...}; "standard" is required
        rates: dict[str, dict[str, str]] = msgspec.field(default_factory=_default_rates)
        #: destination-country rates for EU distance sales (One-Stop Shop)
        oss: bool = True
        prices_include_tax: bool = True
        #: reverse charge: take the VAT contained in inclusive prices off each line
        net_prices_for_reverse_charge: bool = True
        label: str = "VAT"

        def __post_init__(self) -> None:
            if self.seller_country not in EU_COUNTRIES:
                raise ValueError(f"seller_country {self.seller_country!r} is not an EU member")
            require_iso("rates", self.rates)
            for country, table in self.rates.items():
                if "standard" not in table:
                    raise ValueError(f"rates[{country!r}] needs a 'standard' rate")
                for tax_class, rate in table.items():
                    try:
                        value = Fraction(rate)
                    except (ValueError, ZeroDivisionError):
                        raise ValueError(f"rates[{country!r}][{tax_class!r}] = {rate!r} is "
                                         "not a decimal number") from None
                    if not 0 <= value < 1:
                        raise ValueError(f"rates[{country!r}][{tax_class!r}] is outside 0..1")

    def __init__(self, settings: EuVat.Settings) -> None:
        self.settings = settings

    # -- decisions ------------------------------------------------------------------------
    def destination(self, ctx: PricingContext) -> Address | None:
        return ctx.shipping_address or ctx.billing_address

    def table_for(self, destination: Address) -> dict[str, str] | None:
        if destination.country not in EU_COUNTRIES:
            return None
        country = destination.country if self.settings.oss else self.settings.seller_country
        return self.settings.rates.get(country)

    def vat_check(self, ctx: PricingContext) -> VatCheck:
        given = ""
        for address in (ctx.billing_address, ctx.shipping_address):
            if address is not None and address.vat_id.strip():
                given = address.vat_id.strip()
                break
        if not given:
            return VatCheck()
        number = eu_vat_number.compact(given)
        if not eu_vat_number.is_valid(number):
            return VatCheck(number=given, reason=f"VAT number {given} is not valid (format or "
                                                 "check digits); VAT charged")
        prefix = number[:2]
        country = VAT_PREFIX_COUNTRY.get(prefix, prefix)
        seller = self.settings.seller_country
        destination = self.destination(ctx)
        if country == seller:
            return VatCheck(number=number, valid=True, country=country,
                            reason=f"VAT number {number} is from the seller's country "
                                   f"{seller}: domestic VAT charged")
        if (destination is None or destination.country == seller
                or destination.country not in EU_COUNTRIES):
            where = destination.country if destination else "no address"
            return VatCheck(number=number, valid=True, country=country,
                            reason=f"VAT number {number} is valid, but the goods do not go "
                                   f"to another EU member state ({where}): VAT charged")
        return VatCheck(number=number, valid=True, country=country, reverse_charge=True,
                        reason=f"reverse charge: VAT number {number} ({country}) is valid "
                               "(format and check digits); VAT is due by the recipient "
                               "(Art. 196 Directive 2006/112/EC)")

    def rate(self, table: dict[str, str], tax_class: str) -> str:
        return table.get(tax_class, table["standard"])

    # -- hooks ------------------------------------------------------------------------------
    @hookimpl
    def ordnung_adjustments(self, ctx: PricingContext) -> list[Discount] | None:
        s = self.settings
        if not (s.net_prices_for_reverse_charge and s.prices_include_tax):
            return None
        destination = self.destination(ctx)
        table = self.table_for(destination) if destination else None
        if table is None:
            return None
        check = self.vat_check(ctx)
        if not check.reverse_charge:
            return None
        out = []
        for line in ctx.lines:
            if line.line_total <= 0:
                continue
            rate = Fraction(self.rate(table, line.tax_class))
            net = Money(line.line_total, ctx.currency).scale(1 / (1 + rate)).amount
            if line.line_total - net > 0:
                out.append(Discount(amount=line.line_total - net, line_id=line.id,
                                    reason=f"reverse charge: price net of "
                                           f"{self.settings.label} {rate_text(rate)}"))
        return out

    @hookimpl
    def ordnung_tax(self, ctx: PricingContext) -> TaxAnswer | None:
        destination = self.destination(ctx)
        if destination is None:
            return None
        table = self.table_for(destination)
        if table is None:
            return None
        label = self.settings.label
        check = self.vat_check(ctx)
        if check.reverse_charge:
            return TaxAnswer(
                lines=[LineTax(line_id=line.id, rate="0", label=f"{label} reverse charge",
                               reverse_charge=True) for line in ctx.lines],
                shipping_rate="0", shipping_label=f"{label} reverse charge",
                prices_include_tax=self.settings.prices_include_tax, note=check.reason)
        return TaxAnswer(
            lines=[LineTax(line_id=line.id, rate=self.rate(table, line.tax_class), label=label)
                   for line in ctx.lines],
            shipping_rate=table["standard"], shipping_label=label,
            prices_include_tax=self.settings.prices_include_tax, note=check.reason)


def rate_text(rate: Fraction) -> str:
    """0.19 -> '19%', 0.055 -> '5.5%'."""
    percent = rate * 100
    if percent.denominator == 1:
        return f"{percent.numerator}%"
    return f"{float(percent):g}%"
