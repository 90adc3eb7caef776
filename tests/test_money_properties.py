"""Property tests for money: integer minor units, one currency per sum, half-up rounding.

The oracles are independent of the code under test: exact ``Fraction``
arithmetic for proportions and Python's ``decimal`` with ``ROUND_HALF_UP``
(which rounds ties away from zero) for rounding.
"""

from __future__ import annotations

import decimal
from fractions import Fraction

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from ordnung.core.domain.money import (
    Money,
    allocate,
    currency_exponent,
    is_valid_currency,
    money_sum,
    round_ratio,
)
from ordnung.core.errors import CurrencyMismatch, InvalidInput
from ordnung.core.pricing import tax_amount

CURRENCIES = ["EUR", "USD", "GBP", "JPY", "KWD", "CHF", "BHD", "SEK"]
AMOUNTS = st.integers(min_value=-(10**15), max_value=10**15)
CURRENCY = st.sampled_from(CURRENCIES)


@st.composite
def money_triples(draw: st.DrawFn) -> tuple[Money, Money, Money]:
    currency = draw(CURRENCY)
    a, b, c = (draw(AMOUNTS) for _ in range(3))
    return Money(a, currency), Money(b, currency), Money(c, currency)


def half_up(value: Fraction) -> int:
    """Round an exact rational to an integer, ties away from zero (the decimal oracle)."""
    with decimal.localcontext() as ctx:
        ctx.prec = 200  # far more digits than any operand here: the quotient is exact enough
        quotient = decimal.Decimal(value.numerator) / decimal.Decimal(value.denominator)
        return int(quotient.quantize(decimal.Decimal(1), rounding=decimal.ROUND_HALF_UP))


# -- arithmetic ---------------------------------------------------------------------------


@given(money_triples())
def test_addition_is_associative_and_commutative(triple: tuple[Money, Money, Money]) -> None:
    a, b, c = triple
    assert (a + b) + c == a + (b + c)
    assert a + b == b + a
    assert (a + b).currency == a.currency


@given(money_triples())
def test_subtraction_undoes_addition(triple: tuple[Money, Money, Money]) -> None:
    a, b, _ = triple
    assert (a + b) - b == a
    assert (a - b) + b == a
    assert a - a == Money.zero(a.currency)
    negated = -a
    assert -negated == a
    assert a + (-b) == a - b


@given(money_triples(), st.integers(min_value=-1000, max_value=1000))
def test_integer_multiplication_distributes(triple: tuple[Money, Money, Money], k: int) -> None:
    a, b, _ = triple
    assert (a + b) * k == a * k + b * k
    assert k * a == a * k
    assert (a * k).amount == a.amount * k


@given(money_triples())
def test_ordering_matches_amounts(triple: tuple[Money, Money, Money]) -> None:
    a, b, _ = triple
    assert (a < b) == (a.amount < b.amount)
    assert (a <= b) == (a.amount <= b.amount)
    assert (a > b) == (a.amount > b.amount)
    assert (a >= b) == (a.amount >= b.amount)


@given(st.lists(AMOUNTS, max_size=20), CURRENCY)
def test_money_sum_matches_integer_sum(amounts: list[int], currency: str) -> None:
    total = money_sum((Money(a, currency) for a in amounts), currency)
    assert total == Money(sum(amounts), currency)


@given(AMOUNTS, AMOUNTS, st.lists(CURRENCY, min_size=2, max_size=2, unique=True))
def test_mixing_currencies_raises_currency_mismatch(a: int, b: int,
                                                    currencies: list[str]) -> None:
    left, right = Money(a, currencies[0]), Money(b, currencies[1])
    for operation in (
        lambda: left + right,
        lambda: left - right,
        lambda: left < right,
        lambda: left <= right,
        lambda: left > right,
        lambda: left >= right,
        lambda: money_sum([left, right], currencies[0]),
    ):
        with pytest.raises(CurrencyMismatch) as err:
            operation()
        assert err.value.extra["currencies"] in ([left.currency, right.currency],
                                                 [right.currency, left.currency])


