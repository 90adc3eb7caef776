"""Against a real ``ordnung serve`` with two worker processes: revoking a key or erasing a
customer takes effect on every worker before the call returns, and the sign-in
throttle counts the attempts of all workers together.

Every request opens a new connection, so the kernel spreads them over both workers.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.serve_support import ADMIN_KEY, Server, running_server

ADMIN = {"Authorization": f"Bearer {ADMIN_KEY}"}
ROUNDS = 24
#: requests that warm any per-worker cache right before the revocation (a few: a cache
#: entry would still be fresh when the revocation returns)
WARM = 6
PASSWORD = "correct horse battery"


def call(server: Server, method: str, path: str, headers: dict[str, str],
         json: object = None) -> httpx.Response:
    """One request on a fresh connection (no keep-alive: any worker may answer)."""
    with httpx.Client(base_url=server.base_url, timeout=30.0,
                      limits=httpx.Limits(max_keepalive_connections=0)) as client:
        return client.request(method, path, headers=headers, json=json)


def issue(server: Server, body: dict[str, object]) -> dict[str, object]:
    response = call(server, "POST", "/admin/keys", ADMIN, body)
    assert response.status_code == 201, response.text
    issued: dict[str, object] = response.json()
    return issued


def test_revocation_and_erasure_reach_every_worker_before_the_call_returns(
        database_url: str, tmp_path: Path) -> None:
    with running_server(database_url, tmp_path, "--demo", workers=2) as server:
        assert len(server.workers()) == 2
        issued = issue(server, {"kind": "storefront", "channel": "web"})
        shop = {"Authorization": f"Bearer {issued['secret']}"}
        customer = call(server, "POST", "/customers", ADMIN, {"email": "erika@example.com"})
        assert customer.status_code == 201, customer.text
        customer_id = customer.json()["id"]
        token = call(server, "POST", f"/customers/{customer_id}/tokens", ADMIN, {})
        assert token.status_code == 201, token.text
        as_customer = {"Authorization": f"Bearer {token.json()['secret']}"}
        # both keys work, on every worker (and would now sit in any per-worker cache)
        for _ in range(WARM):
            assert call(server, "GET", "/catalogue/products", shop).status_code == 200
            assert call(server, "GET", "/orders", as_customer).status_code == 200

        revoked = call(server, "DELETE", f"/admin/keys/{issued['key']['id']}",  # type: ignore[index]
                       ADMIN)
        assert revoked.status_code == 204
        erased = call(server, "DELETE", f"/customers/{customer_id}", ADMIN)
        assert erased.status_code == 200, erased.text
        shop_answers = [call(server, "GET", "/catalogue/products", shop).status_code
                        for _ in range(ROUNDS)]
        customer_answers = [call(server, "GET", "/orders", as_customer).status_code
                            for _ in range(ROUNDS)]
        orders = [call(server, "POST", "/orders", as_customer, {
            "channel": "web", "lines": [{"sku": "MUG", "quantity": 1}]}).status_code
            for _ in range(4)]
        assert shop_answers == [401] * ROUNDS
        assert customer_answers == [401] * ROUNDS
        assert orders == [401] * 4


def test_the_sign_in_throttle_counts_every_worker_together(
        database_url: str, tmp_path: Path) -> None:
    env = {"ORDNUNG_SIGN_IN_LIMIT_PER_ACCOUNT": "5/10 minutes",
           "ORDNUNG_ACCOUNT_LIMIT_PER_ADDRESS": "1000/minute"}
    with running_server(database_url, tmp_path, "--demo", workers=2, env=env) as server:
        issued = issue(server, {"kind": "storefront", "channel": "web"})
        shop = {"Authorization": f"Bearer {issued['secret']}"}
        registered = call(server, "POST", "/accounts", shop,
                          {"email": "erika@example.com", "password": PASSWORD})
        assert registered.status_code == 201, registered.text
        answers = [call(server, "POST", "/accounts/sessions", shop, {
            "email": "erika@example.com", "password": f"guess number {n}"})
            for n in range(12)]
        statuses = [a.status_code for a in answers]
        # five failures in all, whichever worker took them; then the account is locked
        assert statuses == [401] * 5 + [429] * 7, statuses
        assert all(int(a.headers["Retry-After"]) > 0 for a in answers[5:])
        locked = call(server, "POST", "/accounts/sessions", shop,
                      {"email": "erika@example.com", "password": PASSWORD})
        assert locked.status_code == 429
