"""Customer accounts over the REST API: register, sign in, refresh, sign out, password
reset, e-mail verification, "my orders" and claiming guest orders; sign-in throttling.

A storefront key is the Bearer for everything a visitor does before signing in; the
access token is the Bearer of a signed-in customer. The one-time tokens the engine
hands to ``ordnung_account_notice`` are caught by a small recording plugin here;
tests/test_edge_accounts_email.py sends them through a real SMTP server.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from ordnung.core import hookimpl
from ordnung.core.domain.accounts import AccountNotice
from tests.api_support import (
    Api,
    api_client,
    bearer,
    captured_logs,
    expect,
    expect_problem,
    order_body,
)
from tests.support import builtin_plugins
from tests.test_cli_config_errors import one_line, serve

PASSWORD = "correct horse battery"
NEW_PASSWORD = "staple gun orbit 42"


class Mailbox:
    """Records account notices (the e-mail plugin's stand-in)."""

    def __init__(self) -> None:
        self.notices: list[AccountNotice] = []

    @hookimpl
    async def ordnung_account_notice(self, notice: AccountNotice) -> bool:
        self.notices.append(notice)
        return True

    async def next(self, kind: str, email: str, seen: int = 0) -> AccountNotice:
        """The ``seen``-th notice of ``kind`` to ``email``, waiting for it (background)."""
        for _ in range(200):
            found = [n for n in self.notices if n.kind == kind and n.email == email]
            if len(found) > seen:
                return found[seen]
            await asyncio.sleep(0.02)
        raise AssertionError(f"no {kind} notice to {email}: {self.notices}")

    async def settle(self) -> None:
        await asyncio.sleep(0.2)


@asynccontextmanager
async def accounts_api(database_url: str, **config: Any) -> AsyncIterator[tuple[Api, Mailbox]]:
    mailbox = Mailbox()
    async with api_client(database_url, plugins=[*builtin_plugins(), (mailbox, "mailbox")],
                          **config) as api:
        yield api, mailbox


async def register(api: Api, shop: dict[str, str], email: str = "erika@example.com",
                   password: str = PASSWORD, status: int = 201) -> Any:
    return expect(await api.client.post("/accounts", json={
        "email": email, "password": password, "name": "Erika Mustermann"}, headers=shop),
        status)


async def sign_in(api: Api, shop: dict[str, str], email: str = "erika@example.com",
                  password: str = PASSWORD) -> Any:
    return await api.client.post("/accounts/sessions",
                                 json={"email": email, "password": password}, headers=shop)


async def test_register_sign_in_refresh_and_sign_out(database_url: str) -> None:
    async with accounts_api(database_url, access_token_ttl=600,
                            refresh_token_ttl=7200) as (api, _):
        shop = await api.storefront("web")
        registered = await register(api, shop)
        customer, session = registered["customer"], registered["session"]
        assert customer["email"] == "erika@example.com" and customer["registered"] is True
        assert customer["email_verified"] is False
        assert session["customer_id"] == customer["id"] and session["token_type"] == "Bearer"
        assert session["expires_in"] == 600 and session["refresh_expires_in"] == 7200
        assert PASSWORD not in str(registered)
        me = bearer(session["access_token"])
        assert expect(await api.client.get("/customers/me", headers=me), 200)["id"] == \
            customer["id"]

        # "my orders": the access token orders and lists its own orders, nobody else's
        mine = await api.place_order(me, order_body(("MUG", 1)))
        assert mine["customer_id"] == customer["id"]
        await api.place_order(shop, order_body(("MUG", 1)))  # a guest's
        listed = expect(await api.client.get("/orders", headers=me), 200)
        assert [o["id"] for o in listed["items"]] == [mine["id"]]
        # a session remembers its channel: a new cart needs no channel
        cart = await api.new_cart(me)
        assert cart["channel"] == "web" and cart["customer_id"] == customer["id"]

        # the password is stored as an argon2 hash, nowhere in clear
        rows = await api.engine.db.fetch("SELECT * FROM customer_credentials")
        assert len(rows) == 1 and rows[0]["password_hash"].startswith("$argon2id$")
        assert PASSWORD not in repr(rows)

        # signing in again: a second session, each with its own tokens
        second = expect(await sign_in(api, shop, "  Erika@Example.com "), 201)
        assert second["session_id"] != session["session_id"]
        assert second["access_token"] != session["access_token"]

        # refresh: a new pair; the spent refresh token is refused
        renewed = expect(await api.client.post("/accounts/sessions/refresh", json={
            "refresh_token": second["refresh_token"]}, headers=shop), 200)
        assert renewed["session_id"] == second["session_id"]
        assert renewed["refresh_token"] != second["refresh_token"]
        assert renewed["access_token"] != second["access_token"]
        expect_problem(await api.client.get("/orders", headers=bearer(second["access_token"])),
                       401, "unauthorized")  # the old access token of a rotated session
        expect(await api.client.get("/orders", headers=bearer(renewed["access_token"])), 200)
        # a spent refresh token that comes back means a copy is abroad: the session ends
        expect_problem(await api.client.post("/accounts/sessions/refresh", json={
            "refresh_token": second["refresh_token"]}, headers=shop), 401,
            "invalid-credentials")
        expect_problem(await api.client.get("/orders", headers=bearer(renewed["access_token"])),
                       401, "unauthorized")
        expect_problem(await api.client.post("/accounts/sessions/refresh", json={
            "refresh_token": renewed["refresh_token"]}, headers=shop), 401,
            "invalid-credentials")
        # the first session was not touched
        expect(await api.client.get("/orders", headers=me), 200)

        # sign out: that session's tokens stop at once
        expect(await api.client.delete("/accounts/sessions/current", headers=me), 204)
        expect_problem(await api.client.get("/orders", headers=me), 401, "unauthorized")
        expect_problem(await api.client.post("/accounts/sessions/refresh", json={
            "refresh_token": session["refresh_token"]}, headers=shop), 401,
            "invalid-credentials")
        reasons = {r["revoked_reason"] for r in await api.engine.db.fetch(
            "SELECT revoked_reason FROM customer_sessions")}
        assert reasons == {"signed-out", "refresh-reused"}


async def test_wrong_credentials_look_the_same_whoever_they_belong_to(database_url: str) -> None:
    async with accounts_api(database_url) as (api, _):
        shop = await api.storefront("web")
        await register(api, shop)
        await api.customer("max@example.com", "Max")  # a customer without a password
        wrong_password = expect_problem(await sign_in(api, shop, password="not it at all"),
                                        401, "invalid-credentials")
        for email, password in (("nobody@example.com", PASSWORD),
                                ("max@example.com", PASSWORD)):
            problem = expect_problem(await sign_in(api, shop, email, password), 401,
                                     "invalid-credentials")
            assert problem["detail"] == wrong_password["detail"]
        # an empty e-mail is malformed input, refused like every empty required string
        assert expect_problem(await sign_in(api, shop, "", PASSWORD), 422,
                              "validation")["field"] == "email"
        # not a storefront key's business to be anything else: the account routes need one
        for headers in (api.admin, (await api.customer("kim@example.com", "Kim"))[1]):
            expect_problem(await sign_in(api, headers), 403, "forbidden")
            expect_problem(await api.client.post("/accounts", json={
                "email": "new@example.com", "password": PASSWORD}, headers=headers), 403,
                "forbidden")


async def test_registration_refuses_taken_addresses_and_short_passwords(
        database_url: str) -> None:
    async with accounts_api(database_url, password_min_length=12) as (api, mailbox):
        shop = await api.storefront("web")
        problem = expect_problem(await api.client.post("/accounts", json={
            "email": "kim@example.com", "password": "short pass"}, headers=shop), 422,
            "validation")
        assert problem["field"] == "password" and "12" in problem["detail"]
        await register(api, shop)
        taken = expect_problem(await api.client.post("/accounts", json={
            "email": "ERIKA@example.com", "password": "another long password"}, headers=shop),
            409, "conflict")
        assert taken["field"] == "email"
        # a customer staff created (no password) is claimed by a password reset, which
        # proves the caller reads that address's mail; registering over it is refused
        staff_made, _ = await api.customer("max@example.com", "Max")
        expect_problem(await api.client.post("/accounts", json={
            "email": "max@example.com", "password": "i am max, honestly"}, headers=shop),
            409, "conflict")
        expect(await api.client.post("/accounts/password-reset",
                                     json={"email": "max@example.com"}, headers=shop), 202)
        notice = await mailbox.next("password_reset", "max@example.com")
        expect(await api.client.post("/accounts/password-reset/confirm", json={
            "token": notice.token, "password": "i am max, honestly"}, headers=shop), 204)
        max_session = expect(await sign_in(api, shop, "max@example.com", "i am max, honestly"),
                             201)
        assert max_session["customer_id"] == staff_made["id"]
        customers = expect(await api.client.get("/customers", headers=api.admin), 200)
        assert sorted(c["email"] for c in customers["items"]) == [
            "erika@example.com", "max@example.com"]


async def test_password_reset_answers_the_same_and_ends_every_session(
        database_url: str) -> None:
    async with accounts_api(database_url) as (api, mailbox):
        shop = await api.storefront("web")
        registered = await register(api, shop)
        customer_id = registered["customer"]["id"]
        old_session = bearer(registered["session"]["access_token"])
        other = expect(await sign_in(api, shop), 201)

        known = await api.client.post("/accounts/password-reset",
                                      json={"email": "erika@example.com"}, headers=shop)
        unknown = await api.client.post("/accounts/password-reset",
                                        json={"email": "nobody@example.com"}, headers=shop)
        assert known.status_code == unknown.status_code == 202
        assert known.json() == unknown.json()
        notice = await mailbox.next("password_reset", "erika@example.com")
        await mailbox.settle()
        assert [n.email for n in mailbox.notices if n.kind == "password_reset"] == [
            "erika@example.com"]
        assert notice.customer.id == customer_id and notice.channel == "web"
        assert notice.token.startswith("cat_")

        # a weak password does not spend the token
        expect_problem(await api.client.post("/accounts/password-reset/confirm", json={
            "token": notice.token, "password": "short"}, headers=shop), 422, "validation")
        expect(await api.client.post("/accounts/password-reset/confirm", json={
            "token": notice.token, "password": NEW_PASSWORD}, headers=shop), 204)
        # once only
        expect_problem(await api.client.post("/accounts/password-reset/confirm", json={
            "token": notice.token, "password": "yet another password"}, headers=shop), 401,
            "invalid-credentials")
        # every session ended; the old password is gone, the new one works
        for headers in (old_session, bearer(other["access_token"])):
            expect_problem(await api.client.get("/orders", headers=headers), 401,
                           "unauthorized")
        expect_problem(await api.client.post("/accounts/sessions/refresh", json={
            "refresh_token": other["refresh_token"]}, headers=shop), 401,
            "invalid-credentials")
        expect_problem(await sign_in(api, shop), 401, "invalid-credentials")
        signed_in = expect(await sign_in(api, shop, password=NEW_PASSWORD), 201)
        # the token came to the address, so the address counts as verified
        me = expect(await api.client.get("/customers/me",
                                         headers=bearer(signed_in["access_token"])), 200)
        assert me["email_verified"] is True

        # only the latest link works, and a link expires
        expect(await api.client.post("/accounts/password-reset",
                                     json={"email": "erika@example.com"}, headers=shop), 202)
        first = await mailbox.next("password_reset", "erika@example.com", 1)
        expect(await api.client.post("/accounts/password-reset",
                                     json={"email": "erika@example.com"}, headers=shop), 202)
        second = await mailbox.next("password_reset", "erika@example.com", 2)
        expect_problem(await api.client.post("/accounts/password-reset/confirm", json={
            "token": first.token, "password": "first link password"}, headers=shop), 401,
            "invalid-credentials")
        await api.engine.db.run(
            "UPDATE account_tokens SET expires_at = created_at WHERE used_at IS NULL")
        expect_problem(await api.client.post("/accounts/password-reset/confirm", json={
            "token": second.token, "password": "second link password"}, headers=shop), 401,
            "invalid-credentials")
        expect(await sign_in(api, shop, password=NEW_PASSWORD), 201)


async def test_reset_links_are_rationed_per_address_without_telling(database_url: str) -> None:
    async with accounts_api(database_url) as (api, mailbox):
        shop = await api.storefront("web")
        await register(api, shop)
        answers = [await api.client.post("/accounts/password-reset",
                                         json={"email": "erika@example.com"}, headers=shop)
                   for _ in range(5)]
        assert {a.status_code for a in answers} == {202}
        assert len({a.text for a in answers}) == 1
        await mailbox.next("password_reset", "erika@example.com", 2)
        await mailbox.settle()
        assert len([n for n in mailbox.notices if n.kind == "password_reset"]) == 3


async def test_email_verification_and_claiming_guest_orders(database_url: str) -> None:
    async with accounts_api(database_url) as (api, mailbox):
        shop = await api.storefront("web")
        # guest orders, before the account exists: two with her address, one with another
        before = [await api.place_order(shop, order_body(("MUG", 1),
                                                         email="Erika@Example.com"))
                  for _ in range(2)]
        someone_else = await api.place_order(shop, order_body(("MUG", 1),
                                                              email="max@example.com"))
        registered = await register(api, shop)
        me = bearer(registered["session"]["access_token"])
        customer_id = registered["customer"]["id"]
        assert expect(await api.client.get("/orders", headers=me), 200)["items"] == []

        problem = expect_problem(await api.client.post("/accounts/me/claim-orders", headers=me),
                                 403, "email-not-verified")
        assert "verify" in problem["detail"]
        # registering sent a verification token; asking again replaces it
        first = await mailbox.next("email_verification", "erika@example.com")
        accepted = expect(await api.client.post("/accounts/email-verification", headers=me), 202)
        assert accepted["status"] == "accepted"
        latest = await mailbox.next("email_verification", "erika@example.com", 1)
        expect_problem(await api.client.post("/accounts/email-verification/confirm",
                                             json={"token": first.token}, headers=shop),
                       401, "invalid-credentials")
        expect(await api.client.post("/accounts/email-verification/confirm",
                                     json={"token": latest.token}, headers=shop), 204)
        expect_problem(await api.client.post("/accounts/email-verification/confirm",
                                             json={"token": latest.token}, headers=shop),
                       401, "invalid-credentials")
        assert expect(await api.client.get("/customers/me", headers=me), 200)[
            "email_verified"] is True
        again = expect(await api.client.post("/accounts/email-verification", headers=me), 202)
        assert "already" in again["detail"]

        claimed = expect(await api.client.post("/accounts/me/claim-orders", headers=me), 200)
        assert sorted(claimed["order_ids"]) == sorted(o["id"] for o in before)
        assert claimed["customer_id"] == customer_id
        listed = expect(await api.client.get("/orders", headers=me), 200)
        assert sorted(o["id"] for o in listed["items"]) == sorted(o["id"] for o in before)
        timeline = expect(await api.client.get(f"/orders/{before[0]['id']}/timeline",
                                               headers=api.admin), 200)
        claim_events = [e for e in timeline["items"] if e["kind"] == "order.claimed"]
        assert len(claim_events) == 1 and claim_events[0]["actor"] == f"customer:{customer_id}"
        # nothing twice, and never someone else's
        assert expect(await api.client.post("/accounts/me/claim-orders", headers=me),
                      200)["order_ids"] == []
        assert (await api.order(someone_else["id"]))["customer_id"] is None
        # the claimed orders now count for the customer's loyalty figures
        assert expect(await api.client.get("/customers/me", headers=me), 200)[
            "order_count"] == 2


async def test_access_and_refresh_tokens_expire(database_url: str) -> None:
    async with accounts_api(database_url) as (api, _):
        shop = await api.storefront("web")
        session = (await register(api, shop))["session"]
        me = bearer(session["access_token"])
        expect(await api.client.get("/orders", headers=me), 200)
        await api.edit_credentials("UPDATE customer_sessions SET access_expires_at = "
                                   "created_at WHERE id = {}", session["session_id"])
        expect_problem(await api.client.get("/orders", headers=me), 401, "unauthorized")
        # the refresh token still buys a new access token ...
        renewed = expect(await api.client.post("/accounts/sessions/refresh", json={
            "refresh_token": session["refresh_token"]}, headers=shop), 200)
        expect(await api.client.get("/orders", headers=bearer(renewed["access_token"])), 200)
        # ... until it expires itself
        await api.engine.db.run("UPDATE customer_sessions SET refresh_expires_at = created_at "
                                "WHERE id = {}", session["session_id"])
        expect_problem(await api.client.post("/accounts/sessions/refresh", json={
            "refresh_token": renewed["refresh_token"]}, headers=shop), 401,
            "invalid-credentials")


async def test_an_access_token_lives_as_long_as_the_setting_says(database_url: str) -> None:
    async with accounts_api(database_url, access_token_ttl=1) as (api, _):
        shop = await api.storefront("web")
        session = (await register(api, shop))["session"]
        assert session["expires_in"] == 1
        await asyncio.sleep(1.2)
        expect_problem(await api.client.get("/orders", headers=bearer(session["access_token"])),
                       401, "unauthorized")


async def test_sign_in_is_throttled_per_account_and_per_client_address(
        database_url: str) -> None:
    async with accounts_api(database_url, sign_in_limit_per_account="3/minute",
                            account_limit_per_address="10/minute") as (api, _):
        shop = await api.storefront("web")
        await register(api, shop)  # 1 request from this address
        for _ in range(3):
            expect_problem(await sign_in(api, shop, password="guess guess guess"), 401,
                           "invalid-credentials")
        # the account is locked for the window: even the right password is refused, and
        # the password is not even looked at
        locked = await sign_in(api, shop)
        problem = expect_problem(locked, 429, "rate-limited")
        retry_after = int(locked.headers["Retry-After"])
        assert 1 <= retry_after <= 60 and problem["retry_after"] == retry_after
        # other accounts from this address still get through ...
        for n in range(5):  # requests 6..10 from this address
            expect_problem(await sign_in(api, shop, f"nobody{n}@example.com"), 401,
                           "invalid-credentials")
        # ... until the address has made too many account requests
        flooded = await sign_in(api, shop, "max@example.com")
        expect_problem(flooded, 429, "rate-limited")
        assert int(flooded.headers["Retry-After"]) >= 1
        expect_problem(await api.client.post("/accounts/password-reset", json={
            "email": "erika@example.com"}, headers=shop), 429, "rate-limited")
        # the OpenAPI document says so
        document = expect(await api.client.get("/schema/openapi.json"), 200)
        assert "429" in document["paths"]["/accounts/sessions"]["post"]["responses"]


async def test_a_successful_sign_in_clears_the_failures(database_url: str) -> None:
    async with accounts_api(database_url, sign_in_limit_per_account="3/minute") as (api, _):
        shop = await api.storefront("web")
        await register(api, shop)
        for _ in range(4):
            for _ in range(2):
                expect_problem(await sign_in(api, shop, password="typo typo typo"), 401,
                               "invalid-credentials")
            expect(await sign_in(api, shop), 201)


async def test_passwords_and_tokens_are_never_logged_nor_stored_in_clear(
        database_url: str) -> None:
    async with accounts_api(database_url) as (api, mailbox):
        with captured_logs("DEBUG") as logs:
            shop = await api.storefront("web")
            registered = await register(api, shop)
            session = registered["session"]
            expect_problem(await sign_in(api, shop, password="wrong password!"), 401,
                           "invalid-credentials")
            renewed = expect(await api.client.post("/accounts/sessions/refresh", json={
                "refresh_token": session["refresh_token"]}, headers=shop), 200)
            expect(await api.client.post("/accounts/password-reset",
                                         json={"email": "erika@example.com"}, headers=shop), 202)
            reset = await mailbox.next("password_reset", "erika@example.com")
            verify = await mailbox.next("email_verification", "erika@example.com")
            expect(await api.client.post("/accounts/password-reset/confirm", json={
                "token": reset.token, "password": NEW_PASSWORD}, headers=shop), 204)
        text = logs.getvalue()
        assert "customer registered" in text and "password reset" in text
        secrets = [PASSWORD, NEW_PASSWORD, "wrong password!", session["access_token"],
                   session["refresh_token"], renewed["access_token"], renewed["refresh_token"],
                   reset.token, verify.token]
        stored = ""
        for table in ("customer_credentials", "customer_sessions", "account_tokens"):
            stored += repr(await api.engine.db.fetch(f"SELECT * FROM {table}"))
        for secret in secrets:
            assert secret not in text
            assert secret[-16:] not in text
            assert secret not in stored


@pytest.mark.parametrize("body", [
    {"email": "erika@example.com"},
    {"email": "erika@example.com", "password": PASSWORD, "role": "admin"},
    {"email": 1, "password": PASSWORD},
])
async def test_malformed_account_requests_are_422_and_store_nothing(
        database_url: str, body: dict[str, Any]) -> None:
    async with accounts_api(database_url) as (api, _):
        shop = await api.storefront("web")
        expect_problem(await api.client.post("/accounts", json=body, headers=shop), 422,
                       "validation")
        expect_problem(await api.client.post("/accounts/sessions", json=body, headers=shop),
                       422, "validation")
        assert expect(await api.client.get("/customers", headers=api.admin), 200)["items"] == []
        assert await api.engine.db.fetch("SELECT * FROM customer_credentials") == []


@pytest.mark.parametrize(("variable", "value", "expected"), [
    ("ORDNUNG_SIGN_IN_LIMIT_PER_ACCOUNT", "lots", "a rate such as"),
    ("ORDNUNG_ACCOUNT_LIMIT_PER_ADDRESS", "30 a minute", "a rate such as"),
    ("ORDNUNG_ACCESS_TOKEN_TTL", "15m", "a whole number"),
    ("ORDNUNG_REFRESH_TOKEN_TTL", "0", ">= 1"),
])
def test_a_mistaken_account_setting_is_one_line_naming_it(
        tmp_path: Path, variable: str, value: str, expected: str) -> None:
    result = serve(tmp_path, f"sqlite:///{tmp_path / 'shop.db'}", **{variable: value})
    line = one_line(result)
    assert variable in line and expected in line, line
    assert not (tmp_path / "shop.db").exists()  # refused before anything was created
