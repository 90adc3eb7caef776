"""Order numbers: ``ORD-`` and eight Crockford characters, each drawn uniformly."""

from __future__ import annotations

import re

from ordnung.core.domain.common import order_number

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
