"""Postal addresses as the customer gave them, and the ISO 3166 codes they use.

A decoded address is checked for shape only (``__post_init__``: it also runs when
a stored one is read back). Requests are checked against ISO 3166 itself, the
pycountry data, by ``ordnung.core.validation``; plugins use the same helpers for the
country codes in their settings.
"""

from __future__ import annotations

from collections.abc import Iterable
from functools import lru_cache

import msgspec
import pycountry


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

            raise InvalidInput("country: must be an ISO 3166-1 alpha-2 code such as 'DE'",
                               field="country")


def is_country(code: str) -> bool:
    """``code`` is an ISO 3166-1 alpha-2 code of a country, upper case (``DE``)."""
    return len(code) == 2 and code.isupper() and _country(code)


def is_subdivision(country: str, region: str) -> bool:
    """``region`` is the part after the hyphen of an ISO 3166-2 code of ``country``
    (``CA`` of ``US-CA``)."""
    return bool(region) and region == region.upper() and _subdivision(f"{country}-{region}")


def address_problem(address: Address) -> tuple[str, str] | None:
    """What is wrong with an address's country or region (field, reason), or None."""
    if not is_country(address.country):
        return "country", f"{address.country!r} is not an ISO 3166-1 alpha-2 country code " \
                          "such as 'DE'"
    if address.region and not is_subdivision(address.country, address.region):
        return "region", f"{address.region!r} is not an ISO 3166-2 subdivision of " \
                         f"{address.country} (give the part after '{address.country}-', " \
                         "e.g. 'CA' for US-CA)"
    return None


def unknown_countries(codes: Iterable[str], *, wildcard: bool = False) -> list[str]:
    """The entries of ``codes`` that are not ISO 3166-1 alpha-2 codes (``*`` is allowed
    with ``wildcard``): for validating country lists in plugin settings."""
    return [c for c in codes if not (is_country(c) or (wildcard and c == "*"))]


def unknown_places(codes: Iterable[str]) -> list[str]:
    """The entries of ``codes`` that are neither a country (``US``) nor a country and
    subdivision (``US-CA``)."""
    wrong = []
    for code in codes:
        country, _, region = code.partition("-")
        if not is_country(country) or (region and not is_subdivision(country, region)):
            wrong.append(code)
    return wrong


def require_iso(setting: str, codes: Iterable[str], *, wildcard: bool = False,
                places: bool = False) -> None:
    """Raise ``ValueError`` (a plugin's settings are then refused, naming the setting) if
    an entry of ``codes`` is not an ISO 3166-1 alpha-2 country code (``*`` too with
    ``wildcard``; with ``places`` also a country and subdivision such as ``US-CA``)."""
    codes = list(codes)
    wrong = unknown_places(codes) if places else unknown_countries(codes, wildcard=wildcard)
    if places and wildcard:
        wrong = [c for c in wrong if c != "*"]
    if wrong:
        kind = "country codes or ISO 3166-2 subdivision codes" if places else "country codes"
        raise ValueError(f"{setting}: {', '.join(map(repr, wrong))} are not ISO 3166-1 "
                         f"alpha-2 {kind}")


#: the member states of the European Union: a political grouping that ISO 3166 does not
#: record, so it is listed here once, each entry checked against ISO 3166 at import
EU_MEMBER_STATES = frozenset({
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE",
    "IT", "LT", "LU", "LV", "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK"})


def subdivisions_of(country: str) -> frozenset[str]:
    """The ISO 3166-2 subdivisions of ``country``, as the part after the hyphen."""
    return frozenset(s.code.split("-", 1)[1]
                     for s in pycountry.subdivisions.get(country_code=country) or ())


@lru_cache(maxsize=512)
def _country(code: str) -> bool:
    return pycountry.countries.get(alpha_2=code) is not None


@lru_cache(maxsize=4096)
def _subdivision(code: str) -> bool:
    return pycountry.subdivisions.get(code=code) is not None


require_iso("EU_MEMBER_STATES", sorted(EU_MEMBER_STATES))
