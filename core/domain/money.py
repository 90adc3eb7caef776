"""Money as integer minor units plus an ISO 4217 currency.

Floats never touch an amount. Arithmetic between different currencies is an
error, never a silent conversion. Rounding happens in exactly one place
(:func:`round_ratio`) with one rule, half-up, so that tax and discount
allocation give the same cents on every machine and every database.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal
from fractions import Fraction
from functools import lru_cache

import msgspec
from babel.core import get_global
from babel.numbers import format_currency, is_currency

from ordnung.core.errors import CurrencyMismatch, InvalidInput


@lru_cache(maxsize=512)
def currency_exponent(currency: str) -> int:
    """Minor-unit exponent of ``currency`` from CLDR (EUR 2, JPY 0, KWD 3)."""
    if not is_valid_currency(currency):
        raise InvalidInput(f"unknown currency {currency!r}", field="currency")
    fractions = get_global("currency_fractions")
    digits, *_ = fractions.get(currency, fractions["DEFAULT"])
    return int(digits)


@lru_cache(maxsize=512)
def is_valid_currency(currency: str) -> bool:
    return len(currency) == 3 and currency.isupper() and bool(is_currency(currency))


def round_ratio(value: Fraction) -> int:
    """Round a rational amount of minor units to an integer, half away from zero.

    Half-up is what tax authorities and customers expect on an invoice line
    (0.5 cent rounds up); we apply it per line, never on the order total.
    """
    return round_quotient(value.numerator, value.denominator)


def round_quotient(numerator: int, denominator: int) -> int:
    """``numerator / denominator`` rounded as :func:`round_ratio` rounds, computed on the
    integers alone: tax multiplies a base by a rate on every line of every pricing, and
    building the ``Fraction`` (a gcd per operation) cost more than the rounding itself.
    The quotient needs no reducing first: a common factor scales the remainder and the
    denominator alike, so it cannot move the half-way comparison."""
    if denominator < 0:
        numerator, denominator = -numerator, -denominator
    if numerator < 0:
        whole, rest = divmod(-numerator, denominator)
        return -(whole + 1) if rest * 2 >= denominator else -whole
    whole, rest = divmod(numerator, denominator)
    return whole + 1 if rest * 2 >= denominator else whole


class Money(msgspec.Struct, frozen=True, order=False):
    """An amount in minor units of ``currency``; immutable and hashable."""

    amount: int
    currency: str

    def __post_init__(self) -> None:
        if not isinstance(self.amount, int) or isinstance(self.amount, bool):
            raise InvalidInput("money amounts are integers of minor units", field="amount")
        if not is_valid_currency(self.currency):
            raise InvalidInput(f"unknown currency {self.currency!r}", field="currency")

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(0, currency)

    def _check(self, other: Money) -> None:
        if not isinstance(other, Money):
            raise TypeError(f"cannot combine Money with {type(other).__name__}")
        if other.currency != self.currency:
            raise CurrencyMismatch(self.currency, other.currency)

    def __add__(self, other: Money) -> Money:
        self._check(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._check(other)
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def __mul__(self, factor: int) -> Money:
        if not isinstance(factor, int) or isinstance(factor, bool):
            raise TypeError("Money can only be multiplied by an integer; use scale() for rates")
        return Money(self.amount * factor, self.currency)

    __rmul__ = __mul__

    def __lt__(self, other: Money) -> bool:
        self._check(other)
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        self._check(other)
        return self.amount <= other.amount

    def __gt__(self, other: Money) -> bool:
        self._check(other)
        return self.amount > other.amount

    def __ge__(self, other: Money) -> bool:
        self._check(other)
        return self.amount >= other.amount

    def scale(self, ratio: Fraction) -> Money:
        """Multiply by an exact ratio (a rate, a percentage) and round half-up."""
        return Money(round_ratio(self.amount * Fraction(ratio)), self.currency)

    def allocate(self, weights: Sequence[int]) -> list[Money]:
        """Split this amount in proportion to ``weights`` (see :func:`allocate`)."""
        return [Money(share, self.currency) for share in allocate(self.amount, weights)]

    def localized(self, locale: str = "en") -> str:
        """The amount as people of ``locale`` write it (CLDR through babel), for e-mails
        and other text read by customers: ``€12.50`` in ``en``, ``12,50 €`` in ``de_DE``."""
        exp = currency_exponent(self.currency)
        return format_currency(Decimal(self.amount).scaleb(-exp), self.currency,
                               locale=locale, currency_digits=True)

    def format(self) -> str:
        """Locale-free form for logs, explanations and notes read by developers and
        staff everywhere, e.g. ``EUR 12.50`` (``localized`` is the form for customers)."""
        return format_amount(self.amount, self.currency)


@lru_cache(maxsize=4096)
def format_amount(amount: int, currency: str) -> str:
    """``Money(amount, currency).format()`` without building the ``Money``: a pricing
    writes a dozen amounts into its explanation, and the same prices and totals recur
    from one pricing to the next, so the text is kept for the most recent ones."""
    exp = currency_exponent(currency)
    sign = "-" if amount < 0 else ""
    whole, frac = divmod(abs(amount), 10**exp) if exp else (abs(amount), 0)
    return f"{currency} {sign}{whole}" + (f".{frac:0{exp}d}" if exp else "")


def money_sum(items: Iterable[Money], currency: str) -> Money:
    """Sum that is well-defined for an empty iterable and checks every currency."""
    total = Money.zero(currency)
    for item in items:
        total = total + item
    return total


def allocate(amount: int, weights: Sequence[int]) -> list[int]:
    """Split ``amount`` in proportion to ``weights`` without losing a minor unit.

    Largest-remainder method; ties go to the earliest weight, so the split is
    deterministic. Used to spread an order discount over lines before tax.
    """
    total = sum(weights)
    if total <= 0 or not weights:
        return [0 for _ in weights]
    sign = -1 if amount < 0 else 1
    magnitude = abs(amount)
    shares = [magnitude * w // total for w in weights]
    remainders = sorted(((magnitude * w % total, -i) for i, w in enumerate(weights)), reverse=True)
    for _, neg_index in remainders[: magnitude - sum(shares)]:
        shares[-neg_index] += 1
    return [sign * s for s in shares]
