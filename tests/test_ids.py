"""Order numbers: ``ORD-`` and eight Crockford characters, each drawn uniformly. Ids:
in the order they were made.

Found: ids sorted by their millisecond and then at random, so orders placed within one
millisecond (in-process placements take less on a fast machine) left the fulfilment
queue of their priority out of order, one run in a few
(``test_plugin_loyalty.py::test_vip_high_value_and_frequent_customers_come_first``).
"""

from __future__ import annotations

import re
from itertools import pairwise

import pytest

from ordnung.core.domain import common
from ordnung.core.domain.common import new_id, order_number

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
NUMBER = re.compile(r"ORD-([0-9A-HJKMNP-TV-Z]{4})-([0-9A-HJKMNP-TV-Z]{4})")


def test_order_numbers_use_every_character_at_every_place() -> None:
    seen: list[set[str]] = [set() for _ in range(8)]
    for _ in range(20_000):  # a character missing at a place: about 1 in 10**270
        match = NUMBER.fullmatch(order_number())
        assert match is not None
        for place, char in enumerate(match.group(1) + match.group(2)):
            seen[place].add(char)
    assert all(chars == set(CROCKFORD) for chars in seen)


def value(an_id: str) -> int:
    """The number an id spells (Crockford's base 32, after its prefix)."""
    number = 0
    for char in an_id.split("_", 1)[1].upper():
        number = number * 32 + CROCKFORD.index(char)
    return number


def test_ids_sort_in_the_order_they_were_made_within_a_millisecond() -> None:
    ids = [new_id("ord") for _ in range(20_000)]  # thousands per millisecond
    assert ids == sorted(ids)
    assert len(set(ids)) == len(ids)
    # and the step from one to the next is not a guessable +1
    steps = {value(b) - value(a) for a, b in pairwise(ids)}
    assert len(steps) > 100 and min(steps) > 0


def test_ids_do_not_go_back_when_the_clock_does(monkeypatch: pytest.MonkeyPatch) -> None:
    before = new_id("ord")
    monkeypatch.setattr(common, "_offset_s", common.clock_offset() - 5.0)
    after = [new_id("ord") for _ in range(100)]
    assert [before, *after] == sorted([before, *after])
