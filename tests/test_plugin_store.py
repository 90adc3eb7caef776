"""Plugin storage: counters that never pass their limit, claims that roll back with the order."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ordnung.core import Engine, hookimpl
from ordnung.core.errors import ValidationFailed
from tests.support import builtin_plugins, order_request, seed_shop


class OneUsePerEmail:
    """Claims one 'welcome' use per email; the second order is refused."""

    @hookimpl
    async def ordnung_claim_resources(self, order: Any, store: Any) -> None:
        if not await store.claim("welcome", order.email, limit=1):
            raise ValidationFailed([{"code": "welcome-used", "message": "already used"}])

    @hookimpl
    async def ordnung_release_resources(self, order: Any, store: Any) -> None:
        await store.release("welcome", order.email)


async def test_claims_commit_and_roll_back_with_the_order(make_engine: Any) -> None:
    engine: Engine = await make_engine(plugins=[*builtin_plugins(), (OneUsePerEmail(), "welcome")])
    await seed_shop(engine)
    store = engine.plugin_store("welcome")
    order = await engine.orders.place(order_request(("MUG", 1)))
    assert await store.count("welcome", order.email) == 1
    with pytest.raises(ValidationFailed):
        await engine.orders.place(order_request(("MUG", 1)))
    assert len(await engine.orders.list()) == 1
    await engine.orders.cancel(order.id)
    assert await store.count("welcome", order.email) == 0
    assert (await engine.orders.place(order_request(("MUG", 1)))).status == "processing"


async def test_a_counter_never_passes_its_limit_under_concurrency(make_engine: Any) -> None:
    engine: Engine = await make_engine()
    store = engine.plugin_store("coupons")
    results = await asyncio.gather(*(store.claim("uses", "SUMMER", limit=5) for _ in range(20)))
    assert results.count(True) == 5
    assert await store.count("uses", "SUMMER") == 5
    await store.put("coupon", "SUMMER", {"percent": 10})
    assert await store.get("coupon", "SUMMER") == {"percent": 10}
    assert await store.add("coupon", "SUMMER", {"percent": 99}) is False
    assert [k for k, _, _ in await store.records("coupon")] == ["SUMMER"]
