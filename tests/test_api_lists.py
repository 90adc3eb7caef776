"""Shipments and returns listed across orders, ``Location`` on creates, the paged queue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from ordnung.core.domain.access import ADMIN_SCOPES
from tests.api_support import (
    Api,
    api_client,
    api_fixture,  # noqa: F401
    expect,
    expect_problem,
    order_body,
)


async def paid_order(api: Api, *lines: tuple[str, int]) -> dict[str, Any]:
    order = await api.place_order(api.admin, order_body(*(lines or (("MUG", 1),))))
    captured: dict[str, Any] = expect(await api.client.post(
        f"/orders/{order['id']}/payments/capture", json={}, headers=api.admin), 200)
    return captured


async def shipped(api: Api, order_id: str, carrier: str | None = None) -> dict[str, Any]:
    """Create the order's shipments and ship the first; (order, shipment id) in a dict."""
    response = await api.client.post(f"/orders/{order_id}/shipments", json={},
                                      headers=api.admin)
    order = expect(response, 201)
    sid = order["shipments"][-1]["id"]
    assert response.headers["location"] == f"/shipments/{sid}"
    base = f"/orders/{order_id}/shipments/{sid}"
    expect(await api.client.post(f"{base}/pick", headers=api.admin), 200)
    scans = [sl["sku"] for sl in order["shipments"][-1]["lines"] for _ in range(sl["quantity"])]
    expect(await api.client.post(f"{base}/pack", json={"scans": scans}, headers=api.admin),
           200)
    body: dict[str, Any] = {"tracking_number": f"T-{sid[-6:]}"}
    if carrier is not None:
        body["carrier"] = carrier
    order = expect(await api.client.post(f"{base}/ship", json=body, headers=api.admin), 200)
    return {"order": order, "shipment": sid}


async def test_every_create_answers_with_the_location_of_what_it_created(api: Api) -> None:
    placed = await api.post_order(api.admin, order_body(("MUG", 1)))
    order = expect(placed, 201)
    assert placed.headers["location"] == f"/orders/{order['id']}"
    assert expect(await api.client.get(placed.headers["location"], headers=api.admin),
                  200)["id"] == order["id"]

    made = await api.client.post("/customers", json={"email": "loc@example.com", "name": "L"},
                                 headers=api.admin)
    assert made.headers["location"] == f"/customers/{expect(made, 201)['id']}"
    token = await api.client.post(f"/customers/{made.json()['id']}/tokens", json={},
                                  headers=api.admin)
    assert token.headers["location"] == f"/admin/keys/{expect(token, 201)['key']['id']}"
    key = await api.client.post("/admin/keys", json={"kind": "admin", "scopes": ["orders"]},
                                headers=api.admin)
    assert key.headers["location"] == f"/admin/keys/{expect(key, 201)['key']['id']}"

    shop = await api.storefront()
    cart = await api.client.post("/carts", json={}, headers=shop)
    assert cart.headers["location"] == f"/carts/{expect(cart, 201)['id']}"

    adjusted = await api.client.post("/inventory/adjustments", json={
        "sku": "MUG", "location_id": "wh1", "delta": 5, "reason": "found"},
        headers=api.admin)
    level = expect(adjusted, 201)
    levels = expect(await api.client.get(adjusted.headers["location"], headers=api.admin), 200)
    assert levels == [level]

    paid = await paid_order(api)
    done = await shipped(api, paid["id"])
    line = done["order"]["lines"][0]
    returned = await api.client.post(f"/orders/{paid['id']}/returns", json={
        "lines": [{"line_id": line["id"], "quantity": 1}], "reason": "too small"},
        headers=api.admin)
    rid = expect(returned, 201)["returns"][-1]["id"]
    assert returned.headers["location"] == f"/returns/{rid}"
    listed = expect(await api.client.get(returned.headers["location"], headers=api.admin), 200)
    assert listed["id"] == rid and listed["order_id"] == paid["id"]
    assert listed["reason"] == "too small"

    # a replayed answer (Idempotency-Key) carries it too
    first = await api.client.post("/customers", json={"email": "once@example.com"},
                                  headers={**api.admin, "Idempotency-Key": "loc-1"})
    again = await api.client.post("/customers", json={"email": "once@example.com"},
                                  headers={**api.admin, "Idempotency-Key": "loc-1"})
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"] == first.headers["location"] == \
        f"/customers/{expect(first, 201)['id']}"

    # and the OpenAPI document says so for every operation that answers 201
    paths = expect(await api.client.get("/schema/openapi.json"), 200)["paths"]
    creates = [(path, method) for path, item in paths.items()
               for method, operation in item.items() if "201" in operation["responses"]]
    assert len(creates) >= 13, creates
    for path, method in creates:
        assert "Location" in paths[path][method]["responses"]["201"].get("headers", {}), \
            (method, path)


