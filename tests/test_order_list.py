"""The staff's order list over several statuses: each status's orders are read on their
own and merged, so the list is the same as one filter would give, page after page, in one
statement per page; unknown statuses are refused rather than listing nothing."""

from __future__ import annotations

import random
from typing import Any

from tests.api_support import (
    Api,
    api_fixture,  # noqa: F401  (the ``api`` fixture)
    expect,
    expect_problem,
    order_body,
)

SKUS = ("MUG", "POSTER", "SHIRT-M")


async def _orders(api: Api) -> list[dict[str, Any]]:
    """Fourteen orders on two channels, for two customers and guests, in three states."""
    rng = random.Random(7)
    shops = {channel: await api.storefront(channel) for channel in ("web", "etsy")}
    customers = [await api.customer(f"c{n}@example.com", f"C{n}") for n in range(2)]
    for n in range(14):
        if n % 3 == 2:
            headers = customers[n % 2][1]
            body = order_body((rng.choice(SKUS), 1), channel="web")
        else:
            headers = shops[rng.choice(["web", "etsy"])]
            channel = "web" if headers is shops["web"] else "etsy"
            body = order_body((rng.choice(SKUS), 1), channel=channel)
        order = await api.place_order(headers, body)
        fate = rng.choice(["keep", "cancel", "hold"])
        if fate == "cancel":
            expect(await api.client.post(f"/orders/{order['id']}/cancel",
                                         json={"reason": "test"}, headers=api.admin), 200)
        elif fate == "hold":
            expect(await api.client.post(f"/orders/{order['id']}/hold",
                                         json={"reason": "review"}, headers=api.admin), 200)
    every = expect(await api.client.get("/orders", params={"limit": 200},
                                        headers=api.admin), 200)["items"]
    assert len(every) == 14 and len({o["status"] for o in every}) == 3
    return list(every)


async def _pages(api: Api, params: dict[str, Any], size: int) -> list[str]:
    got: list[str] = []
    after: str | None = None
    while True:
        query = {**params, "limit": size, **({"after": after} if after else {})}
        with api.engine.db.tally() as spent:
            page = expect(await api.client.get("/orders", params=query,
                                               headers=api.admin), 200)
        assert spent.statements == 2  # the key's look-up, the page
        got += [o["id"] for o in page["items"]]
        if page["next"] is None:
            return got
        after = page["next"]


async def test_a_list_over_several_statuses_is_the_filter_on_every_page(api: Api) -> None:
    every = await _orders(api)
    statuses = sorted({o["status"] for o in every})
    customer_id = next(o["customer_id"] for o in every if o["customer_id"])
    for chosen in ([statuses[0], statuses[1]], [statuses[1], statuses[2], statuses[1]],
                   statuses):
        for extra in ({}, {"channel": "etsy"}, {"customer_id": customer_id}):
            expected = [o["id"] for o in every if o["status"] in chosen
                        and all(o[k] == v for k, v in extra.items())]
            for size in (1, 2, 5, 50):
                assert await _pages(api, {"status": chosen, **extra}, size) == expected, \
                    (chosen, extra, size)


async def test_an_unknown_status_is_refused_by_name(api: Api) -> None:
    await api.place_order(await api.storefront("web"), order_body(("MUG", 1)))
    problem = expect_problem(await api.client.get(
        "/orders", params={"status": ["processing", "shipped-ish"]}, headers=api.admin),
        422, "validation")
    assert "shipped-ish" in problem["detail"] and "processing" in problem["detail"]
