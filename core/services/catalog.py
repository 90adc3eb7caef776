"""Catalogue service: products and variants (we are not a PIM)."""

from __future__ import annotations

from ordnung.core.domain.catalog import Product, Variant
from ordnung.core.domain.money import is_valid_currency
from ordnung.core.errors import InvalidInput
from ordnung.core.runtime import Runtime


class CatalogService:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    async def upsert_product(self, product: Product) -> Product:
        for variant in product.variants:
            self._check(variant, product.id)
        async def unit() -> None:
            await self.rt.catalog.upsert_product(product)
            for variant in product.variants:
                await self.rt.stock.set_backorder(variant.sku, variant.allow_backorder)

        await self.rt.transactionally(unit)
        return await self.rt.catalog.product(product.id)

    @staticmethod
    def _check(variant: Variant, product_id: str) -> None:
        if not variant.sku.strip():
            raise InvalidInput("a variant needs a SKU", field="sku")
        if variant.product_id != product_id:
            raise InvalidInput(f"variant {variant.sku} belongs to {variant.product_id}, "
                               f"not {product_id}", field="product_id")
        for currency, amount in variant.prices.items():
            if not is_valid_currency(currency):
                raise InvalidInput(f"unknown currency {currency!r}", field="prices")
            if not isinstance(amount, int) or amount < 0:
                raise InvalidInput(f"price in {currency} must be a non-negative integer of "
                                   "minor units", field="prices")
        if variant.weight_grams < 0:
            raise InvalidInput("weight cannot be negative", field="weight_grams")

    async def product(self, product_id: str) -> Product:
        return await self.rt.catalog.product(product_id)

    async def products(self, after: str | None = None, limit: int = 50) -> list[Product]:
        return await self.rt.catalog.products(after, limit)

    async def variant(self, sku: str) -> Variant:
        return await self.rt.catalog.variant(sku)
