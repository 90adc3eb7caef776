"""Products, variants, locations and channels: small, read-mostly tables.

Variants are read on every cart change and placement and change rarely, so a worker
keeps the ones it read, each with the ``catalog`` generation it was read at
(``ordnung.core.persistence.generations``), and every write to a variant raises that
generation in its own transaction. A request uses a kept variant only if the request
has seen the same generation (a statement it ran anyway brought it back), so a price
change is seen by the next request on every worker; outside a request every read goes to
the database."""

from __future__ import annotations

import time
from collections.abc import Sequence

from ordnung.core.domain.catalog import Product, Variant
from ordnung.core.domain.common import utcnow
from ordnung.core.domain.inventory import Channel, Location
from ordnung.core.errors import NotFound
from ordnung.core.persistence.codec import decode, encode
from ordnung.core.persistence.database import Database
from ordnung.core.persistence.generations import (
    CATALOG,
    OBSERVED_COLUMNS,
    current,
    generation,
    observe,
    raise_generation,
)
from ordnung.core.persistence.generations import read as read_generations

#: variants a worker keeps at most (the oldest kept goes first)
KEPT_MAX = 50_000

#: how long the active channel ids are reused for availability pushes: a channel
#: switched on or off elsewhere (another worker process) is seen within this time
CHANNELS_TTL_S = 1.0

_PRODUCT_EXISTS = "SELECT 1 AS found FROM products WHERE id = {}"
_UPDATE_PRODUCT = "UPDATE products SET name = {}, data = {} WHERE id = {}"
_INSERT_PRODUCT = "INSERT INTO products (id, name, data, created_at) VALUES ({}, {}, {}, {})"
_PRODUCT = "SELECT data FROM products WHERE id = {}"
_PRODUCT_VARIANTS = "SELECT data FROM variants WHERE product_id = {} ORDER BY sku"
_FIRST_PRODUCTS = "SELECT id FROM products ORDER BY id LIMIT {}"
_NEXT_PRODUCTS = "SELECT id FROM products WHERE id > {} ORDER BY id LIMIT {}"
_VARIANT_EXISTS = "SELECT 1 AS found FROM variants WHERE sku = {}"
_UPDATE_VARIANT = ("UPDATE variants SET product_id = {}, barcode = {}, active = {}, data = {} "
                   "WHERE sku = {}")
_INSERT_VARIANT = ("INSERT INTO variants (sku, product_id, barcode, active, data) "
                   "VALUES ({}, {}, {}, {}, {})")
_VARIANTS = f"SELECT data, {OBSERVED_COLUMNS} FROM variants WHERE sku IN ({{}})"
_LOCATION_EXISTS = "SELECT 1 AS found FROM locations WHERE id = {}"
_UPDATE_LOCATION = "UPDATE locations SET name = {}, priority = {}, active = {} WHERE id = {}"
_INSERT_LOCATION = ("INSERT INTO locations (id, name, priority, active) "
                    "VALUES ({}, {}, {}, {})")
_LOCATIONS = "SELECT id, name, priority, active FROM locations ORDER BY priority, id"
_CHANNEL_EXISTS = "SELECT 1 AS found FROM channels WHERE id = {}"
_UPDATE_CHANNEL = "UPDATE channels SET data = {} WHERE id = {}"
_INSERT_CHANNEL = "INSERT INTO channels (id, data) VALUES ({}, {})"
_CHANNELS = "SELECT data FROM channels ORDER BY id"


class CatalogStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._active_channels: tuple[float, list[str]] = (float("-inf"), [])
        #: variants by SKU, with the ``catalog`` generation each was read at
        self._kept: dict[str, tuple[int, Variant]] = {}

    async def upsert_product(self, product: Product) -> None:
        """Insert or replace a product and its variants (variants are never deleted)."""
        exists = await self.db.run(_PRODUCT_EXISTS, product.id)
        data = encode(Product(id=product.id, name=product.name,
                              description=product.description))
        if exists:
            await self.db.run(_UPDATE_PRODUCT, product.name, data, product.id)
        else:
            await self.db.run(_INSERT_PRODUCT, product.id, product.name, data, utcnow())
        for variant in product.variants:
            await self.upsert_variant(variant)

    async def upsert_variant(self, variant: Variant) -> None:
        """Insert or replace a variant; every worker's kept variants are stale after."""
        async with self.db.transaction():
            exists = await self.db.run(_VARIANT_EXISTS, variant.sku)
            if exists:
                await self.db.run(_UPDATE_VARIANT, variant.product_id, variant.barcode,
                                  variant.active, encode(variant), variant.sku)
            else:
                await self.db.run(_INSERT_VARIANT, variant.sku, variant.product_id,
                                  variant.barcode, variant.active, encode(variant))
            await raise_generation(self.db, CATALOG)

    async def variants(self, skus: Sequence[str]) -> dict[str, Variant]:
        """The variants of ``skus`` that exist, from what this worker kept when the
        request has seen their generation, else read (and kept)."""
        if not skus:
            return {}
        wanted = sorted(set(skus))
        kept = self._current(wanted) or await self._unconfirmed(wanted)
        if kept is not None:
            return kept
        rows = await self.db.run(_VARIANTS.format(", ".join("{}" for _ in wanted)), *wanted)
        if rows:
            observe(rows[0])
        read: dict[str, Variant] = {}
        for row in rows:
            variant = decode(row["data"], Variant)
            read[variant.sku] = variant
            if len(self._kept) >= KEPT_MAX and variant.sku not in self._kept:
                del self._kept[next(iter(self._kept))]
            self._kept[variant.sku] = (generation(row, CATALOG), variant)
        return read

    async def _unconfirmed(self, skus: Sequence[str]) -> dict[str, Variant] | None:
        """Every one of ``skus`` as kept, in a request that has not seen the catalog's
        generation yet: at the generation they were kept at, if the request's gate will
        check it (``Observed.assume_catalog``), else once the generation is read (a
        smaller statement than the variants). None if one of them is not kept."""
        seen = current()
        if seen is None or seen.catalog is not None \
                or not all(sku in self._kept for sku in skus):
            return None
        at = {self._kept[sku][0] for sku in skus}
        if len(at) == 1 and seen.assume_catalog(at.pop()):
            return {sku: self._kept[sku][1] for sku in skus}
        await read_generations(self.db)
        return self._current(skus)

    def _current(self, skus: Sequence[str]) -> dict[str, Variant] | None:
        """Every one of ``skus`` as kept at the generation this request has seen, or
        None (outside a request, or one of them not kept at it)."""
        seen = current()
        if seen is None or seen.catalog is None:
            return None
        found: dict[str, Variant] = {}
        for sku in skus:
            kept = self._kept.get(sku)
            if kept is None or kept[0] != seen.catalog:
                return None
            found[sku] = kept[1]
        return found

    async def variant(self, sku: str) -> Variant:
        found = await self.variants([sku])
        if sku not in found:
            raise NotFound("variant", sku)
        return found[sku]

    async def product(self, product_id: str) -> Product:
        row = await self.db.fetch_one(_PRODUCT, product_id)
        if row is None:
            raise NotFound("product", product_id)
        product = decode(row["data"], Product)
        variant_rows = await self.db.run(_PRODUCT_VARIANTS, product_id)
        return Product(id=product.id, name=product.name, description=product.description,
                       variants=[decode(r["data"], Variant) for r in variant_rows])

    async def products(self, after: str | None = None, limit: int = 50) -> list[Product]:
        rows = await (self.db.run(_NEXT_PRODUCTS, after, limit) if after
                      else self.db.run(_FIRST_PRODUCTS, limit))
        return [await self.product(r["id"]) for r in rows]

    # -- locations ----------------------------------------------------------------
    async def upsert_location(self, location: Location) -> None:
        if await self.db.run(_LOCATION_EXISTS, location.id):
            await self.db.run(_UPDATE_LOCATION, location.name, location.priority,
                              location.active, location.id)
        else:
            await self.db.run(_INSERT_LOCATION, location.id, location.name,
                              location.priority, location.active)

    async def locations(self) -> list[Location]:
        rows = await self.db.run(_LOCATIONS)
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
        if await self.db.run(_CHANNEL_EXISTS, channel.id):
            await self.db.run(_UPDATE_CHANNEL, encode(channel), channel.id)
        else:
            await self.db.run(_INSERT_CHANNEL, channel.id, encode(channel))

    async def channels(self) -> list[Channel]:
        rows = await self.db.run(_CHANNELS)
        return [decode(r["data"], Channel) for r in rows]

    async def active_channel_ids(self) -> list[str]:
        """Ids of the active channels, read at most every ``CHANNELS_TTL_S``: every
        availability push needs them and they change rarely."""
        read_at, ids = self._active_channels
        if time.monotonic() - read_at > CHANNELS_TTL_S:
            ids = [c.id for c in await self.channels() if c.active]
            self._active_channels = (time.monotonic(), ids)
        return list(ids)
