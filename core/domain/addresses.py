"""Postal addresses as the customer gave them; validated for shape only."""

from __future__ import annotations

import msgspec


class Address(msgspec.Struct, kw_only=True, forbid_unknown_fields=True, frozen=True):
    name: str
    line1: str
    line2: str = ""
    city: str
    postal_code: str = ""
    region: str = ""
    #: ISO 3166-1 alpha-2, upper case
    country: str
    email: str = ""
    phone: str = ""
    company: str = ""
    vat_id: str = ""

    def __post_init__(self) -> None:
        if len(self.country) != 2 or not self.country.isalpha() or not self.country.isupper():
            from ordnung.core.errors import InvalidInput

            raise InvalidInput("country must be an ISO 3166-1 alpha-2 code such as 'DE'",
                               field="country")
