"""Shared helpers for tests that drive the REST API over HTTP, in process.

Use the context manager::

    async with api_client(database_url) as api:
        shop = await api.storefront("web")
        order = await api.place_order(shop, order_body(("SHIRT-M", 1)))

or the ``api`` fixture (import ``api_fixture`` explicitly into the test module)::

    from tests.api_support import Api, api_fixture  # noqa: F401

    async def test_x(api: Api) -> None: ...

The engine is built exactly like ``tests/conftest.py``'s ``make_engine``
(built-in plugins registered as objects, no entry points) and seeded with
``tests.support.seed_shop``. Requests go through ``httpx.ASGITransport``
inside ``app.lifespan()`` on the test's own event loop (litestar's
AsyncTestClient would run the app on another loop, which the PostgreSQL pool
does not survive).
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from typing import Any, TypeVar

import httpx
import pytest
from litestar import Litestar

from ordnung.api.app import create_app
from ordnung.api.rate_limits import WriteLimits
from ordnung.core import Engine, EngineConfig
from ordnung.core.domain.access import ADMIN_SCOPES
from ordnung.core.logging import configure_logging
from ordnung.core.persistence.generations import ACCESS, raise_generation
from tests.support import builtin_plugins, seed_shop

T = TypeVar("T")

#: the bootstrap admin key of every test app (every scope)
ADMIN_KEY = "sk_test_bootstrap_admin_0123456789abcdef"
BASE_URL = "http://ordnung.test"
PROBLEM_BASE = "https://ordnung.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"
#: the header a guest cart's token travels in
CART_TOKEN = "X-Cart-Token"

BERLIN: dict[str, str] = {
    "name": "Erika Mustermann", "line1": "Heidestraße 17", "city": "Berlin",
    "postal_code": "51147", "country": "DE", "email": "erika@example.com"}


def bearer(secret: str) -> dict[str, str]:
    """``Authorization`` headers for a key or token secret."""
    return {"Authorization": f"Bearer {secret}"}


def order_body(*lines: tuple[str, int], token: str | None = "tok_success",
               gateway: str = "sandbox", method: str = "", channel: str = "web",
               email: str = "erika@example.com", customer_id: str | None = None,
               shipping_method: str | None = "flat_rate:standard",
               address: dict[str, str] | None = None, **extra: Any) -> dict[str, Any]:
    """A ``POST /orders`` body (the JSON twin of ``tests.support.order_request``).

    ``token=None`` with the sandbox gateway leaves the payment out; ``extra``
    adds further top-level fields (``codes``, ``metadata``, ``client`` ...).
    """
    body: dict[str, Any] = {
        "channel": channel,
        "lines": [{"sku": sku, "quantity": qty} for sku, qty in (lines or (("SHIRT-M", 1),))],
        "email": email,
        "shipping_address": dict(address or BERLIN),
    }
    if shipping_method is not None:
        body["shipping_method"] = shipping_method
    if customer_id is not None:
        body["customer_id"] = customer_id
    if token is not None or gateway != "sandbox":
        body["payment"] = {"gateway": gateway, "method": method, "token": token or ""}
    body.update(extra)
    return body


def expect(response: httpx.Response, status: int) -> Any:
    """Assert the status (showing the body when it differs) and return the JSON body."""
    assert response.status_code == status, (
        f"{response.request.method} {response.request.url.path}: expected {status}, got "
        f"{response.status_code}: {response.text}")
    return response.json() if response.content else None


def expect_problem(response: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    """Assert an RFC 9457 problem of this status and ``type`` ``.../problems/<kind>``."""
    body: dict[str, Any] = expect(response, status)
    assert response.headers["content-type"].startswith(PROBLEM_MEDIA_TYPE), \
        response.headers["content-type"]
    assert body["type"] == PROBLEM_BASE + kind, body
    assert body["status"] == status, body
    return body


class Api:
    """A running app on a seeded engine, and an HTTP client for it."""

    def __init__(self, engine: Engine, app: Litestar, client: httpx.AsyncClient) -> None:
        self.engine = engine
        self.app = app
        self.client = client
        #: headers of the bootstrap admin key (every scope)
        self.admin: dict[str, str] = bearer(ADMIN_KEY)
        #: the token of every guest cart created through ``new_cart``, by cart id
        self.cart_tokens: dict[str, str] = {}

    # -- keys and tokens (issued over the API, as an operator would) -----------------------
    async def storefront(self, channel: str = "web", name: str = "") -> dict[str, str]:
        """Headers of a new storefront key for ``channel``."""
        return bearer((await self.issue_key("storefront", channel=channel, name=name))["secret"])

    async def admin_with(self, *scopes: str, name: str = "") -> dict[str, str]:
        """Headers of a new admin key holding exactly ``scopes``."""
        return bearer((await self.issue_key("admin", scopes=list(scopes), name=name))["secret"])

    async def issue_key(self, kind: str, *, scopes: list[str] | None = None,
                        channel: str | None = None, name: str = "") -> dict[str, Any]:
        """``POST /admin/keys``: the issued key (``{"key": {...}, "secret": ...}``)."""
        body: dict[str, Any] = {"kind": kind, "name": name, "scopes": scopes or []}
        if channel is not None:
            body["channel"] = channel
        issued: dict[str, Any] = expect(
            await self.client.post("/admin/keys", json=body, headers=self.admin), 201)
        return issued

    async def revoke(self, key_id: str) -> None:
        expect(await self.client.delete(f"/admin/keys/{key_id}", headers=self.admin), 204)

    async def customer(self, email: str = "erika@example.com", name: str = "Erika",
                       tags: list[str] | None = None) -> tuple[dict[str, Any], dict[str, str]]:
        """Create a customer and a token for them: ``(customer, headers)``."""
        customer: dict[str, Any] = expect(await self.client.post(
            "/customers", json={"email": email, "name": name, "tags": tags or []},
            headers=self.admin), 201)
        return customer, await self.customer_token(customer["id"])

    async def customer_token(self, customer_id: str) -> dict[str, str]:
        issued = expect(await self.client.post(f"/customers/{customer_id}/tokens", json={},
                                               headers=self.admin), 201)
        return bearer(issued["secret"])

    # -- orders --------------------------------------------------------------------------
    async def place_order(self, headers: dict[str, str], body: dict[str, Any] | None = None,
                          *, idempotency_key: str | None = None,
                          status: int = 201) -> dict[str, Any]:
        """``POST /orders``; asserts ``status`` (201 by default) and returns the JSON body."""
        response = await self.post_order(headers, body, idempotency_key=idempotency_key)
        result: dict[str, Any] = expect(response, status)
        return result

    async def post_order(self, headers: dict[str, str], body: dict[str, Any] | None = None,
                         *, idempotency_key: str | None = None) -> httpx.Response:
        """``POST /orders`` returning the raw response (for error and replay tests)."""
        extra = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return await self.client.post("/orders", json=body or order_body(),
                                      headers={**headers, **extra})

    async def new_cart(self, headers: dict[str, str],
                       body: dict[str, Any] | None = None) -> dict[str, Any]:
        """``POST /carts``; a guest cart's token is remembered for ``holding``."""
        cart: dict[str, Any] = expect(await self.client.post("/carts", json=body or {},
                                                             headers=headers), 201)
        if cart.get("cart_token"):
            self.cart_tokens[cart["id"]] = cart["cart_token"]
        return cart

    def holding(self, headers: dict[str, str], cart_id: str) -> dict[str, str]:
        """``headers`` plus the cart's ``X-Cart-Token`` (if it is a guest cart of ours)."""
        token = self.cart_tokens.get(cart_id)
        return {**headers, CART_TOKEN: token} if token else dict(headers)

    async def ready_cart(self, headers: dict[str, str], sku: str = "MUG",
                         email: str = "kim@example.com") -> tuple[str, dict[str, str]]:
        """A cart with a line, an address and a shipping method, ready to order: its id,
        and ``headers`` holding its token."""
        cid: str = (await self.new_cart(headers))["id"]
        headers = self.holding(headers, cid)
        expect(await self.client.post(f"/carts/{cid}/lines", json={"sku": sku},
                                      headers=headers), 200)
        expect(await self.client.put(f"/carts/{cid}/addresses",
                                     json={"shipping": BERLIN, "email": email},
                                     headers=headers), 200)
        expect(await self.client.put(f"/carts/{cid}/shipping-method",
                                     json={"method": "flat_rate:standard"}, headers=headers), 200)
        return cid, headers

    async def placed_cart(self, headers: dict[str, str], sku: str = "MUG") -> str:
        """A cart taken through the whole flow (line, address, shipping, order); its id."""
        cid, headers = await self.ready_cart(headers, sku)
        expect(await self.client.post(f"/carts/{cid}/order", json={
            "payment": {"gateway": "sandbox", "token": "tok_success"}}, headers=headers), 201)
        return cid

    async def order(self, order_id: str, headers: dict[str, str] | None = None
                    ) -> dict[str, Any]:
        result: dict[str, Any] = expect(
            await self.client.get(f"/orders/{order_id}", headers=headers or self.admin), 200)
        return result

    async def available(self, sku: str) -> int:
        """Units of ``sku`` available (on hand − reserved) over every location, read over
        the API."""
        levels = expect(await self.client.get("/inventory/levels", params={"sku": sku},
                                              headers=self.admin), 200)
        return sum(int(level["on_hand"]) - int(level["reserved"]) for level in levels)

    async def levels(self) -> dict[tuple[str, str], tuple[int, int]]:
        """Every stock level as ``{(sku, location): (on_hand, reserved)}`` (over the API)."""
        levels = expect(await self.client.get("/inventory/levels", headers=self.admin), 200)
        return {(lv["sku"], lv["location_id"]): (int(lv["on_hand"]), int(lv["reserved"]))
                for lv in levels}

    def plugin(self, name: str) -> Any:
        """The registered plugin object (e.g. ``api.plugin("sandbox").calls``)."""
        return self.engine.host.pm.get_plugin(name)

    async def edit_credentials(self, sql: str, *args: Any) -> None:
        """Change credentials with SQL, outside the engine, as the README tells an
        operator to: with the ``access`` generation raised in the same transaction, so
        that no worker keeps using what the statement changed."""
        async with self.engine.db.transaction():
            await self.engine.db.run(sql, *args)
            await raise_generation(self.engine.db, ACCESS)

    async def order_count(self) -> int:
        """How many orders exist (the engine's own count, not limited by paging)."""
        rows = await self.engine.db.fetch("SELECT COUNT(*) AS n FROM orders")
        return int(rows[0]["n"])


