"""``Idempotency-Key`` over HTTP: a repeated POST never has a second effect."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from ordnung.core import hookimpl
from ordnung.core.persistence import catalog as catalog_store
from ordnung.core.persistence import journal
from tests.api_support import (
    Api,
    api_client,
    api_fixture,  # noqa: F401  (the ``api`` fixture)
    expect,
    expect_problem,
    order_body,
)
from tests.support import builtin_plugins

REPLAYED = "idempotent-replayed"


def authorizations(api: Api) -> list[tuple[str, str, int]]:
    """The sandbox gateway's distinct authorize calls."""
    return [c for c in api.plugin("sandbox").calls if c[0] == "authorize"]


async def reserved(api: Api, sku: str) -> int:
    levels = await api.levels()
    return sum(r for (s, _), (_, r) in levels.items() if s == sku)


async def test_the_same_key_and_body_replays_the_first_response(api: Api) -> None:
    shop = await api.storefront("web")
    body = order_body(("SHIRT-M", 3))
    first = await api.post_order(shop, body, idempotency_key="order-123")
    assert first.status_code == 201 and REPLAYED not in first.headers
    for _ in range(3):
        again = await api.post_order(shop, body, idempotency_key="order-123")
        assert again.status_code == 201
        assert again.headers[REPLAYED] == "true"
        assert again.content == first.content
        assert again.headers["content-type"] == first.headers["content-type"]
    assert await api.order_count() == 1
    assert await reserved(api, "SHIRT-M") == 3
    assert await api.available("SHIRT-M") == 497
    assert len(authorizations(api)) == 1
    timeline = expect(await api.client.get(f"/orders/{first.json()['id']}/timeline",
                                           headers=api.admin), 200)["items"]
    assert [e["kind"] for e in timeline].count("order.placed") == 1
    # without a key nothing is deduplicated: that is what the key is for
    await api.place_order(shop, body)
    assert await api.order_count() == 2


async def test_the_same_key_with_another_body_is_refused(api: Api) -> None:
    shop = await api.storefront("web")
    first = await api.post_order(shop, order_body(("SHIRT-M", 1)), idempotency_key="k-1")
    assert first.status_code == 201
    for other in (order_body(("SHIRT-M", 2)), order_body(("MUG", 1)),
                  order_body(("SHIRT-M", 1), email="someone@example.com")):
        problem = expect_problem(await api.post_order(shop, other, idempotency_key="k-1"),
                                 422, "idempotency-mismatch")
        assert "Idempotency-Key" in problem["detail"]
    # another path with the same key is another request too
    expect_problem(await api.client.post("/carts", json={}, headers={
        **shop, "Idempotency-Key": "k-1"}), 422, "idempotency-mismatch")
    assert await api.order_count() == 1
    assert await api.available("SHIRT-M") == 499 and await api.available("MUG") == 100
    # the original still replays
    again = await api.post_order(shop, order_body(("SHIRT-M", 1)), idempotency_key="k-1")
    assert again.status_code == 201 and again.json()["id"] == first.json()["id"]


async def test_concurrent_duplicates_make_one_order_and_one_charge(api: Api) -> None:
    shop = await api.storefront("web")
    body = order_body(("POSTER", 2))

    async def attempt() -> httpx.Response:
        return await api.post_order(shop, body, idempotency_key="black-friday-1")

    responses = await asyncio.gather(*(attempt() for _ in range(20)))
    created = [r for r in responses if r.status_code == 201]
    assert created, [r.text for r in responses]
    for response in responses:
        if response.status_code == 201:
            continue
        problem = expect_problem(response, 409, "conflict")
        assert "retry" in problem["detail"]
    assert len({r.json()["id"] for r in created}) == 1
    assert sum(1 for r in created if REPLAYED not in r.headers) == 1
    assert await api.order_count() == 1
    assert await reserved(api, "POSTER") == 2
    assert len(authorizations(api)) == 1
    # once all have finished, a retry gets the original answer
    replay = await api.post_order(shop, body, idempotency_key="black-friday-1")
    assert replay.status_code == 201 and replay.headers[REPLAYED] == "true"
    assert replay.content == created[0].content


async def test_keys_are_scoped_per_api_key(api: Api) -> None:
    shop_a, shop_b = await api.storefront("web", "a"), await api.storefront("web", "b")
    body = order_body(("MUG", 1))
    a = await api.post_order(shop_a, body, idempotency_key="shared-key")
    b = await api.post_order(shop_b, body, idempotency_key="shared-key")
    assert a.status_code == b.status_code == 201, (a.text, b.text)
    assert REPLAYED not in b.headers
    assert a.json()["id"] != b.json()["id"]
    # another body under the same key string is fine for a third caller, too
    _, token = await api.customer()
    c = await api.post_order(token, order_body(("POSTER", 1)), idempotency_key="shared-key")
    assert c.status_code == 201, c.text
    assert await api.order_count() == 3
    assert len(authorizations(api)) == 3
    # and each caller's own repeat replays its own order
    again = await api.post_order(shop_b, body, idempotency_key="shared-key")
    assert again.headers[REPLAYED] == "true" and again.json()["id"] == b.json()["id"]


