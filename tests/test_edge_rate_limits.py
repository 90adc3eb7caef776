"""Write rate limits: per admin key, per guest cart token or customer, per client address.

Through the HTTP API with low limits; a write over a limit is a 429 ``rate-limited``
problem with ``Retry-After`` and changes nothing.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from ordnung.api.rate_limits import WriteLimits
from ordnung.core import Engine
from ordnung.core.domain.access import ADMIN_SCOPES
from ordnung.core.domain.common import utcnow
from ordnung.core.errors import ConfigError
from ordnung.core.persistence.rate_limits import DatabaseStorage, Hit
from tests.api_support import Api, api_client, expect, expect_problem
from tests.serve_support import ADMIN_KEY as SERVE_KEY
from tests.serve_support import running_server

emails = (f"limited{n}@example.com" for n in itertools.count())
SERVE_ADMIN = {"Authorization": f"Bearer {SERVE_KEY}"}


def only(**limits: str) -> WriteLimits:
    """These limits, every other one off."""
    return WriteLimits(**{"writes": "off", "writes_per_key": "off",
                          "writes_per_address": "off", **limits})


def assert_limited(response: httpx.Response) -> None:
    body = expect_problem(response, 429, "rate-limited")
    assert 1 <= int(response.headers["retry-after"]) <= 60, response.headers
    assert "try again in" in body["detail"], body


async def new_customer(api: Api, headers: dict[str, str]) -> httpx.Response:
    return await api.client.post("/customers", json={"email": next(emails), "name": "L"},
                                 headers=headers)


async def customer_count(api: Api) -> int:
    listed: dict[str, Any] = expect(await api.client.get("/customers?limit=100",
                                                         headers=api.admin), 200)
    return len(listed["items"])


async def test_an_admin_key_over_its_limit_gets_429_and_nothing_is_written(
        database_url: str) -> None:
    async with api_client(database_url, rate_limits=only(writes_per_key="3/minute")) as api:
        staff = await api.admin_with(*ADMIN_SCOPES)
        before = await customer_count(api)
        created = [expect(await new_customer(api, staff), 201) for _ in range(3)]
        assert_limited(await new_customer(api, staff))
        # every write method counts; reads do not
        assert_limited(await api.client.patch(f"/customers/{created[0]['id']}",
                                              json={"name": "X"}, headers=staff))
        assert_limited(await api.client.delete(f"/customers/{created[1]['id']}",
                                               headers=staff))
        expect(await api.client.get(f"/customers/{created[0]['id']}", headers=staff), 200)
        assert await customer_count(api) == before + 3
        assert expect(await api.client.get(f"/customers/{created[0]['id']}",
                                           headers=staff), 200)["name"] == "L"
        # another key has its own count
        expect(await new_customer(api, api.admin), 201)


async def test_guests_count_by_cart_token_and_customers_by_customer(
        database_url: str) -> None:
    async with api_client(database_url, rate_limits=only(writes="3/minute")) as api:
        shop = await api.storefront()
        first = await api.new_cart(shop)
        second = await api.new_cart(shop)
        holding_first = api.holding(shop, first["id"])
        for _ in range(3):
            expect(await api.client.post(f"/carts/{first['id']}/lines", json={"sku": "MUG"},
                                         headers=holding_first), 200)
        assert_limited(await api.client.post(f"/carts/{first['id']}/lines",
                                             json={"sku": "MUG"}, headers=holding_first))
        cart = expect(await api.client.get(f"/carts/{first['id']}", headers=holding_first),
                      200)
        assert sum(line["quantity"] for line in cart["lines"]) == 3
        # the cart token is a secret: the counters keep only its hash
        counters = " ".join(r["key"] for r in await api.engine.db.fetch(
            "SELECT key FROM rate_limits"))
        assert "writes-cart" in counters and first["cart_token"] not in counters
        # another guest of the same shop (same storefront key) is not held back
        expect(await api.client.post(f"/carts/{second['id']}/lines", json={"sku": "MUG"},
                                     headers=api.holding(shop, second["id"])), 200)

        _, erika = await api.customer(email=next(emails))
        _, kim = await api.customer(email=next(emails))
        for _ in range(3):
            expect(await api.client.post("/carts", json={"channel": "web"}, headers=erika), 201)
        assert_limited(await api.client.post("/carts", json={"channel": "web"}, headers=erika))
        expect(await api.client.post("/carts", json={"channel": "web"}, headers=kim), 201)


async def test_shopper_addresses_count_through_trusted_proxies_only(
        database_url: str) -> None:
    limits = only(writes_per_address="2/minute")
    async with api_client(database_url, rate_limits=limits,
                          trusted_proxies=["127.0.0.1"]) as api:
        shop = await api.storefront()

        def via(address: str) -> dict[str, str]:
            return {**shop, "X-Forwarded-For": address}

        for _ in range(2):
            expect(await api.client.post("/carts", json={}, headers=via("198.51.100.1")), 201)
        assert_limited(await api.client.post("/carts", json={}, headers=via("198.51.100.1")))
        expect(await api.client.post("/carts", json={}, headers=via("198.51.100.2")), 201)
        # admin keys are server-side backends: not counted by address
        for _ in range(3):
            expect(await new_customer(api, api.admin), 201)

    async with api_client(database_url, rate_limits=limits) as api:
        shop = await api.storefront()
        # no trusted proxy: the client's own X-Forwarded-For is not believed
        for n in range(2):
            expect(await api.client.post("/carts", json={}, headers={
                **shop, "X-Forwarded-For": f"198.51.100.{n}"}), 201)
        assert_limited(await api.client.post("/carts", json={}, headers={
            **shop, "X-Forwarded-For": "198.51.100.9"}))


async def test_a_write_raises_all_its_counts_in_one_statement(database_url: str) -> None:
    """Per cart token and per address at once: one upsert; the write is refused by
    whichever count is over, and a refused write counted against both."""
    limits = only(writes="2/minute", writes_per_address="4/minute")
    async with api_client(database_url, rate_limits=limits) as api:
        shop = await api.storefront()
        first = await api.new_cart(shop)  # the address: 1
        holding = api.holding(shop, first["id"])
        for _ in range(2):  # the cart token: 1, 2; the address: 2, 3
            expect(await api.client.post(f"/carts/{first['id']}/lines",
                                         json={"sku": "MUG"}, headers=holding), 200)
        with api.engine.db.tally() as spent:
            refused = await api.client.post(f"/carts/{first['id']}/lines",
                                            json={"sku": "MUG"},
                                            headers=holding)  # the token: 3; the address: 4
        assert_limited(refused)
        assert "with this cart token" in refused.json()["detail"]
        # both counts, in one statement that also confirms the key the worker kept
        assert spent.statements == 1
        # the refused write counted against the address too: its fifth write is refused
        refused = await api.client.post("/carts", json={}, headers=shop)
        assert_limited(refused)
        assert "from this address" in refused.json()["detail"]
        counts = {r["key"].split("/")[1]: r["hits"] for r in await api.engine.db.fetch(
            "SELECT key, hits FROM rate_limits")}
        assert counts == {"writes-cart": 3, "writes-address": 5}


async def test_a_counter_starts_again_when_its_window_is_over(engine: Engine) -> None:
    storage = DatabaseStorage(engine.db)
    counts = await storage.incr_many([Hit("a", 60), Hit("b", 60, 2), Hit("a", 60)])
    assert {k: c.hits for k, c in counts.items()} == {"a": 2, "b": 2}
    assert counts["a"].expires_at > utcnow()
    await engine.db.run("UPDATE rate_limits SET expires_at = {} WHERE key = {}",
                        utcnow() - timedelta(seconds=1), "b")
    counts = await storage.incr_many([Hit("a", 60), Hit("b", 60)])
    assert {k: c.hits for k, c in counts.items()} == {"a": 3, "b": 1}
    assert await storage.incr("b", 60) == 2
    assert await storage.incr_many([]) == {}


async def test_a_replay_is_not_counted_and_a_429_is_not_kept_for_the_key(
        database_url: str) -> None:
    async with api_client(database_url, rate_limits=only(writes_per_key="2/minute")) as api:
        staff = await api.admin_with(*ADMIN_SCOPES)
        body = {"email": next(emails), "name": "Once"}
        first = await api.client.post("/customers", json=body,
                                      headers={**staff, "Idempotency-Key": "k1"})
        created = expect(first, 201)
        for _ in range(3):
            again = await api.client.post("/customers", json=body,
                                          headers={**staff, "Idempotency-Key": "k1"})
            assert expect(again, 201)["id"] == created["id"]
            assert again.headers["idempotent-replayed"] == "true"
        other = {"email": next(emails), "name": "Twice"}
        expect(await api.client.post("/customers", json=other,
                                     headers={**staff, "Idempotency-Key": "k2"}), 201)
        third = {"email": next(emails), "name": "Thrice"}
        assert_limited(await api.client.post("/customers", json=third,
                                             headers={**staff, "Idempotency-Key": "k3"}))
        # the window is over (its counters gone): the same key now runs the request
        await api.engine.db.run("DELETE FROM rate_limits")
        later = await api.client.post("/customers", json=third,
                                      headers={**staff, "Idempotency-Key": "k3"})
        assert expect(later, 201)["name"] == "Thrice"
        assert "idempotent-replayed" not in later.headers


async def test_the_openapi_document_lists_429_on_writes(database_url: str) -> None:
    async with api_client(database_url) as api:
        paths = expect(await api.client.get("/schema/openapi.json"), 200)["paths"]
        assert "429" in paths["/orders"]["post"]["responses"]
        assert "429" in paths["/carts/{cart_id}/lines/{sku}"]["delete"]["responses"]
        assert "429" not in paths["/orders"]["get"]["responses"]


def test_the_limits_are_rates_or_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDNUNG_RATE_LIMIT_WRITES", "off")
    monkeypatch.setenv("ORDNUNG_RATE_LIMIT_WRITES_PER_KEY", "50/second")
    limits = WriteLimits.from_env()
    assert limits.item("writes") is None
    assert str(limits.item("writes_per_key")) == "50 per 1 second"
    assert limits.item("writes_per_address") is not None  # the default
    monkeypatch.setenv("ORDNUNG_RATE_LIMIT_WRITES_PER_ADDRESS", "lots")
    with pytest.raises(ConfigError, match="ORDNUNG_RATE_LIMIT_WRITES_PER_ADDRESS"):
        WriteLimits.from_env()


def test_the_workers_of_a_server_share_one_count(database_url: str, tmp_path: Path) -> None:
    """``ordnung serve`` with two workers: the limit holds for the server as a whole
    (the counters are in the database), not per worker."""
    env = {"ORDNUNG_RATE_LIMIT_WRITES_PER_KEY": "10/minute"}
    with running_server(database_url, tmp_path, workers=2, env=env) as server:
        statuses = []
        for n in range(14):  # a new connection each time: the workers take turns
            response = httpx.post(f"{server.base_url}/customers", headers=SERVE_ADMIN,
                                  json={"email": f"shared{n}@example.com"}, timeout=30)
            statuses.append(response.status_code)
            if response.status_code == 429:
                assert int(response.headers["retry-after"]) >= 1
        assert statuses == [201] * 10 + [429] * 4, statuses
        listed = httpx.get(f"{server.base_url}/customers?limit=100", headers=SERVE_ADMIN,
                           timeout=30).json()["items"]
        assert len(listed) == 10


def test_a_malformed_limit_stops_the_server_with_one_line(tmp_path: Path) -> None:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ORDNUNG_")}
    environ["ORDNUNG_RATE_LIMIT_WRITES"] = "lots"
    result = subprocess.run(
        [sys.executable, "-m", "ordnung.api.cli", "serve", "--port", "1",
         "--database-url", f"sqlite:///{tmp_path / 'shop.db'}"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path, env=environ)
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines() == [
        "ordnung serve: ORDNUNG_RATE_LIMIT_WRITES: expected a rate such as '120/minute' or "
        "'10/second', or 'off', got 'lots'"]
    assert not (tmp_path / "shop.db").exists()  # refused before the database is touched
