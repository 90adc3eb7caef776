"""The load driver: a fixed number of orders at a fixed concurrency over loopback HTTP.

The driver runs on the same cores as the server, so every millisecond of CPU it spends
on a request is taken from the server: its client is aiohttp's (a compiled HTTP parser)
with bodies through msgspec, on uvloop's event loop where there is one, and the bench
reports what the driver spent per order (``load_cpu_ms_per_order``)."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import msgspec

ADDRESS = {"name": "Bench Customer", "line1": "Teststraße 1", "city": "Berlin",
           "postal_code": "10115", "country": "DE"}


T = TypeVar("T")

#: the status recorded for an attempt that got no HTTP answer (connection lost)
NO_ANSWER = 599


@dataclass
class Outcome:
    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)
    problem_types: Counter[str] = field(default_factory=Counter)
    order_ids: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies_ms:
            return 0.0
        ordered = sorted(self.latencies_ms)
        return round(ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))], 2)


class Response:
    """What an attempt reads of an answer: its status and its JSON body."""

    __slots__ = ("content", "status_code")

    def __init__(self, status_code: int, content: bytes) -> None:
        self.status_code = status_code
        self.content = content

    def json(self) -> Any:
        return msgspec.json.decode(self.content) if self.content else {}


class Client:
    """A keep-alive HTTP client of at most ``connections`` connections to one server."""

    def __init__(self, base_url: str, connections: int, timeout_s: float = 60.0) -> None:
        self.session = aiohttp.ClientSession(
            base_url=base_url, timeout=aiohttp.ClientTimeout(total=timeout_s),
            connector=aiohttp.TCPConnector(limit=connections))

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.session.close()

    async def request(self, method: str, path: str, *, json: Any = None,
                      headers: dict[str, str] | None = None,
                      params: dict[str, str] | None = None) -> Response:
        sent = dict(headers or {})
        data = None
        if json is not None:
            data = msgspec.json.encode(json)
            sent["Content-Type"] = "application/json"
        async with self.session.request(method, path, data=data, headers=sent,
                                        params=params) as response:
            return Response(response.status, await response.read())

    async def get(self, path: str, *, headers: dict[str, str] | None = None,
                  params: dict[str, str] | None = None) -> Response:
        return await self.request("GET", path, headers=headers, params=params)

    async def post(self, path: str, *, json: Any = None,
                   headers: dict[str, str] | None = None) -> Response:
        return await self.request("POST", path, json=json, headers=headers)

    async def put(self, path: str, *, json: Any = None,
                  headers: dict[str, str] | None = None) -> Response:
        return await self.request("PUT", path, json=json, headers=headers)


#: what ends an attempt without an answer (counted, not fatal)
NO_ANSWER_ERRORS = (aiohttp.ClientError, asyncio.TimeoutError)


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run``, on uvloop's loop where it is installed (it comes with the
    server's own dependencies on most platforms): less of the driver's CPU per request.
    The floor runs on it too, so that the ratio compares like with like."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - a platform without uvloop
        return asyncio.run(main)
    return uvloop.run(main)


Attempt = Callable[[Client, int], Awaitable[tuple[int, dict[str, Any]]]]


async def drive(base_url: str, attempt: Attempt, orders: int, concurrency: int,
                duration_s: float | None = None) -> Outcome:
    """Run ``orders`` attempts; with ``duration_s``, stop starting new ones once that
    much time has passed (attempts under way finish and count)."""
    outcome = Outcome()
    counter = iter(range(orders))
    deadline = time.perf_counter() + duration_s if duration_s else float("inf")
    async with Client(base_url, concurrency) as client:
        async def worker() -> None:
            for n in counter:
                if time.perf_counter() >= deadline:
                    return
                started = time.perf_counter()
                try:
                    status, body = await attempt(client, n)
                except NO_ANSWER_ERRORS as exc:  # no answer: counted, not fatal
                    status, body = NO_ANSWER, {"type": f"transport/{type(exc).__name__}"}
                outcome.latencies_ms.append((time.perf_counter() - started) * 1000)
                outcome.statuses[status] += 1
                if status >= 400:
                    outcome.problem_types[str(body.get("type", "")).rsplit("/", 1)[-1]] += 1
                elif "id" in body:
                    outcome.order_ids.append(body["id"])

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        outcome.elapsed_s = time.perf_counter() - started
    return outcome


def placement_body(rng: random.Random, skus: list[str], lines: int = 3) -> dict[str, Any]:
    chosen = rng.sample(skus, lines)
    return {"channel": "web", "lines": [{"sku": s, "quantity": 1} for s in chosen],
            "email": f"bench{rng.randrange(10_000)}@example.com", "shipping_address": ADDRESS,
            "shipping_method": "flat_rate:standard",
            "payment": {"gateway": "sandbox", "token": "tok_success"}}


def one_shot(headers: dict[str, str], skus: list[str], seed: int = 7) -> Attempt:
    rng = random.Random(seed)

    async def attempt(client: Client, n: int) -> tuple[int, dict[str, Any]]:
        response = await client.post("/orders", json=placement_body(rng, skus),
                                     headers=headers)
        return response.status_code, response.json()

    return attempt


def hot(headers: dict[str, str], sku: str) -> Attempt:
    async def attempt(client: Client, n: int) -> tuple[int, dict[str, Any]]:
        body = {"channel": "web", "lines": [{"sku": sku, "quantity": 1}],
                "email": f"hot{n}@example.com", "shipping_address": ADDRESS,
                "shipping_method": "flat_rate:standard",
                "payment": {"gateway": "sandbox", "token": "tok_success"}}
        response = await client.post("/orders", json=body, headers=headers)
        return response.status_code, response.json()

    return attempt


def checkout(headers: dict[str, str], skus: list[str], seed: int = 11) -> Attempt:
    """The cart flow, request by request, as a storefront does it."""
    rng = random.Random(seed)

    async def attempt(client: Client, n: int) -> tuple[int, dict[str, Any]]:
        r = await client.post("/carts", json={"email": f"cart{n}@example.com"},
                              headers=headers)
        if r.status_code >= 400:
            return r.status_code, r.json()
        cart_id = r.json()["id"]
        # a guest's cart answers only to the token its creation returned
        held = {**headers, "X-Cart-Token": r.json()["cart_token"]}
        for sku in rng.sample(skus, 3):
            r = await client.post(f"/carts/{cart_id}/lines", json={"sku": sku, "quantity": 1},
                                  headers=held)
            if r.status_code >= 400:
                return r.status_code, r.json()
        r = await client.put(f"/carts/{cart_id}/addresses", json={"shipping": ADDRESS},
                             headers=held)
        r = await client.get(f"/carts/{cart_id}/shipping-quotes", headers=held)
        r = await client.put(f"/carts/{cart_id}/shipping-method",
                             json={"method": "flat_rate:standard"}, headers=held)
        r = await client.post(f"/carts/{cart_id}/order",
                              json={"payment": {"gateway": "sandbox", "token": "tok_success"}},
                              headers=held)
        return r.status_code, r.json()

    return attempt


def guest_checkout(headers: dict[str, str], skus: list[str], seed: int = 13) -> Attempt:
    """A guest's checkout in the six REST requests a storefront needs: a cart with the
    guest's e-mail, two variants, the address, the shipping method, the order with its
    payment (the flow compared side by side with other engines' shop APIs, so it reads
    no quotes: the method is known)."""
    rng = random.Random(seed)

    async def attempt(client: Client, n: int) -> tuple[int, dict[str, Any]]:
        r = await client.post("/carts", json={"email": f"guest{n}@example.com"},
                              headers=headers)
        if r.status_code >= 400:
            return r.status_code, r.json()
        cart_id = r.json()["id"]
        held = {**headers, "X-Cart-Token": r.json()["cart_token"]}
        steps: list[tuple[str, str, dict[str, Any]]] = [
            *(("POST", "lines", {"sku": sku, "quantity": 1}) for sku in rng.sample(skus, 2)),
            ("PUT", "addresses", {"shipping": ADDRESS}),
            ("PUT", "shipping-method", {"method": "flat_rate:standard"}),
            ("POST", "order", {"payment": {"gateway": "sandbox", "token": "tok_success"}})]
        for method, path, body in steps:
            r = await client.request(method, f"/carts/{cart_id}/{path}", json=body,
                                     headers=held)
            if r.status_code >= 400:
                return r.status_code, r.json()
        return r.status_code, r.json()

    return attempt


#: what a storefront reads back after each cart step: the cart's lines and total
CART_FIELDS = "id status lines { sku quantity } totals { total { amount currency formatted } }"
GRAPHQL_CHECKOUT = {
    "create": "mutation($email: String!) { createCart(email: $email) "
              "{ cartToken cart { id } } }",
    "line": "mutation($cart: String!, $sku: String!) { addCartLine(cartId: $cart, sku: $sku, "
            f"quantity: 1) {{ {CART_FIELDS} }} }}",
    "address": "mutation($cart: String!, $shipping: AddressInput!) { setCartAddresses("
               f"cartId: $cart, shipping: $shipping) {{ {CART_FIELDS} }} }}",
    "quotes": "query($cart: String!) { cart(id: $cart) "
              "{ shippingQuotes { method name price { amount currency formatted } } } }",
    "method": "mutation($cart: String!) { setCartShippingMethod(cartId: $cart, "
              f"method: \"flat_rate:standard\") {{ {CART_FIELDS} }} }}",
    "order": "mutation($cart: String!, $payment: PaymentInput!) { checkout(cartId: $cart, "
             "payment: $payment) { id number status totals { total { amount currency } } } }",
}
GRAPHQL_ADDRESS = {"name": ADDRESS["name"], "line1": ADDRESS["line1"], "city": ADDRESS["city"],
                   "postalCode": ADDRESS["postal_code"], "country": ADDRESS["country"]}


async def graphql_call(client: Client, headers: dict[str, str], operation: str,
                       variables: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """One GraphQL operation as (REST-like status, body): the data of its only field on
    success, or the first error's problem (``type`` and ``status`` from its extensions)."""
    query = GRAPHQL_CHECKOUT[operation]
    if query.startswith("query"):  # a read goes by GET, as REST's: it is not a write
        response = await client.get("/graphql", headers=headers, params={
            "query": query, "variables": json.dumps(variables)})
    else:
        response = await client.post("/graphql", headers=headers, json={
            "query": query, "variables": variables})
    body = response.json()
    errors = body.get("errors") if isinstance(body, dict) else None
    if response.status_code >= 400 or errors:
        extensions = (errors or [{}])[0].get("extensions") or {}
        status = int(extensions.get("status", response.status_code if
                                    response.status_code >= 400 else 500))
        return status, {"type": str(extensions.get("type", "graphql"))}
    return response.status_code, next(iter(body["data"].values()))


def graphql_checkout(headers: dict[str, str], skus: list[str], seed: int = 11) -> Attempt:
    """The cart flow of ``checkout`` through GraphQL: the same steps, one operation each
    (the shipping quotes are a field of ``cart``); a placed order counts as a 201."""
    rng = random.Random(seed)

    async def attempt(client: Client, n: int) -> tuple[int, dict[str, Any]]:
        status, created = await graphql_call(client, headers, "create",
                                             {"email": f"cart{n}@example.com"})
        if status >= 400:
            return status, created
        cart = {"cart": created["cart"]["id"]}
        held = {**headers, "X-Cart-Token": created["cartToken"]}
        for sku in rng.sample(skus, 3):
            status, body = await graphql_call(client, held, "line", {**cart, "sku": sku})
            if status >= 400:
                return status, body
        steps: list[tuple[str, dict[str, Any]]] = [
            ("address", {**cart, "shipping": GRAPHQL_ADDRESS}), ("quotes", cart),
            ("method", cart),
            ("order", {**cart, "payment": {"gateway": "sandbox", "token": "tok_success"}})]
        for operation, variables in steps:
            status, body = await graphql_call(client, held, operation, variables)
            if status >= 400:
                return status, body
        return 201, body

    return attempt