async def test_errors_replay_too_without_a_second_gateway_call(api: Api) -> None:
    shop = await api.storefront("web")
    body = order_body(("MUG", 1), token="tok_decline")
    first = expect_problem(await api.post_order(shop, body, idempotency_key="declined-1"),
                           402, "payment-declined")
    again = await api.post_order(shop, body, idempotency_key="declined-1")
    assert again.headers[REPLAYED] == "true"
    assert expect_problem(again, 402, "payment-declined") == first
    assert len(authorizations(api)) == 1
    assert await api.available("MUG") == 100
    # the client fixes the card and uses a new key, as it should
    await api.place_order(shop, order_body(("MUG", 1)), idempotency_key="declined-2")
    assert await api.available("MUG") == 99


async def test_other_writes_are_idempotent_too(api: Api) -> None:
    shop = await api.storefront("web")
    order = await api.place_order(shop, order_body(("MUG", 2)))
    capture = f"/orders/{order['id']}/payments/capture"
    headers = {**api.admin, "Idempotency-Key": "capture-1"}
    first = await api.client.post(capture, json={"amount": 500}, headers=headers)
    second = await api.client.post(capture, json={"amount": 500}, headers=headers)
    assert first.status_code == second.status_code == 200, (first.text, second.text)
    assert second.headers[REPLAYED] == "true" and second.content == first.content
    assert (await api.order(order["id"]))["totals"]["paid"] == 500
    assert [c[0] for c in api.plugin("sandbox").calls].count("capture") == 1
    # carts: one cart per key
    cart_headers = {**shop, "Idempotency-Key": "cart-1"}
    carts = [await api.client.post("/carts", json={}, headers=cart_headers) for _ in range(2)]
    assert carts[0].json()["id"] == carts[1].json()["id"]


async def test_malformed_keys_are_refused_and_gets_ignore_the_header(api: Api) -> None:
    shop = await api.storefront("web")
    for bad in ("x" * 201, "   "):
        response = await api.client.post("/orders", json=order_body(),
                                         headers={**shop, "Idempotency-Key": bad})
        problem = expect_problem(response, 422, "validation")
        assert "Idempotency-Key" in problem["detail"]
    assert await api.order_count() == 0
    got = await api.client.get("/catalogue/products", headers={**shop, "Idempotency-Key": "g"})
    assert got.status_code == 200 and REPLAYED not in got.headers


class FailsOnce:
    """A loyalty plugin whose first pricing call crashes (a bug, a timeout...)."""

    def __init__(self) -> None:
        self.failed = False

    @hookimpl
    def ordnung_adjustments(self, ctx: Any) -> list[Any]:
        if not self.failed:
            self.failed = True
            raise RuntimeError("flaky plugin")
        return []


async def test_a_server_error_is_not_stored_so_the_client_may_retry(database_url: str) -> None:
    async with api_client(database_url, plugins=[*builtin_plugins(),
                                                 (FailsOnce(), "flaky")]) as api:
        shop = await api.storefront("web")
        body = order_body(("MUG", 1))
        first = await api.post_order(shop, body, idempotency_key="retry-me")
        assert first.status_code >= 500, first.text
        assert first.headers["content-type"].startswith("application/problem+json")
        assert "flaky plugin" not in first.text  # internals stay in the log
        assert await api.order_count() == 0 and await api.available("MUG") == 100
        retry = await api.post_order(shop, body, idempotency_key="retry-me")
        assert retry.status_code == 201, retry.text
        assert REPLAYED not in retry.headers
        assert await api.order_count() == 1 and await api.available("MUG") == 99


#: statements of one warm ``POST /orders`` with an Idempotency-Key (three lines, a card
#: payment, and the one statement marking its outbox rows delivered) and of its replay:
#: the key's claim, its fence (which also notes the order) and the kept answer are the
#: only idempotency work; the placement neither looks the key up nor keeps a record of
#: its own, and a replay reads the kept answer once
PLACEMENT_STATEMENTS = 18
REPLAY_STATEMENTS = 3


async def statements_of(api: Api, request: Any) -> tuple[int, httpx.Response]:
    journal = api.engine.runtime.journal
    await journal.flush_marks()
    with api.engine.db.tally() as spent:
        response = await request
        await journal.flush_marks()
    return spent.statements, response


async def test_a_keyed_placement_and_its_replay_cost_a_fixed_number_of_statements(
        api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    # the delivered marks are written by a timer that may fire in the middle: held back,
    # they are written by one statement when counted
    monkeypatch.setattr(journal, "MARK_DELAY_S", 3600.0)
    # and the active channels, reread a second after the last read, are read once
    monkeypatch.setattr(catalog_store, "CHANNELS_TTL_S", 3600.0)
    shop = await api.storefront("web")
    body = order_body(("SHIRT-M", 1), ("MUG", 2), ("POSTER", 1))
    await api.place_order(shop, body, idempotency_key="warm-up")
    placed, first = await statements_of(api, api.post_order(shop, body,
                                                            idempotency_key="counted"))
    assert first.status_code == 201 and REPLAYED not in first.headers, first.text
    replayed, again = await statements_of(api, api.post_order(shop, body,
                                                              idempotency_key="counted"))
    assert again.headers[REPLAYED] == "true" and again.content == first.content
    print(f"SQL statements of a keyed placement and of its replay: {placed}, {replayed}")
    assert placed <= PLACEMENT_STATEMENTS
    assert replayed <= REPLAY_STATEMENTS
    rows = await api.engine.db.fetch("SELECT key FROM idempotency_records")
    assert all(row["key"].startswith("request:") for row in rows), rows
