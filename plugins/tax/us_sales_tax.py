"""US sales tax by state, prices excluding tax.

The destination (shipping address, else billing address) must be in the US
with its state in ``region`` (two-letter USPS code). The rate is, most
specific first: ``zip_rates`` for the address's 5-digit ZIP code (a combined
state + local rate you configure), else the state's rate in ``rates``. A
state may tax some classes differently (``class_rates``, e.g. clothing
exempt in PA). Shipping is taxed at the line rate only in the states listed
in ``shipping_taxable``.

Fail closed: a US destination whose state is not in ``rates`` (or no state
given) gets ``None``, so the engine refuses the order with
``TaxUnavailable`` instead of charging no tax. Non-US destinations are "not
mine" (``None``) too.

The default table holds **state base rates only**; county and city taxes
are not included. Configure ``rates``/``zip_rates`` with the combined rates
where you have nexus. Rounding is the core's: per line, half-up.
"""

from __future__ import annotations

from fractions import Fraction

import msgspec

from ordnung.plugin import LineTax, PricingContext, TaxAnswer, hookimpl, subdivisions_of


def _default_rates() -> dict[str, str]:
    # state-level base rates (VA: 4.3% state + 1% statewide local); states without a
    # state sales tax are 0. Left out on purpose, so that orders there fail closed until
    # configured: LA, NM, SD, UT (rates changed recently or are temporary).
    return {
        "AK": "0", "AL": "0.04", "AZ": "0.056", "AR": "0.065", "CA": "0.0725",
        "CO": "0.029", "CT": "0.0635", "DC": "0.06", "DE": "0", "FL": "0.06", "GA": "0.04",
        "HI": "0.04", "ID": "0.06", "IL": "0.0625", "IN": "0.07", "IA": "0.06", "KS": "0.065",
        "KY": "0.06", "MA": "0.0625", "MD": "0.06", "ME": "0.055", "MI": "0.06", "MO": "0.04225",
        "MN": "0.06875", "MS": "0.07", "MT": "0", "NC": "0.0475", "ND": "0.05", "NE": "0.055",
        "NH": "0", "NJ": "0.06625", "NV": "0.0685", "NY": "0.04", "OH": "0.0575", "OK": "0.045",
        "OR": "0", "PA": "0.06", "RI": "0.07", "SC": "0.06", "TN": "0.07", "TX": "0.0625",
        "VA": "0.053", "VT": "0.06", "WA": "0.065", "WI": "0.05", "WV": "0.06", "WY": "0.04",
    }


class UsSalesTax:
    """US sales tax from a state table (optional ZIP overrides), prices excluding tax."""

    class Settings(msgspec.Struct, forbid_unknown_fields=True):
        #: state (USPS code) -> rate
        rates: dict[str, str] = msgspec.field(default_factory=_default_rates)
        #: 5-digit ZIP -> combined rate; wins over the state's rate
        zip_rates: dict[str, str] = msgspec.field(default_factory=dict)
        #: state -> {tax class -> rate}, e.g. clothing exempt
        class_rates: dict[str, dict[str, str]] = msgspec.field(default_factory=lambda: {
            "PA": {"clothing": "0"}, "NJ": {"clothing": "0"}, "MN": {"clothing": "0"}})
        #: states where shipping charges are taxed (at the destination's rate)
        shipping_taxable: list[str] = msgspec.field(
            default_factory=lambda: ["NJ", "NY", "PA", "TX", "WA"])
        label: str = "Sales tax"

        def __post_init__(self) -> None:
            states = subdivisions_of("US")
            for name, codes in (("rates", self.rates), ("class_rates", self.class_rates),
                                ("shipping_taxable", self.shipping_taxable)):
                wrong = sorted(set(codes) - states)
                if wrong:
                    raise ValueError(f"{name}: {', '.join(map(repr, wrong))} are not ISO "
                                     "3166-2 subdivisions of the US (e.g. 'CA' for US-CA)")
            tables: list[tuple[str, dict[str, str]]] = [
                ("rates", self.rates), ("zip_rates", self.zip_rates),
                *((f"class_rates[{state!r}]", table) for state, table in self.class_rates.items())]
            for name, table in tables:
                for key, rate in table.items():
                    try:
                        value = Fraction(rate)
                    except (ValueError, ZeroDivisionError):
                        raise ValueError(f"{name}[{key!r}] = {rate!r} is not a decimal "
                                         "number") from None
                    if not 0 <= value < 1:
                        raise ValueError(f"{name}[{key!r}] is outside 0..1")

    def __init__(self, settings: UsSalesTax.Settings) -> None:
        self.settings = settings

    @hookimpl
    def ordnung_tax(self, ctx: PricingContext) -> TaxAnswer | None:
        address = ctx.shipping_address or ctx.billing_address
        if address is None or address.country != "US":
            return None
        s = self.settings
        state = address.region.strip().upper()
        if state not in s.rates:
            return None  # fail closed: the engine refuses rather than charge no tax
        zip5 = address.postal_code.strip()[:5]
        base = s.zip_rates.get(zip5, s.rates[state])
        overrides = s.class_rates.get(state, {})
        label = f"{s.label} {state}"
        lines = [LineTax(line_id=line.id, rate=overrides.get(line.tax_class, base), label=label)
                 for line in ctx.lines]
        return TaxAnswer(lines=lines,
                         shipping_rate=base if state in s.shipping_taxable else "0",
                         shipping_label=label, prices_include_tax=False,
                         note=f"{s.label}: {state} rate {base}"
                              + (f" (ZIP {zip5})" if zip5 in s.zip_rates else ""))
