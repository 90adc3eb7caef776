"""Catalogue: products and variants; availability per channel."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request
from litestar.params import FromPath, FromQuery, JSONBody

from ordnung.api.auth import admin, shopper_or_admin
from ordnung.api.problems import problems
from ordnung.api.routes.common import check_limit, check_product_cursor, engine_of
from ordnung.api.routes.handlers import get, put
from ordnung.api.schemas import ProductPage
from ordnung.core.domain.catalog import Product
from ordnung.core.errors import InvalidInput


class CatalogueController(Controller):
    path = "/catalogue"
    tags = ["catalogue"]

    @get("/products", guards=[shopper_or_admin("catalogue")])
    async def list_products(self, request: Request[Any, Any, Any],
                            after: FromQuery[str | None] = None,
                            limit: FromQuery[int] = 50) -> ProductPage:
        """The catalogue, a page at a time."""
        items = await engine_of(request).catalog.products(
            await check_product_cursor(request, after), check_limit(limit))
        return ProductPage(items=items, next=items[-1].id if len(items) == limit else None)

    @get("/products/{product_id:str}", guards=[shopper_or_admin("catalogue")],
         responses=problems(404))
    async def get_product(self, request: Request[Any, Any, Any],
                          product_id: FromPath[str]) -> Product:
        """One product with its variants."""
        return await engine_of(request).catalog.product(product_id)

    @put("/products/{product_id:str}", guards=[admin("catalogue")])
    async def put_product(self, request: Request[Any, Any, Any], product_id: FromPath[str],
                          data: JSONBody[Product]) -> Product:
        """Create or replace a product and its variants (the body's id must match the URL)."""
        if data.id != product_id:
            raise InvalidInput("the body's id must match the URL", field="id")
        return await engine_of(request).catalog.upsert_product(data)

    @get("/availability", guards=[shopper_or_admin("catalogue")])
    async def availability(self, request: Request[Any, Any, Any], sku: FromQuery[list[str]]
                           ) -> dict[str, int]:
        """Available units per SKU: the one number every sales channel sees."""
        if not sku or len(sku) > 100:
            raise InvalidInput("ask for 1 to 100 SKUs", field="sku")
        return await engine_of(request).inventory.available(sku)
