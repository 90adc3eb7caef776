"""Step 5, tax: the first tax plugin's rates, applied per line and on shipping.

Rounding (documented once, applied here only): tax is computed **per line** and on
shipping, each rounded **half-up** to the currency's minor unit. For tax-exclusive
prices ``tax = round(base × rate)``; for tax-inclusive prices
``tax = base − round(base / (1 + rate))``. A line's taxable base is
``line_total + discount``.
"""

from __future__ import annotations

from fractions import Fraction

import msgspec

from ordnung.core.domain.money import round_quotient
from ordnung.core.domain.orders import OrderLine
from ordnung.core.domain.pricing import LineTax, TaxAnswer
from ordnung.core.errors import PluginError, TaxUnavailable
from ordnung.core.pricing.state import PricingServices, PricingState

#: the rates read so far, by their text: a shop answers a handful of rates for every
#: line of every pricing, and reading one (a ``Fraction`` parse and two comparisons)
#: cost more than the tax computed with it
_RATES: dict[str, Fraction] = {}
#: a bound on the rates kept, should a plugin answer ever-new ones
_MAX_KEPT_RATES = 1024


def parse_rate(rate: str, plugin: str) -> Fraction:
    known = _RATES.get(rate) if type(rate) is str else None
    if known is not None:
        return known
    try:
        value = Fraction(rate)
    except (ValueError, ZeroDivisionError) as exc:
        raise PluginError(plugin, f"tax rate {rate!r} is not a decimal number") from exc
    if value < 0 or value > 1:
        raise PluginError(plugin, f"tax rate {rate!r} is outside 0..1")
    if type(rate) is str and len(_RATES) < _MAX_KEPT_RATES:
        _RATES[rate] = value
    return value


def tax_amount(base: int, rate: Fraction, inclusive: bool) -> int:
    """The rounding rule above, on integers: with ``rate = n / d``, exclusive tax is
    ``round(base · n / d)`` and the inclusive net ``round(base · d / (d + n))``, the
    same quotients the ``Fraction`` arithmetic would reduce and round."""
    if base <= 0 or rate == 0:
        return 0
    numerator, denominator = rate.numerator, rate.denominator
    if inclusive:
        return base - round_quotient(base * denominator, denominator + numerator)
    return round_quotient(base * numerator, denominator)


def no_tax_answer(state: PricingState, services: PricingServices) -> None:
    if services.require_tax and state.strict:
        raise TaxUnavailable("no tax plugin could compute tax for this order; "
                             "it cannot be placed without tax")
    if services.require_tax:
        state.explain("tax", "core", "tax not available yet")


def tax_line(state: PricingState, plugin: str, line: OrderLine, line_tax: LineTax) -> OrderLine:
    base = line.line_total + line.discount
    amount = tax_amount(base, parse_rate(line_tax.rate, plugin), state.inclusive)
    if amount or line_tax.reverse_charge:
        state.explain("tax", plugin,
                      f"{line_tax.label or 'tax'} {line_tax.rate} on {state.fmt(base)}"
                      + (" (reverse charge)" if line_tax.reverse_charge else ""),
                      amount=amount, line_id=line.id)
    return msgspec.structs.replace(line, tax=amount, tax_rate=line_tax.rate)


def tax_lines(state: PricingState, services: PricingServices, plugin: str,
              tax: TaxAnswer) -> None:
    rates = {line_tax.line_id: line_tax for line_tax in tax.lines}
    taxed: list[OrderLine] = []
    for line in state.lines:
        line_tax = rates.get(line.id)
        if line_tax is not None:
            taxed.append(tax_line(state, plugin, line, line_tax))
        elif state.strict and services.require_tax and line.line_total > 0:
            raise TaxUnavailable(f"{plugin} gave no tax for line {line.id}", line_id=line.id)
        else:
            taxed.append(line)
    state.set_lines(taxed)


def tax_shipping(state: PricingState, plugin: str, tax: TaxAnswer) -> None:
    if state.shipping is None:
        return
    rate = parse_rate(tax.shipping_rate, plugin)
    ship_tax = tax_amount(state.shipping.price, rate, state.inclusive)
    state.shipping = msgspec.structs.replace(state.shipping, tax=ship_tax,
                                             tax_rate=tax.shipping_rate)
    if ship_tax:
        state.explain("tax", plugin,
                      f"{tax.shipping_label or 'tax'} {tax.shipping_rate} on shipping",
                      amount=ship_tax)


async def apply_tax(state: PricingState, services: PricingServices) -> None:
    answer = await services.plugins.call("ordnung_tax", ctx=state.context())
    if answer is None:
        no_tax_answer(state, services)
        return
    plugin, tax = answer
    state.inclusive = tax.prices_include_tax
    tax_lines(state, services, plugin, tax)
    tax_shipping(state, plugin, tax)
    if tax.note:
        state.explain("tax", plugin, tax.note)