@asynccontextmanager
async def api_client(database_url: str, plugins: list[Any] | None = None,
                     plugin_settings: dict[str, dict[str, Any]] | None = None, *,
                     seed: bool = True, rate_limits: WriteLimits | None = None,
                     **config: Any) -> AsyncIterator[Api]:
    """A started engine (built-in plugins unless ``plugins``), seeded unless ``seed`` is
    False, an app with the bootstrap admin key ``ADMIN_KEY``, and a client for it.
    ``config`` passes further ``EngineConfig`` fields (``require_tax=False`` ...);
    ``rate_limits`` the write rate limits (the defaults, or ``ORDNUNG_RATE_LIMIT_*``)."""
    engine = Engine(
        EngineConfig(database_url=database_url, load_entry_points=False, **config),
        plugins=builtin_plugins(plugin_settings) if plugins is None else plugins)
    await engine.start()
    try:
        if seed:
            await seed_shop(engine)
        app = create_app(engine=engine, admin_key=ADMIN_KEY, demo=False,
                         rate_limits=rate_limits)
        async with app.lifespan(), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app),  # type: ignore[arg-type]
                base_url=BASE_URL) as client:
            yield Api(engine, app, client)
    finally:
        await engine.stop()


@asynccontextmanager
async def held(manager: AbstractAsyncContextManager[T]) -> AsyncIterator[T]:
    """Enter and exit ``manager`` in one dedicated task.

    pytest-asyncio runs an async fixture's setup and teardown in different
    tasks, while litestar's lifespan (an anyio task group) must be left in the
    task that entered it. Fixtures wrap ``api_client`` in this.
    """
    ready: asyncio.Future[T] = asyncio.get_running_loop().create_future()
    release = asyncio.Event()

    async def hold() -> None:
        try:
            async with manager as value:
                ready.set_result(value)
                await release.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc)
                return
            raise

    task = asyncio.create_task(hold())
    try:
        yield await ready
    finally:
        release.set()
        await task


@pytest.fixture(name="api")
async def api_fixture(database_url: str) -> AsyncIterator[Api]:
    """``api``: the API over a seeded shop with the built-in plugins (default settings).

    Import ``api_fixture`` into a test module to use it (the fixture is named ``api``
    so tests write ``async def test_x(api: Api)``)."""
    async with held(api_client(database_url)) as running:
        yield running


@contextmanager
def captured_logs(level: str = "DEBUG", *, json: bool = True) -> Iterator[io.StringIO]:
    """Send every structlog line to a StringIO for the duration (restored afterwards)."""
    import structlog

    previous = structlog.get_config()
    stream = io.StringIO()
    configure_logging(level, json=json, stream=stream)
    try:
        yield stream
    finally:
        structlog.configure(**previous)


__all__ = ["ADMIN_KEY", "ADMIN_SCOPES", "BASE_URL", "BERLIN", "CART_TOKEN", "PROBLEM_BASE",
           "PROBLEM_MEDIA_TYPE", "Api", "api_client", "api_fixture", "bearer", "captured_logs",
           "expect", "expect_problem", "held", "order_body"]
