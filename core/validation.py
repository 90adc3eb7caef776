"""One check for everything a request asks the engine to store.

An adapter runs ``check_input`` on every decoded request body (the REST API does it
for every route, right after decoding), so a rule holds for every field of every
route at once instead of route by route:

- **text**: no NUL, no control character (C0, DEL, C1) and no lone surrogate in
  any string, keys included; line breaks and tabs only in notes, reasons,
  descriptions and metadata values. The
  same strings are then stored alike on SQLite (which would keep them) and on
  PostgreSQL (which refuses NUL);
- **required strings** (a field without a default) are not empty;
- **lengths** by kind of field: names, e-mails, address fields, notes, metadata
  keys and values, every other string (``InputLimits``);
- **counts**: lines, codes, metadata keys, any other list or object; units per line;
- **addresses**: country and region are ISO 3166 codes (pycountry), wherever an
  address appears (carts, orders, customers).

A breach raises ``InvalidInput`` naming the field by its path (``lines[3].quantity``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import msgspec

from ordnung.core.domain.addresses import Address, address_problem
from ordnung.core.domain.carts import CartLine
from ordnung.core.errors import InvalidInput
from ordnung.core.limits import InputLimits

#: C0 controls but tab, line feed and carriage return; DEL; C1 controls; surrogates
_CONTROL_MULTILINE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\ud800-\udfff]")
#: the same, and tab, line feed and carriage return too
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")

NAME_FIELDS = frozenset({"name", "company"})
EMAIL_FIELDS = frozenset({"email"})
ADDRESS_FIELDS = frozenset({"line1", "line2", "city", "postal_code", "region", "phone",
                            "vat_id"})
#: free text a person writes: may span lines
NOTE_FIELDS = frozenset({"note", "reason"})
#: objects of caller-chosen keys and values, bounded as metadata
METADATA_FIELDS = frozenset({"metadata", "client", "data", "attributes"})
#: secrets that are compared or hashed, never stored as sent: the body limit bounds them
SECRET_FIELDS = frozenset({"password", "token", "refresh_token"})


def check_input(value: Any, limits: InputLimits) -> None:
    """Raise ``InvalidInput`` for the first breach of the rules above in ``value`` (a
    decoded request: a Struct, or lists and dicts of them)."""
    _Walker(limits).visit(value, "", "")


def check_parameter(name: str, value: str, limits: InputLimits) -> None:
    """A path or query parameter: no control character, at most ``max_text_length``
    characters. It may only be looked up, never stored, but SQLite would look up a NUL
    where PostgreSQL refuses it: checked here, both answer alike."""
    _Walker.check(value, name, _CONTROL, limits.max_text_length, "value")


#: each Struct type's fields as (name, required), read once per type
_FIELDS: dict[type, tuple[tuple[str, bool], ...]] = {}


def _fields_of(cls: type[msgspec.Struct]) -> tuple[tuple[str, bool], ...]:
    """A Struct type's fields. ``msgspec.structs.fields`` resolves the type's annotations
    on every call (about a tenth of a placement's CPU went there); a type's fields never
    change, so they are read once."""
    known = _FIELDS.get(cls)
    if known is None:
        known = _FIELDS[cls] = tuple((f.name, f.required) for f in msgspec.structs.fields(cls))
    return known


class _Walker:
    def __init__(self, limits: InputLimits) -> None:
        self.limits = limits

    def visit(self, value: Any, path: str, name: str) -> None:
        if isinstance(value, str):
            self.text(value, path, name)
        elif isinstance(value, bool):
            return
        elif isinstance(value, int):
            if name == "quantity" and value > self.limits.max_quantity_per_line:
                raise InvalidInput(f"{path}: at most {self.limits.max_quantity_per_line} "
                                   "units per line", field=path)
        elif isinstance(value, msgspec.Struct):
            self.struct(value, path)
        elif isinstance(value, (list, tuple)):
            self.items(value, path, name)
        elif isinstance(value, dict):
            self.mapping(value, path, name)

    def struct(self, value: msgspec.Struct, path: str) -> None:
        for name, required in _fields_of(type(value)):
            item = getattr(value, name)
            if item is None:  # an optional field left out: nothing to check
                continue
            where = f"{path}.{name}" if path else name
            if required and item == "":
                raise InvalidInput(f"{where} must not be empty", field=where)
            if type(item) is str:  # most fields: straight to the text rules
                self.text(item, where, name)
            else:
                self.visit(item, where, name)
        if isinstance(value, Address):
            wrong = address_problem(value)
            if wrong is not None:
                where = f"{path}.{wrong[0]}" if path else wrong[0]
                raise InvalidInput(f"{where}: {wrong[1]}", field=where)

    def items(self, value: list[Any] | tuple[Any, ...], path: str, name: str) -> None:
        if name == "lines":
            limit, what = self.limits.max_lines_per_order, "lines"
        elif name == "codes":
            limit, what = self.limits.max_codes_per_cart, "codes"
        else:
            limit, what = self.limits.max_items, "entries"
        if len(value) > limit:
            raise InvalidInput(f"{path}: at most {limit} {what}", field=path)
        for index, item in enumerate(value):
            self.visit(item, f"{path}[{index}]", name)

    def mapping(self, value: dict[Any, Any], path: str, name: str) -> None:
        limits = self.limits
        metadata = name in METADATA_FIELDS
        limit = limits.max_metadata_keys if metadata else limits.max_items
        if len(value) > limit:
            raise InvalidInput(f"{path}: at most {limit} keys", field=path)
        for key, item in value.items():
            where = f"{path}.{key}" if isinstance(key, str) and _CONTROL.search(key) is None \
                else f"{path}[...]"
            if isinstance(key, str):
                self.check(key, where, _CONTROL, limits.max_metadata_key_length if metadata
                           else limits.max_text_length, "key")
            if metadata and isinstance(item, str):
                self.check(item, where, _CONTROL_MULTILINE, limits.max_metadata_value_length,
                           "value")
            else:
                self.visit(item, where, name if isinstance(item, (list, dict)) else "")

    def text(self, value: str, path: str, name: str) -> None:
        limits = self.limits
        if name in SECRET_FIELDS:
            self.check(value, path, _CONTROL, None, "value")
        elif name in NOTE_FIELDS:
            self.check(value, path, _CONTROL_MULTILINE, limits.max_note_length, "value")
        elif name == "description":
            self.check(value, path, _CONTROL_MULTILINE, limits.max_description_length,
                       "value")
        else:
            limit = (limits.max_name_length if name in NAME_FIELDS
                     else limits.max_email_length if name in EMAIL_FIELDS
                     else limits.max_address_field_length if name in ADDRESS_FIELDS
                     else limits.max_text_length)
            # most strings of a request: passed here, ``check`` words a breach
            if len(value) > limit or _CONTROL.search(value) is not None:
                self.check(value, path, _CONTROL, limit, "value")

    @staticmethod
    def check(value: str, path: str, forbidden: re.Pattern[str], limit: int | None,
              what: str) -> None:
        if limit is not None and len(value) > limit:
            raise InvalidInput(f"{path}: the {what} has {len(value)} characters, at most "
                               f"{limit} are allowed", field=path, max_length=limit)
        bad = forbidden.search(value)
        if bad is not None:
            raise InvalidInput(f"{path}: the {what} contains the control character "
                               f"U+{ord(bad.group()):04X} at position {bad.start()}",
                               field=path)


def check_bounds(lines: Sequence[CartLine], codes: Sequence[str], limits: InputLimits, *,
                 max_lines: int, what: str) -> None:
    """The engine's own bounds on a cart or an order, whoever calls it: at most
    ``max_lines`` lines, ``max_quantity_per_line`` units of one SKU (lines of the same
    SKU merged, as pricing merges them) and ``max_codes_per_cart`` codes."""
    if len(lines) > max_lines:
        raise InvalidInput(f"{what} holds at most {max_lines} lines", field="lines")
    units: dict[str, int] = {}
    for line in lines:
        units[line.sku] = units.get(line.sku, 0) + line.quantity
        if units[line.sku] > limits.max_quantity_per_line:
            raise InvalidInput(f"{what} holds at most {limits.max_quantity_per_line} units "
                               f"of {line.sku}", field="lines", sku=line.sku)
    if len(codes) > limits.max_codes_per_cart:
        raise InvalidInput(f"{what} takes at most {limits.max_codes_per_cart} codes",
                           field="codes")