async def test_shipments_are_listed_across_orders_with_filters_and_pages(api: Api) -> None:
    before = datetime.now(UTC) - timedelta(seconds=1)
    first, second, third = [await paid_order(api) for _ in range(3)]
    a = await shipped(api, first["id"])
    b = await shipped(api, second["id"], carrier="dhl")
    pending = expect(await api.client.post(f"/orders/{third['id']}/shipments", json={},
                                           headers=api.admin), 201)["shipments"][0]
    sids = [a["shipment"], b["shipment"], pending["id"]]

    async def listed(**params: Any) -> dict[str, Any]:
        page: dict[str, Any] = expect(await api.client.get("/shipments", params=params,
                                                           headers=api.admin), 200)
        return page

    page = await listed()
    assert [s["id"] for s in page["items"]] == sids[::-1]  # newest first
    assert page["next"] is None
    assert page["items"][0]["order_id"] == third["id"]
    assert page["items"][0]["order_number"] == third["number"]
    assert page["items"][1]["status"] == "shipped"
    assert page["items"][1]["tracking_number"] == b["order"]["shipments"][0]["tracking_number"]

    assert [s["id"] for s in (await listed(status="shipped"))["items"]] == sids[1::-1]
    assert [s["id"] for s in (await listed(status=["pending", "shipped"]))["items"]] == \
        sids[::-1]
    assert [s["id"] for s in (await listed(order_id=first["id"]))["items"]] == [sids[0]]
    assert [s["id"] for s in (await listed(carrier="dhl"))["items"]] == [sids[1]]
    assert [s["id"] for s in (await listed(carrier="flat_rate"))["items"]] == \
        [sids[2], sids[0]]
    assert (await listed(carrier="no-such-carrier"))["items"] == []
    later = datetime.now(UTC) + timedelta(minutes=1)
    assert len((await listed(since=before.isoformat()))["items"]) == 3
    assert (await listed(since=later.isoformat()))["items"] == []
    assert (await listed(until=before.isoformat()))["items"] == []

    # cursor pages, like every other list
    one = await listed(limit=2)
    assert [s["id"] for s in one["items"]] == [sids[2], sids[1]] and one["next"] == sids[1]
    two = await listed(limit=2, after=one["next"])
    assert [s["id"] for s in two["items"]] == [sids[0]] and two["next"] is None

    got = expect(await api.client.get(f"/shipments/{sids[1]}", headers=api.admin), 200)
    assert got == page["items"][1]
    expect_problem(await api.client.get("/shipments/shp_nope", headers=api.admin), 404,
                   "not-found")
    # bad input is a clear 422, never a 500
    expect_problem(await api.client.get("/shipments", params={"since": "yesterday"},
                                        headers=api.admin), 422, "validation")
    expect_problem(await api.client.get("/shipments", params={"since": "2026-11-30T08:00:00"},
                                        headers=api.admin), 422, "validation")
    edge = expect_problem(await api.client.get(
        "/shipments", params={"until": "9999-12-31T23:59:59-14:00"}, headers=api.admin),
        422, "validation")
    assert edge["field"] == "until", edge
    expect_problem(await api.client.get("/shipments", params={"limit": 0},
                                        headers=api.admin), 422, "validation")
    # staff only
    expect_problem(await api.client.get("/shipments", headers=await api.storefront()), 403,
                   "forbidden")


