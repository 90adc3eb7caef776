"""Limits on what one request may ask the engine to store or do.

Each is a setting read from ``ORDNUNG_<NAME>`` (upper case) with a default that no
real shop reaches. They bound the size of what is stored (names, e-mails, address
fields, notes, metadata) and the work one cart or order can cause (lines, units,
codes), so that a hostile or broken client cannot fill the database or a worker.
``ordnung.core.validation`` applies them to every decoded request.
"""

from __future__ import annotations

import os
from typing import Annotated

import msgspec

from ordnung.core.errors import ConfigError

Count = Annotated[int, msgspec.Meta(ge=1)]


class InputLimits(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    #: characters of a person's or company's name (``name``, ``company``)
    max_name_length: Count = 200
    #: characters of an e-mail address (RFC 5321 allows 254)
    max_email_length: Count = 254
    #: characters of each address field (street lines, city, postal code, region,
    #: phone, VAT id)
    max_address_field_length: Count = 200
    #: characters of a note or a reason (the only fields that may hold line breaks)
    max_note_length: Count = 2000
    #: characters of a product's description (may hold line breaks)
    max_description_length: Count = 10_000
    #: characters of every other string (SKUs, codes, tags, ids, methods ...)
    max_text_length: Count = 500
    #: keys of a ``metadata`` (or ``client``, or a transition's ``data``) object
    max_metadata_keys: Count = 50
    #: characters of one metadata key
    max_metadata_key_length: Count = 64
    #: characters of one metadata value
    max_metadata_value_length: Count = 2000
    #: lines of one cart
    max_lines_per_cart: Count = 200
    #: lines of one order
    max_lines_per_order: Count = 200
    #: units of one line
    max_quantity_per_line: Count = 10_000
    #: codes (coupons) applied to one cart or order
    max_codes_per_cart: Count = 20
    #: entries of any other list or object in a request (tags, addresses, scans ...)
    max_items: Count = 1000

    @classmethod
    def from_env(cls) -> InputLimits:
        """The limits, each from ``ORDNUNG_<NAME>`` when set; a value that is not a whole
        number of at least 1 raises ``ConfigError`` naming its variable."""
        values: dict[str, int] = {}
        for name in cls.__struct_fields__:
            variable = variable_of(name)
            raw = os.environ.get(variable, "").strip()
            if not raw:
                continue
            try:
                value = int(raw)
            except ValueError:
                raise ConfigError(variable, f"expected a whole number, got {raw!r}") from None
            if value < 1:
                raise ConfigError(variable, f"expected a whole number of at least 1, got {value}")
            values[name] = value
        return cls(**values)


def variable_of(name: str) -> str:
    """The environment variable of a limit: ``max_name_length`` -> ``ORDNUNG_MAX_NAME_LENGTH``."""
    return f"ORDNUNG_{name.upper()}"
