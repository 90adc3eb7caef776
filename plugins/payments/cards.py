"""Keeping card numbers out: payment plugins accept gateway tokens, never a PAN.

A storefront that sends a raw card number instead of the token its gateway's
client SDK made would pull the whole shop into PCI DSS scope. Payment plugins
refuse such a "token" with :data:`CARD_NUMBER_REFUSED` and never echo, log or
store it.
"""

from __future__ import annotations

CARD_NUMBER_REFUSED = "card numbers are not accepted; send a gateway token"

_SEPARATORS = str.maketrans("", "", " -.")


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check every payment card number passes."""
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def looks_like_card_number(token: str) -> bool:
    """True for 13 to 19 digits (spaces, dashes and dots ignored) that pass the Luhn check."""
    digits = token.strip().translate(_SEPARATORS)
    return 13 <= len(digits) <= 19 and digits.isascii() and digits.isdigit() \
        and luhn_valid(digits)
