"""The client IP the fraud rules count comes only from a trusted source (HTTP API).

Found: when no client IP was sent, the API counted the connection's address, which for a
storefront's server (or a proxy) is the same for every order, so every order from one
storefront soon scored as a velocity attack; and any caller could set ``client.ip``.
Now: an admin (server-side) key's ``client.ip`` counts; a publishable storefront key or a
customer token cannot set it; the connection's address, or ``X-Forwarded-For`` through a
configured trusted proxy, counts for those only when ``ORDNUNG_TRUSTED_PROXIES`` is set.
Both placement routes (``POST /orders`` and ``POST /carts/{id}/order``) follow it.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pytest

from ordnung.core import EngineConfig
from ordnung.core.errors import ConfigError
from ordnung.plugins.fraud.rules import RiskRules
from tests.api_support import (
    BASE_URL,
    BERLIN,
    Api,
    api_client,
    bearer,
    expect,
    expect_problem,
    order_body,
)
from tests.serve_support import ADMIN_KEY as SERVE_ADMIN_KEY
from tests.serve_support import running_server
from tests.support import builtin_plugins

#: only the IP velocity rule: a third order from one address within the hour is held
IP_RULE: dict[str, Any] = {
    "hold_at": 40, "amounts": [], "country_mismatch_score": 0,
    "velocity": [{"by": "ip", "max_orders": 2, "window_minutes": 60, "score": 40}]}
#: the in-process client's connection address (httpx.ASGITransport)
PEER = "127.0.0.1"

emails = (f"shopper{n}@example.com" for n in itertools.count())

Place = Callable[[dict[str, str], dict[str, Any], dict[str, str]], Awaitable[httpx.Response]]


@asynccontextmanager
async def risk_api(database_url: str, trusted_proxies: list[str] | None = None
                   ) -> AsyncIterator[Api]:
    plugins = [*builtin_plugins(), (RiskRules, "risk_rules", IP_RULE)]
    async with api_client(database_url, plugins=plugins,
                          trusted_proxies=trusted_proxies or []) as api:
        yield api


def direct(api: Api) -> Place:
    async def place(headers: dict[str, str], client: dict[str, Any],
                    extra_headers: dict[str, str]) -> httpx.Response:
        body = order_body(("MUG", 1), email=next(emails))
        if client:
            body["client"] = client
        return await api.client.post("/orders", json=body, headers={**headers, **extra_headers})

    return place


def via_cart(api: Api) -> Place:
    async def place(headers: dict[str, str], client: dict[str, Any],
                    extra_headers: dict[str, str]) -> httpx.Response:
        cart_id = (await api.new_cart(headers, {"channel": "web"}))["id"]
        url = f"/carts/{cart_id}"
        headers = api.holding(headers, cart_id)  # a guest cart answers to its token
        expect(await api.client.post(f"{url}/lines", json={"sku": "MUG"}, headers=headers), 200)
        expect(await api.client.put(f"{url}/addresses", json={
            "shipping": BERLIN, "email": next(emails)}, headers=headers), 200)
        expect(await api.client.put(f"{url}/shipping-method",
                                    json={"method": "flat_rate:standard"}, headers=headers), 200)
        body: dict[str, Any] = {"payment": {"gateway": "sandbox", "token": "tok_success"}}
        if client:
            body["client"] = client
        return await api.client.post(f"{url}/order", json=body,
                                     headers={**headers, **extra_headers})

    return place


ROUTES = {"POST /orders": direct, "POST /carts/{id}/order": via_cart}


async def placed(api: Api, place: Place, headers: dict[str, str], *, client: dict[str, Any]
                 | None = None, extra_headers: dict[str, str] | None = None) -> dict[str, Any]:
    """Place an order; the order as staff see it (risk score and reasons included)."""
    order = expect(await place(headers, client or {}, extra_headers or {}), 201)
    return await api.order(order["id"])


def ip_reasons(order: dict[str, Any]) -> list[str]:
    return [r for r in order["risk_reasons"] if "IP address" in r]


@pytest.mark.parametrize("route", ROUTES)
async def test_the_storefront_connection_is_not_the_shopper(database_url: str,
                                                            route: str) -> None:
    """No trusted proxy configured: many orders over one connection address are not a
    velocity attack, whichever key places them."""
    async with risk_api(database_url) as api:
        place = ROUTES[route](api)
        shop = await api.storefront("web")
        for headers in (shop, api.admin, shop, api.admin, shop):
            order = await placed(api, place, headers)
            assert ip_reasons(order) == [] and order["status"] == "processing", order
        # a forwarded-for header from an untrusted peer means nothing either
        order = await placed(api, place, shop, extra_headers={"X-Forwarded-For": "192.0.2.1"})
        assert ip_reasons(order) == []


@pytest.mark.parametrize("route", ROUTES)
async def test_a_server_side_key_tells_the_shopper_ip(database_url: str, route: str) -> None:
    async with risk_api(database_url) as api:
        place = ROUTES[route](api)
        backend = await api.admin_with("orders")
        first = [await placed(api, place, backend, client={"ip": "198.51.100.7"})
                 for _ in range(2)]
        assert all(o["status"] == "processing" and not ip_reasons(o) for o in first)
        other = await placed(api, place, backend, client={"ip": "198.51.100.8"})
        assert other["status"] == "processing"
        # the same shopper a third time within the hour (written another way): held
        third = await placed(api, place, backend, client={"ip": "::ffff:198.51.100.7"})
        assert third["status"] == "on_hold"
        assert ip_reasons(third) == [
            "risk_rules: 3 orders from this IP address within 1 h (more than 2)"]

        before = await api.order_count()
        for bad in ("not-an-ip", "198.51.100.300", "", " "):
            problem = expect_problem(await place(backend, {"ip": bad}, {}), 422, "validation")
            assert "client.ip" in problem["detail"], problem
        assert await api.order_count() == before


@pytest.mark.parametrize("route", ROUTES)
async def test_a_browser_key_cannot_set_its_own_ip(database_url: str, route: str) -> None:
    async with risk_api(database_url) as api:
        place = ROUTES[route](api)
        shop = await api.storefront("web")
        _, customer = await api.customer("kim@example.com")
        before = await api.order_count()
        for headers in (shop, customer):
            problem = expect_problem(await place(headers, {"ip": "192.0.2.55"}, {}),
                                     422, "validation")
            assert "client.ip" in problem["detail"], problem
        assert await api.order_count() == before
        # what else a storefront tells about its client is still taken
        order = await placed(api, place, shop, client={"user_agent": "Mozilla/5.0"})
        assert order["status"] == "processing"


@pytest.mark.parametrize("route", ROUTES)
async def test_forwarded_for_counts_only_through_a_trusted_proxy(database_url: str,
                                                                 route: str) -> None:
    async with risk_api(database_url, trusted_proxies=[PEER, "10.0.0.0/8"]) as api:
        place = ROUTES[route](api)
        shop = await api.storefront("web")
        # through the trusted proxy: the shopper is the address the proxy saw
        for shopper in ("192.0.2.10", "192.0.2.11", "192.0.2.12"):
            order = await placed(api, place, shop, extra_headers={"X-Forwarded-For": shopper})
            assert order["status"] == "processing" and not ip_reasons(order)
        # a client's own forged entries to the left are not believed; the rightmost
        # address that is not a trusted proxy is the shopper
        for forged in ("203.0.113.1", "203.0.113.2"):
            order = await placed(api, place, shop, extra_headers={
                "X-Forwarded-For": f"{forged}, 192.0.2.10, 10.1.1.1"})
        assert order["status"] == "on_hold", order
        assert ip_reasons(order) == [
            "risk_rules: 3 orders from this IP address within 1 h (more than 2)"]
        # the proxy's own address is never the shopper's: nothing to count
        order = await placed(api, place, shop)
        assert order["status"] == "processing" and not ip_reasons(order)

        # a browser connecting directly (not through a proxy) is the shopper itself, and
        # what it claims to be forwarding for is ignored
        async with httpx.AsyncClient(transport=httpx.ASGITransport(
                app=api.app, client=("198.51.100.99", 50000)),  # type: ignore[arg-type]
                base_url=BASE_URL) as browser:
            api.client, proxy_client = browser, api.client
            try:
                statuses = [(await placed(api, place, shop, extra_headers={
                    "X-Forwarded-For": f"192.0.2.{n}"}))["status"] for n in range(50, 53)]
            finally:
                api.client = proxy_client
        assert statuses == ["processing", "processing", "on_hold"]


def test_a_trusted_proxy_setting_must_name_addresses_or_networks(
        monkeypatch: pytest.MonkeyPatch) -> None:
    assert EngineConfig(trusted_proxies=["10.0.0.0/8", "192.0.2.1", "::1"]).trusted_proxies
    for bad in (["10.0.0.0/33"], ["proxy.example.com"], [""]):
        with pytest.raises(ConfigError, match="trusted_proxies"):
            EngineConfig(trusted_proxies=bad)
    monkeypatch.setenv("ORDNUNG_TRUSTED_PROXIES", " 10.0.0.0/8, 2001:db8::/32 ")
    assert EngineConfig.from_env().trusted_proxies == ["10.0.0.0/8", "2001:db8::/32"]
    monkeypatch.setenv("ORDNUNG_TRUSTED_PROXIES", "10.0.0.0/8,proxy.example.com")
    with pytest.raises(ConfigError) as err:
        EngineConfig.from_env()
    assert err.value.setting == "ORDNUNG_TRUSTED_PROXIES"
    assert "proxy.example.com" in err.value.detail


def test_a_real_server_believes_only_the_configured_proxies(database_url: str,
                                                            tmp_path: Path) -> None:
    """``ordnung serve`` itself must not take X-Forwarded-For from a local peer on its
    own (uvicorn does by default): the trusted proxies here are 10.0.0.0/8, so a request
    from 127.0.0.1 is a browser talking directly, whatever it claims to forward for."""
    env = {"ORDNUNG_TRUSTED_PROXIES": "10.0.0.0/8",
           "ORDNUNG_PLUGINS": "sandbox,flat_rate,table_tax,free_gift,risk_rules",
           "ORDNUNG_PLUGIN_SETTINGS": msgspec.json.encode({"risk_rules": IP_RULE}).decode()}
    with running_server(database_url, tmp_path, "--demo", workers=1, env=env) as server, \
            httpx.Client(base_url=server.base_url, timeout=30) as http:
        admin = bearer(SERVE_ADMIN_KEY)
        shop = bearer(expect(http.post("/admin/keys", json={
            "kind": "storefront", "channel": "web", "name": "web"}, headers=admin), 201)[
            "secret"])
        statuses = []
        for n in range(3):
            order = expect(http.post("/orders", json=order_body(
                ("MUG", 1), email=f"direct{n}@example.com"),
                headers={**shop, "X-Forwarded-For": f"192.0.2.{n}"}), 201)
            statuses.append(expect(http.get(f"/orders/{order['id']}", headers=admin),
                                   200)["status"])
        assert statuses == ["processing", "processing", "on_hold"]
