"""GraphQL inputs, checked exactly as REST bodies are.

Each input is converted (strictly, by msgspec) to the same request struct the REST
route decodes (``ordnung.api.schemas``), then ``ordnung.core.validation.check_input``
applies the engine's limits: control characters, lengths, counts, ISO 3166 codes. A
breach is an ``InvalidInput`` naming the field, before anything is stored.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

import msgspec
import strawberry

from ordnung.core import Engine
from ordnung.core.errors import InvalidInput
from ordnung.core.validation import check_input

T = TypeVar("T")


@strawberry.input
class AddressInput:
    name: str
    line1: str
    city: str
    country: str
    line2: str = ""
    postal_code: str = ""
    region: str = ""
    email: str = ""
    phone: str = ""
    company: str = ""
    vat_id: str = ""


@strawberry.input
class ReturnLineInput:
    line_id: str
    quantity: int
    restock: bool = True


@strawberry.input(description="A variant of a product; prices per currency in minor units, "
                              "e.g. {\"EUR\": 1999}.")
class VariantInput:
    sku: str
    name: str
    prices: strawberry.scalars.JSON
    barcode: str = ""
    weight_grams: int = 0
    tax_class: str = "standard"
    allow_backorder: bool = False
    active: bool = True
    given_only: bool = False
    attributes: strawberry.scalars.JSON | None = None


@strawberry.input
class LineInput:
    sku: str
    quantity: int = 1


@strawberry.input
class PaymentInput:
    gateway: str
    method: str = ""
    token: str = ""


def _plain(value: Any) -> Any:
    """Inputs as plain data (dicts and lists), ``None`` and unset fields left out."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)
                if getattr(value, f.name) is not None
                and getattr(value, f.name) is not strawberry.UNSET}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def plain(value: Any) -> dict[str, Any]:
    """An input object as a plain dict (``None`` and unset fields left out)."""
    data: dict[str, Any] = _plain(value)
    return data


def checked(engine: Engine, target: type[T], **fields: Any) -> T:
    """``fields`` as the REST request struct ``target``, after the same checks."""
    data = {k: _plain(v) for k, v in fields.items() if v is not None}
    try:
        value = msgspec.convert(data, type=target, strict=True)
    except msgspec.ValidationError as exc:
        message, _, where = str(exc).partition(" - at `$")
        raise InvalidInput(message, field=where.rstrip("`").lstrip(".") or None) from None
    check_input(value, engine.config.limits)
    return value