async def test_returns_are_listed_across_orders_with_filters_and_pages(api: Api) -> None:
    orders = [await paid_order(api) for _ in range(2)]
    rids = []
    for order in orders:
        done = await shipped(api, order["id"])
        line = done["order"]["lines"][0]
        made = expect(await api.client.post(f"/orders/{order['id']}/returns", json={
            "lines": [{"line_id": line["id"], "quantity": 1}]}, headers=api.admin), 201)
        rids.append(made["returns"][-1]["id"])
    expect(await api.client.post(f"/orders/{orders[0]['id']}/returns/{rids[0]}/approve",
                                 headers=api.admin), 200)

    async def listed(**params: Any) -> dict[str, Any]:
        page: dict[str, Any] = expect(await api.client.get("/returns", params=params,
                                                           headers=api.admin), 200)
        return page

    assert [r["id"] for r in (await listed())["items"]] == rids[::-1]
    assert [r["id"] for r in (await listed(status="approved"))["items"]] == [rids[0]]
    assert [r["id"] for r in (await listed(status="requested"))["items"]] == [rids[1]]
    assert [r["id"] for r in (await listed(order_id=orders[1]["id"]))["items"]] == [rids[1]]
    one = await listed(limit=1)
    assert [r["id"] for r in one["items"]] == [rids[1]] and one["next"] == rids[1]
    assert [r["id"] for r in (await listed(limit=1, after=rids[1]))["items"]] == [rids[0]]
    got = expect(await api.client.get(f"/returns/{rids[0]}", headers=api.admin), 200)
    assert got["status"] == "approved" and got["order_id"] == orders[0]["id"]
    expect_problem(await api.client.get("/returns/ret_nope", headers=api.admin), 404,
                   "not-found")
    expect_problem(await api.client.get("/returns", params={"since": "2026-11-30"},
                                        headers=api.admin), 422, "validation")


async def test_the_fulfilment_queue_pages_like_every_other_list(database_url: str) -> None:
    async with api_client(database_url) as api:
        warehouse = await api.admin_with(*ADMIN_SCOPES)
        ready = [(await paid_order(api))["id"] for _ in range(5)]
        # an unpaid order between them is never in the queue, and does not shorten a page
        await api.place_order(api.admin, order_body(("MUG", 1), token=None, gateway="manual",
                                                    method="bank_transfer"))
        ready += [(await paid_order(api))["id"] for _ in range(2)]
        seen: list[str] = []
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 3, **({"after": after} if after else {})}
            page = expect(await api.client.get("/fulfilment/queue", params=params,
                                               headers=warehouse), 200)
            seen += [o["id"] for o in page["items"]]
            if page["next"] is None:
                assert len(page["items"]) < 3
                break
            assert len(page["items"]) == 3 and page["next"] == page["items"][-1]["id"]
            after = page["next"]
        assert seen == ready  # equal priority: oldest first
        expect_problem(await api.client.get("/fulfilment/queue", params={"limit": 500},
                                            headers=warehouse), 422, "validation")
        expect_problem(await api.client.get("/fulfilment/queue", params={"after": "ord_no"},
                                            headers=warehouse), 422, "validation")
        gone = "ord_" + "0" * 26  # a cursor's shape, but no order of this shop
        expect_problem(await api.client.get("/fulfilment/queue", params={"after": gone},
                                            headers=warehouse), 404, "not-found")


async def test_the_migration_fills_in_the_parts_of_existing_orders(api: Api) -> None:
    """Orders shipped and returned before the look-up tables existed are listed too."""
    from ordnung.migrations.versions import ordnung_2026_11_30t03_41_00_000000 as migration

    started = datetime.now(UTC) - timedelta(seconds=1)
    order = await paid_order(api, ("MUG", 1), ("POSTER", 1))
    done = await shipped(api, order["id"], carrier="o'brien")
    line = done["order"]["lines"][0]
    expect(await api.client.post(f"/orders/{order['id']}/returns", json={
        "lines": [{"line_id": line["id"], "quantity": 1}]}, headers=api.admin), 201)
    await paid_order(api)  # never shipped: no rows

    async def everything() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        params = {"since": started.isoformat()}
        shipments = expect(await api.client.get("/shipments", params=params,
                                                headers=api.admin), 200)["items"]
        returns = expect(await api.client.get("/returns", params=params,
                                              headers=api.admin), 200)["items"]
        return shipments, returns

    listed = await everything()
    assert len(listed[0]) >= 1 and len(listed[1]) == 1
    await api.engine.db.run("DELETE FROM order_shipments")
    await api.engine.db.run("DELETE FROM order_returns")
    assert await everything() == ([], [])
    async with api.engine.db.transaction():
        await migration._backfill(api.engine.db)
    assert await everything() == listed
    shipments = expect(await api.client.get("/shipments", params={"carrier": "o'brien"},
                                            headers=api.admin), 200)["items"]
    assert [s["id"] for s in shipments] == [done["shipment"]]
