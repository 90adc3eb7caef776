"""Products, variants, locations and channels: small, read-mostly tables."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from ordnung.core.domain.catalog import Product, Variant
from ordnung.core.domain.common import utcnow
from ordnung.core.domain.inventory import Channel, Location
from ordnung.core.errors import NotFound
from ordnung.core.persistence.codec import decode, encode
from ordnung.core.persistence.database import Database
from ordnung.core.persistence.tables import ChannelRow, LocationRow, ProductRow, VariantRow

#: how long the active channel ids are reused for availability pushes: a channel
#: switched on or off elsewhere (another worker process) is seen within this time
CHANNELS_TTL_S = 1.0


class CatalogStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._active_channels: tuple[float, list[str]] = (float("-inf"), [])

    async def upsert_product(self, product: Product) -> None:
        """Insert or replace a product and its variants (variants are never deleted)."""
        exists = await ProductRow.exists().where(ProductRow.id == product.id).run()
        data = encode(Product(id=product.id, name=product.name,
                              description=product.description))
        if exists:
            await ProductRow.update({ProductRow.name: product.name, ProductRow.data: data}).where(
                ProductRow.id == product.id).run()
        else:
            await ProductRow.insert(ProductRow(id=product.id, name=product.name, data=data,
                                               created_at=utcnow())).run()
        for variant in product.variants:
            await self.upsert_variant(variant)

    async def upsert_variant(self, variant: Variant) -> None:
        exists = await VariantRow.exists().where(VariantRow.sku == variant.sku).run()
        values: dict[Any, Any] = {
            VariantRow.product_id: variant.product_id, VariantRow.barcode: variant.barcode,
            VariantRow.active: variant.active, VariantRow.data: encode(variant)}
        if exists:
            await VariantRow.update(values).where(VariantRow.sku == variant.sku).run()
        else:
            await VariantRow.insert(VariantRow(sku=variant.sku, product_id=variant.product_id,
                                               barcode=variant.barcode, active=variant.active,
                                               data=encode(variant))).run()

    async def variants(self, skus: Sequence[str]) -> dict[str, Variant]:
        if not skus:
            return {}
        wanted = sorted(set(skus))
        rows = await self.db.run("SELECT data FROM variants WHERE sku IN ("
                                 + ", ".join("{}" for _ in wanted) + ")", *wanted)
        return {v.sku: v for v in (decode(r["data"], Variant) for r in rows)}

    async def variant(self, sku: str) -> Variant:
        found = await self.variants([sku])
        if sku not in found:
            raise NotFound("variant", sku)
        return found[sku]

    async def product(self, product_id: str) -> Product:
        rows = await ProductRow.select(ProductRow.data).where(ProductRow.id == product_id).run()
        if not rows:
            raise NotFound("product", product_id)
        product = decode(rows[0]["data"], Product)
        variant_rows = await VariantRow.select(VariantRow.data).where(
            VariantRow.product_id == product_id).order_by(VariantRow.sku).run()
        return Product(id=product.id, name=product.name, description=product.description,
                       variants=[decode(r["data"], Variant) for r in variant_rows])

    async def products(self, after: str | None = None, limit: int = 50) -> list[Product]:
        query = ProductRow.select(ProductRow.id).order_by(ProductRow.id).limit(limit)
        if after:
            query = query.where(ProductRow.id > after)
        return [await self.product(r["id"]) for r in await query.run()]

    # -- locations ----------------------------------------------------------------
    async def upsert_location(self, location: Location) -> None:
        exists = await LocationRow.exists().where(LocationRow.id == location.id).run()
        if exists:
            await LocationRow.update({LocationRow.name: location.name,
                                      LocationRow.priority: location.priority,
                                      LocationRow.active: location.active}).where(
                LocationRow.id == location.id).run()
        else:
            await LocationRow.insert(LocationRow(id=location.id, name=location.name,
                                                 priority=location.priority,
                                                 active=location.active)).run()

    async def locations(self) -> list[Location]:
        rows = await LocationRow.select().order_by(LocationRow.priority).order_by(
            LocationRow.id).run()
        return [Location(id=r["id"], name=r["name"], priority=r["priority"],
                         active=bool(r["active"])) for r in rows]

    async def location(self, location_id: str) -> Location:
        for loc in await self.locations():
            if loc.id == location_id:
                return loc
        raise NotFound("location", location_id)

    # -- channels -----------------------------------------------------------------
    async def upsert_channel(self, channel: Channel) -> None:
        self._active_channels = (float("-inf"), [])
        exists = await ChannelRow.exists().where(ChannelRow.id == channel.id).run()
        if exists:
            await ChannelRow.update({ChannelRow.data: encode(channel)}).where(
                ChannelRow.id == channel.id).run()
        else:
            await ChannelRow.insert(ChannelRow(id=channel.id, data=encode(channel))).run()

    async def channels(self) -> list[Channel]:
        rows = await ChannelRow.select(ChannelRow.data).order_by(ChannelRow.id).run()
        return [decode(r["data"], Channel) for r in rows]

    async def active_channel_ids(self) -> list[str]:
        """Ids of the active channels, read at most every ``CHANNELS_TTL_S``: every
        availability push needs them and they change rarely."""
        read_at, ids = self._active_channels
        if time.monotonic() - read_at > CHANNELS_TTL_S:
            ids = [c.id for c in await self.channels() if c.active]
            self._active_channels = (time.monotonic(), ids)
        return list(ids)
