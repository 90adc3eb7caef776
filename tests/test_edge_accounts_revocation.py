"""Revocation is immediate: an erased customer's tokens, a revoked key, a signed-out
session stop working before the call that ended them returns; nothing is cached.

The in-process tests here show the single-worker case; tests/test_edge_accounts_server.py
does the same against a real server with two worker processes.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from tests.api_support import (
    Api,
    api_client,
    api_fixture,  # noqa: F401  (the ``api`` fixture)
    bearer,
    expect,
    expect_problem,
    order_body,
)

PASSWORD = "correct horse battery"


async def sign_up(api: Api, email: str, shop: dict[str, str]) -> dict[str, Any]:
    registered: dict[str, Any] = expect(await api.client.post(
        "/accounts", json={"email": email, "password": PASSWORD, "name": "Erika"},
        headers=shop), 201)
    return registered


async def test_an_erased_customers_tokens_can_do_nothing_at_once(api: Api) -> None:
    shop = await api.storefront("web")
    registered = await sign_up(api, "erika@example.com", shop)
    customer_id = registered["customer"]["id"]
    session = bearer(registered["session"]["access_token"])
    refresh = registered["session"]["refresh_token"]
    staff_token = await api.customer_token(customer_id)
    for headers in (session, staff_token):  # both work, and are warm in any cache there is
        expect(await api.client.get("/orders", headers=headers), 200)
        expect(await api.client.get("/customers/me", headers=headers), 200)
    placed = await api.place_order(session, order_body(("MUG", 1)))
    cart = await api.new_cart(staff_token, {"channel": "web"})

    erased = expect(await api.client.delete(f"/customers/{customer_id}", headers=api.admin),
                    200)
    assert erased["erased"] is True

    attempts: list[tuple[str, str, Any]] = [
        ("GET", "/orders", None), ("POST", "/orders", order_body(("MUG", 1))),
        ("GET", f"/orders/{placed['id']}", None), ("GET", "/customers/me", None),
        ("GET", f"/carts/{cart['id']}", None), ("POST", "/carts", {"channel": "web"}),
        ("POST", f"/carts/{cart['id']}/lines", {"sku": "MUG"}),
        ("POST", "/accounts/me/claim-orders", None), ("DELETE", "/accounts/sessions", None),
    ]
    for headers in (session, staff_token):
        for method, path, body in attempts:
            response = await api.client.request(method, path, json=body, headers=headers)
            expect_problem(response, 401, "unauthorized")
    expect_problem(await api.client.post("/accounts/sessions/refresh",
                                         json={"refresh_token": refresh}, headers=shop),
                   401, "invalid-credentials")
    expect_problem(await api.client.post("/accounts/sessions", json={
        "email": "erika@example.com", "password": PASSWORD}, headers=shop), 401,
        "invalid-credentials")
    assert await api.order_count() == 1
    # every token was revoked in the erasure's transaction, not merely ignored
    assert all(r["revoked_at"] is not None for r in await api.engine.db.fetch(
        "SELECT revoked_at FROM api_keys WHERE customer_id = {}", customer_id))
    sessions = await api.engine.db.fetch(
        "SELECT revoked_reason FROM customer_sessions WHERE customer_id = {}", customer_id)
    assert sessions and all(r["revoked_reason"] == "erased" for r in sessions)
    # and no new door opens: no token for the erased customer, no order in their name
    expect_problem(await api.client.post(f"/customers/{customer_id}/tokens", json={},
                                         headers=api.admin), 404, "not-found")
    expect_problem(await api.post_order(api.admin, order_body(("MUG", 1),
                                                               customer_id=customer_id)),
                   404, "not-found")
    assert await api.order_count() == 1


async def test_a_revoked_key_and_a_signed_out_session_answer_401_at_once(api: Api) -> None:
    issued = await api.issue_key("storefront", channel="web")
    shop = bearer(issued["secret"])
    for _ in range(3):
        expect(await api.client.get("/catalogue/products", headers=shop), 200)
    await api.revoke(issued["key"]["id"])
    expect_problem(await api.client.get("/catalogue/products", headers=shop), 401,
                   "unauthorized")

    shop = await api.storefront("web")
    registered = await sign_up(api, "kim@example.com", shop)
    first = bearer(registered["session"]["access_token"])
    second = expect(await api.client.post("/accounts/sessions", json={
        "email": "kim@example.com", "password": PASSWORD}, headers=shop), 201)
    other_device = bearer(second["access_token"])
    expect(await api.client.get("/orders", headers=first), 200)
    expect(await api.client.delete("/accounts/sessions/current", headers=first), 204)
    expect_problem(await api.client.get("/orders", headers=first), 401, "unauthorized")
    expect_problem(await api.client.post("/accounts/sessions/refresh", json={
        "refresh_token": registered["session"]["refresh_token"]}, headers=shop), 401,
        "invalid-credentials")
    expect(await api.client.get("/orders", headers=other_device), 200)  # one device only
    ended = expect(await api.client.delete("/accounts/sessions", headers=other_device), 200)
    assert ended == {"sessions_ended": 1}
    expect_problem(await api.client.get("/orders", headers=other_device), 401, "unauthorized")
    expect_problem(await api.client.post("/accounts/sessions/refresh", json={
        "refresh_token": second["refresh_token"]}, headers=shop), 401, "invalid-credentials")


async def test_customer_tokens_issued_by_staff_expire(database_url: str) -> None:
    async with api_client(database_url, customer_token_ttl=3600) as api:
        customer, token = await api.customer()
        issued = expect(await api.client.get("/admin/keys", headers=api.admin), 200)
        key = next(k for k in issued["items"] if k["customer_id"] == customer["id"])
        lifetime = datetime.fromisoformat(key["expires_at"]) - datetime.fromisoformat(
            key["created_at"])
        assert lifetime == timedelta(seconds=3600)
        expect(await api.client.get("/orders", headers=token), 200)
        await expire(api, key["id"])
        expect_problem(await api.client.get("/orders", headers=token), 401, "unauthorized")
        # a token issued before tokens had an expiry expires by its age
        _, legacy = await api.customer("max@example.com", "Max")
        rows = await api.engine.db.fetch(
            "SELECT id, created_at FROM api_keys WHERE customer_id IS NOT NULL")
        legacy_row = max(rows, key=lambda r: r["created_at"])
        await api.edit_credentials("UPDATE api_keys SET expires_at = NULL WHERE id = {}",
                                   legacy_row["id"])
        expect(await api.client.get("/orders", headers=legacy), 200)
        await api.edit_credentials("UPDATE api_keys SET created_at = {} WHERE id = {}",
                                   legacy_row["created_at"].replace(
                                       year=legacy_row["created_at"].year - 1),
                                   legacy_row["id"])
        expect_problem(await api.client.get("/orders", headers=legacy), 401, "unauthorized")
        # admin and storefront keys do not expire
        listed = expect(await api.client.get("/admin/keys", headers=api.admin), 200)
        assert all(k["expires_at"] is None for k in listed["items"] if k["kind"] != "customer")


async def expire(api: Api, key_id: str) -> None:
    """Move a key's expiry into the past (what a clock would do in a day)."""
    await api.edit_credentials("UPDATE api_keys SET expires_at = created_at WHERE id = {}",
                               key_id)
