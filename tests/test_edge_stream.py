"""An order's live status in a browser: stream tokens and ``Last-Event-ID`` (real server).

Found: the order event stream ignored ``Last-Event-ID`` and needed a Bearer header, which a
browser's ``EventSource`` cannot send. Now a caller allowed to read an order mints a
short-lived token for that order's stream only (``POST /orders/{id}/stream-tokens``), a
page puts it in the URL (``?stream_token=``), and a reconnecting ``EventSource`` that sends
``Last-Event-ID`` gets only what it has not seen. Against ``ordnung serve`` with two
workers: a token minted on one worker is good on the other.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from tests.api_support import api_client, bearer, expect, expect_problem, order_body
from tests.serve_support import ADMIN_KEY, Server, running_server

ADMIN = bearer(ADMIN_KEY)
PROBLEMS = "https://ordnung.dev/problems/"
#: seconds a stream token lives on the test server (short, to see one expire)
TTL = 4


def client(server: Server) -> httpx.Client:
    """No keep-alive: every request may reach either worker."""
    return httpx.Client(base_url=server.base_url, timeout=30.0,
                        limits=httpx.Limits(max_keepalive_connections=0))


def read_stream(server: Server, url: str, headers: dict[str, str] | None = None,
                events: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Every event of the stream at ``url`` (no Authorization header) until it ends:
    ``{"id", "event", "data"}`` each. Appends to ``events`` as they arrive."""
    received = events if events is not None else []
    current: dict[str, Any] = {}
    with client(server) as http, http.stream("GET", url, headers=headers or {}) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if not line:
                if current:
                    received.append(current)
                    current = {}
                continue
            field, _, value = line.partition(":")
            value = value.strip()
            current[field] = json.loads(value) if field == "data" else value
    return received


