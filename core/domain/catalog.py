"""The minimal catalogue: products and their sellable variants (one SKU each)."""

from __future__ import annotations

import msgspec


class Variant(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    sku: str
    product_id: str
    name: str
    barcode: str = ""
    #: price per currency in minor units, e.g. {"EUR": 1999}
    prices: dict[str, int]
    weight_grams: int = 0
    tax_class: str = "standard"
    allow_backorder: bool = False
    active: bool = True
    #: never sold on its own: carts and orders cannot buy it; only a promotion or
    #: loyalty plugin adds it, as a gift line (a free tote bag from EUR 50.00)
    given_only: bool = False
    attributes: dict[str, str] = {}


class Product(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True):
    id: str
    name: str
    description: str = ""
    variants: list[Variant] = []
