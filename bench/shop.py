"""The generated catalogue every scenario sells: products with prices, stock in one
location (the hot SKU's level in slices, if asked), the gift the free-gift rule adds, a
storefront key for the ``web`` channel."""

from __future__ import annotations

from typing import Any

import httpx

from bench import floor, server


async def seed(srv: server.Server, skus: int, units: int, hot_units: int,
               hot_slices: int = 1, gift_slices: int = 1) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=srv.url, headers=srv.admin, timeout=30) as client:
        return await seed_through(client, skus, units, hot_units, hot_slices, gift_slices)


async def seed_through(client: httpx.AsyncClient, skus: int, units: int, hot_units: int,
                       hot_slices: int = 1, gift_slices: int = 1) -> dict[str, Any]:
    """``seed`` through ``client``: an admin's client of a server, or of an app in this
    process (``bench app``)."""
    async def ok(response: httpx.Response) -> dict[str, Any]:
        if response.status_code >= 400:
            raise RuntimeError(f"seeding failed: {response.status_code} {response.text}")
        body: dict[str, Any] = response.json()
        return body

    await ok(await client.put("/channels/web", json={"id": "web", "name": "Web"}))
    await ok(await client.put("/inventory/locations/wh", json={"id": "wh", "name": "WH"}))
    names = [f"BENCH-{i:03d}" for i in range(skus)]
    extra = ["BENCH-GIFT", "BENCH-HOT"]
    prices: dict[str, int] = {}
    for i, sku in enumerate([*names, *extra]):
        price = prices[sku] = 0 if sku == "BENCH-GIFT" else 2000 + (i * 137) % 4000
        product = {"id": sku.lower(), "name": sku, "variants": [{
            "sku": sku, "product_id": sku.lower(), "name": sku, "barcode": f"40{i:011d}",
            "prices": {"EUR": price}, "weight_grams": 200}]}
        await ok(await client.put(f"/catalogue/products/{sku.lower()}", json=product))
        stock = hot_units if sku == "BENCH-HOT" else units
        if stock <= 0:
            continue
        await ok(await client.post("/inventory/adjustments", json={
            "sku": sku, "location_id": "wh", "delta": stock, "kind": "receive"}))
        slices = {"BENCH-HOT": hot_slices, "BENCH-GIFT": gift_slices}.get(sku, 1)
        if slices > 1:
            await ok(await client.put("/inventory/slices", json={
                "sku": sku, "location_id": "wh", "slices": slices}))
    key = await ok(await client.post("/admin/keys", json={
        "kind": "storefront", "channel": "web", "name": "bench"}))
    gift: dict[str, Any] = server.GIFT_SETTINGS["free_gift"]["tiers"][0]
    catalogue = floor.Catalogue({s: prices[s] for s in names}, gift["sku"],
                                gift["threshold"], gift_slices=gift_slices)
    return {"skus": names, "catalogue": catalogue,
            "storefront": {"Authorization": f"Bearer {key['secret']}"}}