@pytest.mark.parametrize("bad", [1.0, 0.5, float("nan"), True, False, "100", None,
                                 Fraction(1, 2), decimal.Decimal("1.00")])
def test_non_integer_amounts_are_rejected(bad: object) -> None:
    with pytest.raises(InvalidInput) as err:
        Money(bad, "EUR")  # type: ignore[arg-type]
    assert err.value.field == "amount"


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_floats_never_become_money(value: float) -> None:
    with pytest.raises(InvalidInput):
        Money(value, "EUR")  # type: ignore[arg-type]


@pytest.mark.parametrize("factor", [1.5, 2.0, True, Fraction(1, 2), "2"])
def test_money_multiplies_only_by_true_integers(factor: object) -> None:
    with pytest.raises(TypeError):
        Money(100, "EUR") * factor  # type: ignore[operator]


def test_money_does_not_combine_with_plain_numbers() -> None:
    with pytest.raises(TypeError):
        Money(100, "EUR") + 1  # type: ignore[operator]


@pytest.mark.parametrize("code", ["ABC", "eur", "Eur", "EURO", "EU", "", "QQQ", "€"])
def test_unknown_currencies_are_rejected(code: str) -> None:
    assert not is_valid_currency(code)
    with pytest.raises(InvalidInput) as err:
        Money(1, code)
    assert err.value.field == "currency"
    with pytest.raises(InvalidInput):
        currency_exponent(code)


@pytest.mark.parametrize(("currency", "exponent"), [
    ("EUR", 2), ("USD", 2), ("GBP", 2), ("JPY", 0), ("KRW", 0), ("KWD", 3), ("BHD", 3),
])
def test_currency_exponent(currency: str, exponent: int) -> None:
    assert currency_exponent(currency) == exponent


@pytest.mark.parametrize(("money", "text"), [
    (Money(1250, "EUR"), "EUR 12.50"),
    (Money(-5, "EUR"), "EUR -0.05"),
    (Money(1234, "JPY"), "JPY 1234"),
    (Money(1005, "KWD"), "KWD 1.005"),
])
def test_format_uses_the_currency_exponent(money: Money, text: str) -> None:
    assert money.format() == text


# -- allocation -----------------------------------------------------------------------------

WEIGHTS = st.lists(st.integers(min_value=0, max_value=10**7), min_size=1, max_size=12).filter(
    lambda ws: sum(ws) > 0)


@given(st.integers(min_value=-(10**9), max_value=10**9), WEIGHTS)
@example(1, [1, 1, 1])
@example(-1, [1, 1, 1])
@example(100, [1, 1, 1])
@example(-100, [1, 2, 0, 3])
@example(0, [5, 5])
def test_allocate_is_exact_and_proportional(amount: int, weights: list[int]) -> None:
    shares = allocate(amount, weights)
    assert len(shares) == len(weights)
    assert sum(shares) == amount
    total = sum(weights)
    for share, weight in zip(shares, weights, strict=True):
        exact = Fraction(amount * weight, total)
        assert abs(share - exact) < 1, (share, exact)
        if weight == 0:
            assert share == 0
        # never on the wrong side of zero
        assert share * amount >= 0


@given(st.integers(min_value=-(10**9), max_value=10**9), WEIGHTS)
def test_allocate_is_deterministic_and_sign_symmetric(amount: int, weights: list[int]) -> None:
    first = allocate(amount, weights)
    assert allocate(amount, list(weights)) == first
    assert allocate(amount, tuple(weights)) == first
    assert allocate(-amount, weights) == [-s for s in first]


