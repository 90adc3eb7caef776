"""Tax computed on integers gives the cents the ``Fraction`` arithmetic gave.

``tax_amount`` and ``round_ratio`` used to build a ``Fraction`` for every line and
operation; they now work on numerators and denominators (``round_quotient``), and
``parse_rate`` keeps the rates it read. The oracles here are the former functions,
kept verbatim, over wide ranges of rates written as decimal strings, bases and both
tax conventions.
"""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ordnung.core.domain.money import round_quotient, round_ratio
from ordnung.core.errors import PluginError
from ordnung.core.pricing import parse_rate, tax_amount


def former_round_ratio(value: Fraction) -> int:
    sign = -1 if value < 0 else 1
    magnitude = abs(value)
    whole, rest = divmod(magnitude.numerator, magnitude.denominator)
    if rest * 2 >= magnitude.denominator:
        whole += 1
    return sign * whole


def former_tax_amount(base: int, rate: Fraction, inclusive: bool) -> int:
    if base <= 0 or rate == 0:
        return 0
    if inclusive:
        return base - former_round_ratio(Fraction(base) / (1 + rate))
    return former_round_ratio(base * rate)


def former_parse_rate(rate: str) -> Fraction:
    value = Fraction(rate)
    if value < 0 or value > 1:
        raise ValueError(rate)
    return value


#: rates as tax plugins write them: decimal strings in 0..1 with up to 12 places (in
#: Decimal's own spelling, exponents included), fractions, and the usual rates
DECIMAL_RATES = st.one_of(
    st.integers(min_value=0, max_value=12).flatmap(
        lambda places: st.decimals(min_value=0, max_value=1, places=places,
                                   allow_nan=False, allow_infinity=False)).map(str),
    st.integers(min_value=0, max_value=10**9).map(lambda n: f"{Decimal(n).scaleb(-9):f}"),
    st.builds(lambda n, d: f"{min(n, d)}/{d}", st.integers(min_value=0, max_value=10**6),
              st.integers(min_value=1, max_value=10**6)),
    st.sampled_from(["0", "1", "0.19", "0.07", "0.055", "0.08875", "0.2", "0.25", "1.0",
                     "0.000", " 0.19 ", "1e-2", "19E-2", "0.1_9", "0.5"]),
)
BASES = st.one_of(st.integers(min_value=-(10**6), max_value=10**15),
                  st.sampled_from([0, 1, 2, 49, 50, 99, 100, 2500, 10**18]))


@given(BASES, DECIMAL_RATES, st.booleans())
@example(50, "0.01", False)
@example(2500, "0.19", True)
@example(1, "1", True)
@example(3, "0.5", True)
def test_tax_on_integers_is_the_fraction_tax(base: int, rate: str, inclusive: bool) -> None:
    parsed = parse_rate(rate, "tax")
    assert parsed == former_parse_rate(rate)
    assert parse_rate(rate, "tax") == parsed  # kept, and the same value
    assert tax_amount(base, parsed, inclusive) == former_tax_amount(base, parsed, inclusive)


@given(st.integers(min_value=-(10**20), max_value=10**20),
       st.integers(min_value=-(10**9), max_value=10**9).filter(bool))
@example(1, 2)
@example(-1, 2)
@example(1, -2)
@example(-5, -2)
@example(4, 8)
@example(-4, 8)
def test_round_quotient_is_round_ratio(numerator: int, denominator: int) -> None:
    value = Fraction(numerator, denominator)
    assert round_quotient(numerator, denominator) == former_round_ratio(value)
    assert round_ratio(value) == former_round_ratio(value)


@given(st.fractions(min_value=-2, max_value=2), BASES, st.booleans())
def test_tax_amount_of_any_fraction_is_unchanged(rate: Fraction, base: int,
                                                 inclusive: bool) -> None:
    """Outside 0..1 too (``tax_amount`` is public): only a rate of exactly -1 with tax
    included divides by zero, then and before."""
    if inclusive and rate == -1 and base > 0:
        with pytest.raises(ZeroDivisionError):
            former_tax_amount(base, rate, inclusive)
        with pytest.raises(ZeroDivisionError):
            tax_amount(base, rate, inclusive)
        return
    assert tax_amount(base, rate, inclusive) == former_tax_amount(base, rate, inclusive)


@pytest.mark.parametrize("rate", ["abc", "1/0", "-0.1", "1.01", "", "0.19.1", "nan"])
def test_a_bad_rate_is_refused_every_time(rate: str) -> None:
    for _ in range(2):  # a refused rate is not kept
        with pytest.raises(PluginError):
            parse_rate(rate, "tax")