def problem(response: httpx.Response, status: int, kind: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    assert body["type"] == PROBLEMS + kind, body
    return body


def place(server: Server, headers: dict[str, str], email: str) -> dict[str, Any]:
    with client(server) as http:
        placed = http.post("/orders", json=order_body(("SHIRT-M", 1), email=email),
                           headers=headers)
    assert placed.status_code == 201, placed.text
    order: dict[str, Any] = placed.json()
    return order


def customer(server: Server, email: str) -> tuple[str, dict[str, str]]:
    with client(server) as http:
        made = http.post("/customers", json={"email": email}, headers=ADMIN)
        assert made.status_code == 201, made.text
        token = http.post(f"/customers/{made.json()['id']}/tokens", json={}, headers=ADMIN)
        assert token.status_code == 201, token.text
    return made.json()["id"], bearer(token.json()["secret"])


def mint(server: Server, order_id: str, headers: dict[str, str]) -> dict[str, Any]:
    with client(server) as http:
        minted = http.post(f"/orders/{order_id}/stream-tokens", headers=headers)
    assert minted.status_code == 201, minted.text
    token: dict[str, Any] = minted.json()
    assert token["order_id"] == order_id and token["url"].endswith(token["token"])
    return token


def test_a_page_follows_its_order_with_a_stream_token(database_url: str,
                                                       tmp_path: Path) -> None:
    env = {"ORDNUNG_STREAM_TOKEN_TTL": str(TTL)}
    with running_server(database_url, tmp_path, "--demo", workers=2, env=env) as server:
        _, kim = customer(server, "kim@example.com")
        order = place(server, kim, "kim@example.com")
        oid = order["id"]

        # connect without any Authorization header; events arrive live
        token = mint(server, oid, kim)
        live: list[dict[str, Any]] = []
        reader = threading.Thread(target=read_stream, args=(server, token["url"]),
                                  kwargs={"events": live}, daemon=True)
        reader.start()
        deadline = time.monotonic() + 20
        while not live and time.monotonic() < deadline:
            time.sleep(0.1)
        assert live, "no event arrived"
        assert live[0]["event"] == "order.placed", live
        with client(server) as http:
            assert http.post(f"/orders/{oid}/notes", json={"note": "staff only"},
                             headers=ADMIN).status_code == 200
            assert http.post(f"/orders/{oid}/cancel", json={"reason": "changed my mind"},
                             headers=kim).status_code == 200
        reader.join(timeout=20)
        assert not reader.is_alive(), "the stream did not end at the terminal state"
        kinds = [e["event"] for e in live]
        assert "order.cancelled" in kinds and "order.note" not in kinds, kinds
        assert all(e["data"]["actor"] in ("you", "staff", "system", "storefront", "customer")
                   for e in live), live
        seqs = [int(e["id"]) for e in live]
        assert seqs == sorted(set(seqs)), seqs

        # a reconnecting EventSource sends Last-Event-ID: only what it has not seen
        first = seqs[0]
        resumed = read_stream(server, mint(server, oid, kim)["url"],
                              headers={"Last-Event-ID": str(first)})
        assert [int(e["id"]) for e in resumed] == seqs[1:]
        # all seen of a finished order: 204, which tells an EventSource to stop
        # reconnecting (it would otherwise reconnect every few seconds for ever)
        with client(server) as http:
            done = http.get(mint(server, oid, kim)["url"],
                            headers={"Last-Event-ID": str(seqs[-1])})
            assert done.status_code == 204 and done.content == b"", done
        with client(server) as http:
            problem(http.get(mint(server, oid, kim)["url"],
                             headers={"Last-Event-ID": "yesterday"}), 422, "validation")
        # staff resume the same way with their key
        staff = read_stream(server, f"/orders/{oid}/events",
                            headers={**ADMIN, "Last-Event-ID": str(first)})
        assert "order.note" in [e["event"] for e in staff]
        assert all(int(e["id"]) > first for e in staff)


def test_a_stream_token_opens_one_order_for_minutes_and_nothing_else(
        database_url: str, tmp_path: Path) -> None:
    env = {"ORDNUNG_STREAM_TOKEN_TTL": str(TTL)}
    with running_server(database_url, tmp_path, "--demo", workers=2, env=env) as server:
        _, kim = customer(server, "kim@example.com")
        max_id, max_ = customer(server, "max@example.com")
        mine = place(server, kim, "kim@example.com")
        theirs = place(server, max_, "max@example.com")
        with client(server) as http:
            token = mint(server, mine["id"], kim)["token"]
            # another order: refused
            body = problem(http.get(f"/orders/{theirs['id']}/events",
                                    params={"stream_token": token}), 403, "forbidden")
            assert "another order" in body["detail"]
            # any other route: the token is no key at all
            for method, path in (("GET", f"/orders/{mine['id']}"),
                                 ("GET", f"/orders/{mine['id']}/timeline"),
                                 ("POST", f"/orders/{mine['id']}/cancel"),
                                 ("POST", f"/orders/{mine['id']}/stream-tokens")):
                problem(http.request(method, path, params={"stream_token": token},
                                     json={}), 401, "unauthorized")
            # forged, garbled or for a made-up order: refused
            forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
            for bad in (forged, "st1.nope", "", token.replace(mine["id"], theirs["id"])):
                problem(http.get(f"/orders/{mine['id']}/events",
                                 params={"stream_token": bad}), 401, "unauthorized")
            # not the other customer's order: 404, as for every order of someone else
            problem(http.post(f"/orders/{theirs['id']}/stream-tokens", headers=kim), 404,
                    "not-found")
            # a storefront key reads no order, so it mints no token either
            shop = http.post("/admin/keys", json={"kind": "storefront", "channel": "web"},
                             headers=ADMIN).json()["secret"]
            problem(http.post(f"/orders/{mine['id']}/stream-tokens", headers=bearer(shop)),
                    403, "forbidden")

            # erasing the customer revokes their orders' tokens at once
            erasable = mint(server, theirs["id"], max_)["url"]
            assert http.delete(f"/customers/{max_id}", headers=ADMIN).status_code == 200
            problem(http.get(erasable), 401, "unauthorized")

            # expired after TTL seconds
            expiring = mint(server, mine["id"], ADMIN)["url"]
            time.sleep(TTL + 1.5)
            body = problem(http.get(expiring), 401, "unauthorized")
            assert "expired" in body["detail"]


#: the page's script: follow the stream with EventSource, record every event, and note
#: when the browser gives up reconnecting (readyState CLOSED)
FOLLOW = """url => {
  window.received = [];
  window.gaveUp = false;
  const source = new EventSource(url);
  for (const kind of KINDS) {
    source.addEventListener(kind, e => window.received.push(
      {kind: e.type, id: e.lastEventId, actor: JSON.parse(e.data).actor}));
  }
  source.onerror = () => { if (source.readyState === EventSource.CLOSED) window.gaveUp = true; };
}"""
KINDS = ["order.placed", "payment.created", "payment.authorized", "payment.captured",
         "order.processing", "order.cancelled", "order.note", "payment.voided"]


def test_a_browser_follows_an_order_with_eventsource(database_url: str,
                                                     tmp_path: Path) -> None:
    """Headless Chromium: ``EventSource`` with a stream token (no header it could not
    send), events as they happen, a reconnect after the order finished that resumes
    from ``Last-Event-ID`` (no event twice) and then stops (204)."""
    from tests.browser_support import browser_page

    with running_server(database_url, tmp_path, "--demo", workers=2) as server, \
            browser_page() as (page, _):
        _, kim = customer(server, "kim@example.com")
        order = place(server, kim, "kim@example.com")
        token = mint(server, order["id"], kim)
        page.goto(server.base_url + "/health")  # type: ignore[attr-defined]
        page.evaluate(FOLLOW.replace("KINDS", json.dumps(KINDS)),  # type: ignore[attr-defined]
                      server.base_url + token["url"])
        page.wait_for_function(  # type: ignore[attr-defined]
            "window.received.some(e => e.kind === 'order.placed')", timeout=20_000)
        with client(server) as http:
            assert http.post(f"/orders/{order['id']}/notes", json={"note": "staff only"},
                             headers=ADMIN).status_code == 200
            assert http.post(f"/orders/{order['id']}/cancel", json={},
                             headers=kim).status_code == 200
        # the stream ends at the terminal state; the browser reconnects with
        # Last-Event-ID, gets 204 and stops
        page.wait_for_function("window.gaveUp", timeout=30_000)  # type: ignore[attr-defined]
        received = page.evaluate("window.received")  # type: ignore[attr-defined]
        kinds = [e["kind"] for e in received]
        ids = [int(e["id"]) for e in received]
        assert "order.cancelled" in kinds and "order.note" not in kinds, received
        assert ids == sorted(set(ids)), received  # nothing twice, in order
        assert all(":" not in e["actor"] for e in received), received


async def test_a_guest_follows_the_order_its_cart_became(database_url: str) -> None:
    """A guest's page reads no order, but holds its cart's token: with it, it mints a
    stream token for the order the cart became (in process, on the test's database)."""
    async with api_client(database_url) as api:
        shop = await api.storefront("web")
        open_cart = (await api.new_cart(shop))["id"]
        expect_problem(await api.client.post(f"/carts/{open_cart}/order/stream-tokens",
                                             headers=api.holding(shop, open_cart)),
                       409, "conflict")
        cid = await api.placed_cart(shop)
        url = f"/carts/{cid}/order/stream-tokens"
        # the storefront key alone opens no cart, so no order either
        expect_problem(await api.client.post(url, headers=shop), 404, "not-found")
        token = expect(await api.client.post(url, headers=api.holding(shop, cid)), 201)
        expect(await api.client.post(f"/orders/{token['order_id']}/cancel", json={},
                                     headers=api.admin), 200)
        async with api.client.stream("GET", token["url"]) as response:  # no Authorization
            assert response.status_code == 200
            body = (await response.aread()).decode()
        events = [json.loads(line[5:]) for line in body.splitlines()
                  if line.startswith("data:")]
        kinds = [e["kind"] for e in events]
        assert kinds[0] == "order.placed" and "order.cancelled" in kinds, kinds
        assert [e["actor"] for e in events if e["kind"] == "order.cancelled"] == ["staff"]