def test_allocate_ties_go_to_the_earliest_weight() -> None:
    assert allocate(1, [1, 1, 1]) == [1, 0, 0]
    assert allocate(2, [1, 1, 1]) == [1, 1, 0]
    assert allocate(-2, [1, 1, 1]) == [-1, -1, 0]
    assert allocate(100, [1, 1, 1]) == [34, 33, 33]


@pytest.mark.parametrize("weights", [[], [0], [0, 0, 0]])
def test_allocate_without_weight_gives_nothing(weights: list[int]) -> None:
    assert allocate(500, weights) == [0] * len(weights)


@given(st.integers(min_value=-(10**9), max_value=10**9), WEIGHTS, CURRENCY)
def test_money_allocate_keeps_currency(amount: int, weights: list[int], currency: str) -> None:
    parts = Money(amount, currency).allocate(weights)
    assert [p.amount for p in parts] == allocate(amount, weights)
    assert {p.currency for p in parts} <= {currency}
    assert money_sum(parts, currency) == Money(amount, currency)


# -- rounding -------------------------------------------------------------------------------

FRACTIONS = st.builds(Fraction, st.integers(min_value=-(10**12), max_value=10**12),
                      st.integers(min_value=1, max_value=10**6))


@given(FRACTIONS)
@example(Fraction(1, 2))
@example(Fraction(-1, 2))
@example(Fraction(5, 2))
@example(Fraction(-5, 2))
@example(Fraction(249, 2))
@example(Fraction(1, 3))
@example(Fraction(-2, 3))
def test_round_ratio_is_half_up_away_from_zero(value: Fraction) -> None:
    assert round_ratio(value) == half_up(value)


@given(st.integers(min_value=-(10**12), max_value=10**12))
def test_round_ratio_ties_go_away_from_zero(n: int) -> None:
    value = Fraction(2 * n + 1, 2)  # exactly halfway between n and n + 1
    assert round_ratio(value) == (n + 1 if value > 0 else n)
    assert round_ratio(-value) == -round_ratio(value)
    assert round_ratio(Fraction(n)) == n


@given(AMOUNTS, FRACTIONS, CURRENCY)
def test_scale_rounds_half_up(amount: int, ratio: Fraction, currency: str) -> None:
    assert Money(amount, currency).scale(ratio) == Money(half_up(amount * ratio), currency)


# -- tax ------------------------------------------------------------------------------------

RATES = st.one_of(
    st.integers(min_value=0, max_value=10_000).map(lambda n: Fraction(n, 10_000)),
    st.sampled_from([Fraction(0), Fraction(19, 100), Fraction(7, 100), Fraction(55, 1000),
                     Fraction(1), Fraction(1, 3)]),
)
BASES = st.integers(min_value=1, max_value=10**10)


@given(BASES, RATES)
@example(50, Fraction(1, 100))  # 0.5 cent of tax rounds up to 1
@example(2500, Fraction(19, 100))
def test_exclusive_tax_is_the_rounded_rate_of_the_base(base: int, rate: Fraction) -> None:
    tax = tax_amount(base, rate, inclusive=False)
    assert tax == half_up(base * rate)
    assert 0 <= tax <= base  # rates are at most 100 %


@given(BASES, RATES)
@example(2500, Fraction(19, 100))
@example(1200, Fraction(7, 100))
@example(1, Fraction(1))
def test_inclusive_tax_leaves_the_rounded_net(base: int, rate: Fraction) -> None:
    tax = tax_amount(base, rate, inclusive=True)
    assert base - tax == half_up(Fraction(base) / (1 + rate))
    assert 0 <= tax <= base


@given(st.integers(max_value=0), RATES, st.booleans())
def test_no_tax_on_nothing(base: int, rate: Fraction, inclusive: bool) -> None:
    assert tax_amount(base, rate, inclusive) == 0


@given(BASES, st.booleans())
def test_zero_rate_is_zero_tax(base: int, inclusive: bool) -> None:
    assert tax_amount(base, Fraction(0), inclusive) == 0
