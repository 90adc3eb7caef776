"""Workers keep the credentials and variants they read; no worker serves them stale.

Two apps on one database stand for two worker processes: each has its own engine and
so its own kept copies. One worker uses a credential (or prices a variant), the other
ends it (or changes the price), and the first must refuse it (or charge the new price)
on its very next request: a revocation that has returned is in force everywhere.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import pytest

from ordnung.core import Engine
from ordnung.core.persistence.generations import Observed
from ordnung.core.persistence.generations import read as read_generations
from tests.api_support import (
    Api,
    api_client,
    bearer,
    expect,
    expect_problem,
    order_body,
)
from tests.support import builtin_plugins
from tests.test_edge_accounts import Mailbox, register, sign_in


@asynccontextmanager
async def two_workers(database_url: str) -> AsyncIterator[tuple[Api, Api]]:
    """(first, second): two apps with their own engines on one seeded database."""
    mailbox = Mailbox()
    plugins = [*builtin_plugins(), (mailbox, "mailbox")]
    async with api_client(database_url, plugins=plugins) as first, \
            api_client(database_url, plugins=plugins, seed=False) as second:
        yield first, second


async def uses(api: Api, headers: dict[str, str], *, key: str) -> None:
    """A read and a write with ``headers`` that succeed (so the worker keeps the
    credential), the write under ``Idempotency-Key: key``."""
    expect(await api.client.get("/orders", headers=headers), 200)
    expect(await api.client.post("/carts", json={"channel": "web"},
                                 headers={**headers, "Idempotency-Key": key}), 201)


async def refused(api: Api, headers: dict[str, str], *, key: str) -> None:
    """Every kind of request with ``headers`` answers 401: a read, a new write, and the
    replay of a write whose answer is kept under ``key``."""
    expect_problem(await api.client.get("/orders", headers=headers), 401, "unauthorized")
    expect_problem(await api.client.post("/carts", json={"channel": "web"}, headers=headers),
                   401, "unauthorized")
    expect_problem(await api.client.post("/carts", json={"channel": "web"},
                                         headers={**headers, "Idempotency-Key": key}),
                   401, "unauthorized")


Ending = Callable[[Api, dict[str, Any]], Awaitable[None]]


async def revoke_token(api: Api, holder: dict[str, Any]) -> None:
    expect(await api.client.delete(f"/admin/keys/{holder['key_id']}", headers=api.admin), 204)


async def erase_customer(api: Api, holder: dict[str, Any]) -> None:
    expect(await api.client.delete(f"/customers/{holder['customer_id']}",
                                   headers=api.admin), 200)


async def sign_out(api: Api, holder: dict[str, Any]) -> None:
    expect(await api.client.delete("/accounts/sessions/current",
                                   headers=holder["headers"]), 204)


async def sign_out_everywhere(api: Api, holder: dict[str, Any]) -> None:
    expect(await api.client.delete("/accounts/sessions", headers=holder["headers"]), 200)


async def refresh(api: Api, holder: dict[str, Any]) -> None:
    """Refreshing replaces the access token: the old one stops working."""
    expect(await api.client.post("/accounts/sessions/refresh", json={
        "refresh_token": holder["refresh_token"]}, headers=holder["shop"]), 200)


async def staff_token(api: Api) -> dict[str, Any]:
    customer, headers = await api.customer()
    keys = expect(await api.client.get("/admin/keys", headers=api.admin), 200)["items"]
    key = next(k for k in keys if k["customer_id"] == customer["id"])
    return {"headers": headers, "key_id": key["id"], "customer_id": customer["id"]}


async def session(api: Api) -> dict[str, Any]:
    shop = await api.storefront("web")
    registered = await register(api, shop)
    tokens = registered["session"]
    return {"headers": bearer(tokens["access_token"]), "shop": shop,
            "refresh_token": tokens["refresh_token"],
            "customer_id": registered["customer"]["id"]}


@pytest.mark.parametrize(("make", "end"), [
    (staff_token, revoke_token),
    (staff_token, erase_customer),
    (session, sign_out),
    (session, sign_out_everywhere),
    (session, refresh),
    (session, erase_customer),
], ids=["token-revoked", "token-customer-erased", "session-signed-out",
        "session-signed-out-everywhere", "session-refreshed", "session-customer-erased"])
async def test_a_credential_ended_on_one_worker_is_refused_by_another_at_once(
        database_url: str, make: Callable[[Api], Awaitable[dict[str, Any]]],
        end: Ending) -> None:
    async with two_workers(database_url) as (first, second):
        holder = await make(first)
        await uses(second, holder["headers"], key="kept-1")
        await end(first, holder)
        await refused(second, holder["headers"], key="kept-1")


async def test_a_revoked_admin_key_is_refused_by_the_worker_that_kept_it(
        database_url: str) -> None:
    async with two_workers(database_url) as (first, second):
        issued = await first.issue_key("admin", scopes=["orders"])
        headers = bearer(issued["secret"])
        expect(await second.client.get("/orders", headers=headers), 200)
        await first.revoke(issued["key"]["id"])
        expect_problem(await second.client.get("/orders", headers=headers), 401,
                       "unauthorized")


async def test_a_storefront_key_revoked_elsewhere_places_no_order(database_url: str) -> None:
    async with two_workers(database_url) as (first, second):
        issued = await first.issue_key("storefront", channel="web")
        headers = bearer(issued["secret"])
        expect(await second.client.post("/orders", json=order_body(("MUG", 1)),
                                        headers=headers), 201)
        orders, levels = await second.order_count(), await second.levels()
        await first.revoke(issued["key"]["id"])
        # counted from the worker's share: the stock reservation brings the generation
        # back and is rolled back with the refusal
        expect_problem(await second.client.post("/orders", json=order_body(("MUG", 1)),
                                                headers=headers), 401, "unauthorized")
        assert await second.order_count() == orders
        assert await second.levels() == levels


async def test_a_kept_key_revoked_elsewhere_makes_no_cart_on_its_next_request(
        database_url: str) -> None:
    """A new cart is the revoked key's first request on the worker that kept it: the
    insert, guarded by the generation the key was kept at, writes nothing, and the key,
    looked up again, is refused."""
    async with two_workers(database_url) as (first, second):
        issued = await first.issue_key("storefront", channel="web")
        shop = bearer(issued["secret"])
        expect(await second.client.post("/carts", json={"channel": "web"}, headers=shop),
               201)
        count = "SELECT COUNT(*) AS n FROM carts"
        before = await second.engine.db.fetch(count)
        await first.revoke(issued["key"]["id"])
        expect_problem(await second.client.post("/carts", json={"channel": "web"},
                                                headers=shop), 401, "unauthorized")
        assert await second.engine.db.fetch(count) == before


async def test_a_new_cart_with_a_kept_key_is_made_once_when_another_key_was_revoked(
        database_url: str) -> None:
    """The insert of a cart is guarded by the generation its kept key was read at: a
    revocation of some other key moves that generation, the guarded insert writes
    nothing, and the key, confirmed afresh, still makes exactly one cart."""
    async with two_workers(database_url) as (first, second):
        mine = bearer((await first.issue_key("storefront", channel="web"))["secret"])
        other = await first.issue_key("storefront", channel="web")
        expect(await second.client.post("/carts", json={"channel": "web"}, headers=mine),
               201)
        count = "SELECT COUNT(*) AS n FROM carts"
        before = (await second.engine.db.fetch(count))[0]["n"]
        await first.revoke(other["key"]["id"])
        cart = expect(await second.client.post("/carts", json={"channel": "web"},
                                               headers=mine), 201)
        assert (await second.engine.db.fetch(count))[0]["n"] == before + 1
        assert (await second.engine.carts.get(cart["id"])).id == cart["id"]


async def test_a_price_changed_on_one_worker_is_charged_by_another_at_once(
        database_url: str) -> None:
    async with two_workers(database_url) as (first, second):
        shop = await second.storefront("web")
        before = expect(await second.client.post(
            "/orders", json=order_body(("MUG", 1)), headers=shop), 201)
        mug = expect(await first.client.get("/catalogue/products/mug", headers=first.admin),
                     200)
        mug["variants"][0]["prices"] = {"EUR": 1500}
        expect(await first.client.put("/catalogue/products/mug", json=mug,
                                      headers=first.admin), 200)
        after = expect(await second.client.post(
            "/orders", json=order_body(("MUG", 1)), headers=shop), 201)
        assert [line["unit_price"] for line in before["lines"]] == [1200]
        assert [line["unit_price"] for line in after["lines"]] == [1500]


async def test_a_kept_key_and_kept_variants_cost_no_statement(database_url: str) -> None:
    """The second placement with the same key and SKUs neither looks the key up nor
    reads the variants: one small statement brings both generations back (the write is
    counted from the worker's share of its rate limits)."""
    async with api_client(database_url) as api:
        shop = await api.storefront("web")
        sql: list[str] = []
        expect(await api.client.post("/orders", json=order_body(("MUG", 1)), headers=shop),
               201)
        original = api.engine.db.run

        async def noted(statement: str, *args: Any) -> list[Any]:
            sql.append(statement)
            return await original(statement, *args)

        api.engine.db.run = noted  # type: ignore[method-assign]
        try:
            expect(await api.client.post("/orders", json=order_body(("MUG", 1)),
                                         headers=shop), 201)
        finally:
            api.engine.db.run = original  # type: ignore[method-assign]
        assert not [s for s in sql if "FROM api_keys" in s or "FROM variants" in s], sql


class Credential:
    """A token in the interleaving below, and whether it should open the door."""

    def __init__(self, headers: dict[str, str], live: bool = True, *,
                 key_id: str | None = None, refresh_token: str | None = None) -> None:
        self.headers, self.live = headers, live
        self.key_id, self.refresh_token = key_id, refresh_token


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_random_interleavings_on_two_workers_never_let_an_ended_credential_in(
        database_url: str, seed: int) -> None:
    """Staff tokens and sessions are issued, used, revoked, signed out and refreshed
    at random on either worker; every read and write on either worker answers as the
    credential stands at that moment (a seeded walk: a failure names its seed)."""
    rng = random.Random(seed)
    async with two_workers(database_url) as workers:
        shop = await workers[0].storefront("web")
        customer = (await register(workers[0], shop))["customer"]
        tokens: list[Credential] = []
        answered: list[int] = []

        async def issue(api: Api) -> None:
            if rng.random() < 0.5:
                issued = expect(await api.client.post(
                    f"/customers/{customer['id']}/tokens", json={}, headers=api.admin), 201)
                tokens.append(Credential(bearer(issued["secret"]), key_id=issued["key"]["id"]))
            else:
                session = expect(await sign_in(api, shop), 201)
                tokens.append(Credential(bearer(session["access_token"]),
                                         refresh_token=session["refresh_token"]))

        async def use(api: Api, token: Credential) -> None:
            wanted = 200 if token.live else 401
            if rng.random() < 0.5:
                response = await api.client.get("/orders", headers=token.headers)
            else:
                response = await api.client.post("/carts", json={"channel": "web"},
                                                 headers=token.headers)
                wanted = 201 if token.live else 401
            assert response.status_code == wanted, (seed, response.text)
            answered.append(response.status_code)

        async def end(api: Api, token: Credential) -> None:
            if token.key_id is not None:
                expect(await api.client.delete(f"/admin/keys/{token.key_id}",
                                               headers=api.admin), 204)
                token.live = False
            elif token.live and rng.random() < 0.5:
                expect(await api.client.delete("/accounts/sessions/current",
                                               headers=token.headers), 204)
                token.live = False
            elif token.live:  # a refresh: the old access token dies, a new one lives
                renewed = expect(await api.client.post("/accounts/sessions/refresh", json={
                    "refresh_token": token.refresh_token}, headers=shop), 200)
                token.live = False
                tokens.append(Credential(bearer(renewed["access_token"]),
                                         refresh_token=renewed["refresh_token"]))

        await issue(workers[0])
        for _ in range(60):
            api = workers[rng.randrange(2)]
            roll = rng.random()
            if roll < 0.15:
                await issue(api)
            elif roll < 0.35:
                await end(api, rng.choice(tokens))
            else:
                await use(api, rng.choice(tokens))
        # the walk let live credentials in and turned ended ones away, on both workers
        assert 401 in answered and {200, 201} & set(answered), answered


#: the modules whose writes to credentials and variants raise the generations (each
#: write there is covered above); housekeeping deletes only what has ended already
_RAISERS = {"core/persistence/accounts.py", "core/persistence/api_keys.py",
            "core/persistence/customers.py", "core/persistence/catalog.py",
            "core/persistence/housekeeping.py"}


def test_only_the_modules_that_raise_the_generations_write_what_workers_keep() -> None:
    """A new statement that changes keys, sessions, customers or variants elsewhere would
    leave workers using stale copies: it must live beside a generation raise."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    writes = re.compile(r"(UPDATE|INSERT INTO|DELETE FROM)\s+(api_keys|customer_sessions|"
                        r"customers|variants)\b", re.IGNORECASE)
    found = {str(path.relative_to(root)) for folder in ("core", "api", "plugins", "plugin")
             for path in (root / folder).rglob("*.py") if writes.search(path.read_text())}
    assert found <= _RAISERS, sorted(found - _RAISERS)


async def test_work_that_outlives_its_request_reads_variants_afresh(engine: Engine) -> None:
    """A task a request starts (a plugin's reaction, a delivery) carries the request's
    context, generations and all; once the request is over it must not go on trusting
    them, or it would price from a variant changed since."""
    resume = asyncio.Event()
    prices: list[int] = []

    async def outlives_the_request() -> None:
        await resume.wait()
        prices.append((await engine.catalog.variant("MUG")).prices["EUR"])

    with Observed().serving():
        await read_generations(engine.db)
        assert (await engine.catalog.variant("MUG")).prices["EUR"] == 1200  # kept
        task = asyncio.create_task(outlives_the_request())
    mug = await engine.catalog.product("mug")
    await engine.catalog.upsert_product(msgspec.structs.replace(mug, variants=[
        msgspec.structs.replace(v, prices={"EUR": 1500}) for v in mug.variants]))
    resume.set()
    await task
    assert prices == [1500]
