"""The account e-mails over a real SMTP exchange: the verification link after
registering and the password-reset link, each carrying a token that works once.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from ordnung.plugins.notifications.email import EmailNotifications
from tests.api_support import Api, api_client, bearer, captured_logs, expect, expect_problem
from tests.support import builtin_plugins
from tests.test_plugin_notifications import SHOP, Mail, SmtpServer, email_settings

RESET_URL = "https://shirts.example/account/new-password?token={token}"
VERIFY_URL = "https://shirts.example/account/verify?token={token}"
PASSWORD = "correct horse battery"


@pytest.fixture(name="smtp")
def smtp_fixture() -> Iterator[SmtpServer]:
    """A real SMTP server (aiosmtpd) on a local port, keeping what it accepted."""
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@asynccontextmanager
async def mailing_api(database_url: str, server: SmtpServer,
                      **settings: Any) -> AsyncIterator[Api]:
    plugin = (EmailNotifications, "email", email_settings(
        server, password_reset_url=RESET_URL, verification_url=VERIFY_URL) | settings)
    async with api_client(database_url, plugins=[*builtin_plugins(), plugin]) as api:
        yield api


async def mail_to(server: SmtpServer, address: str, subject_part: str,
                  count: int = 1) -> list[Mail]:
    """Wait until ``count`` mails to ``address`` with ``subject_part`` arrived."""
    for _ in range(250):
        found = [m for m in server.mails
                 if address in m.rcpt_tos and subject_part in m.subject]
        if len(found) >= count:
            return found
        await asyncio.sleep(0.02)
    raise AssertionError(f"no {subject_part!r} mail to {address}: "
                         f"{[(m.rcpt_tos, m.subject) for m in server.mails]}")


def token_in(mail: Mail, url: str) -> str:
    prefix = re.escape(url.split("{token}")[0])
    found = re.search(prefix + r"(cat_[A-Za-z0-9_-]+)", mail.text)
    assert found, mail.text
    assert found.group(1) in mail.html  # the HTML part links to the same page
    return found.group(1)


async def test_the_verification_and_reset_links_arrive_by_smtp_and_work_once(
        database_url: str, smtp: SmtpServer) -> None:
    async with mailing_api(database_url, smtp) as api:
        shop = await api.storefront("web")
        registered = expect(await api.client.post("/accounts", json={
            "email": "erika@example.com", "password": PASSWORD, "name": "Erika Mustermann"},
            headers=shop), 201)
        me = bearer(registered["session"]["access_token"])

        [welcome] = await mail_to(smtp, "erika@example.com", "confirm your e-mail address")
        assert welcome.subject == f"{SHOP}: confirm your e-mail address"
        assert welcome.mail_from == "orders@shirts.example"
        assert "Hello Erika Mustermann," in welcome.text
        assert "Valid until" in welcome.text
        token = token_in(welcome, VERIFY_URL)
        expect(await api.client.post("/accounts/email-verification/confirm",
                                     json={"token": token}, headers=shop), 204)
        assert expect(await api.client.get("/customers/me", headers=me), 200)[
            "email_verified"] is True

        # a reset for an unknown address sends nothing; for hers, one link
        for email in ("nobody@example.com", "erika@example.com"):
            expect(await api.client.post("/accounts/password-reset", json={"email": email},
                                         headers=shop), 202)
        [reset] = await mail_to(smtp, "erika@example.com", "choose a new password")
        await asyncio.sleep(0.2)
        assert not [m for m in smtp.mails if "nobody@example.com" in m.rcpt_tos]
        token = token_in(reset, RESET_URL)
        assert "ignore this e-mail" in reset.text
        expect(await api.client.post("/accounts/password-reset/confirm", json={
            "token": token, "password": "a brand new password"}, headers=shop), 204)
        expect_problem(await api.client.post("/accounts/password-reset/confirm", json={
            "token": token, "password": "and yet another one"}, headers=shop), 401,
            "invalid-credentials")
        expect(await api.client.post("/accounts/sessions", json={
            "email": "erika@example.com", "password": "a brand new password"},
            headers=shop), 201)
        assert len(smtp.mails) == 2  # no order e-mail, no copy


async def test_without_a_link_the_mail_carries_the_token_itself(
        database_url: str, smtp: SmtpServer) -> None:
    async with mailing_api(database_url, smtp, password_reset_url="",
                           verification_url="") as api:
        shop = await api.storefront("web")
        expect(await api.client.post("/accounts", json={
            "email": "kim@example.com", "password": PASSWORD}, headers=shop), 201)
        [mail] = await mail_to(smtp, "kim@example.com", "confirm your e-mail address")
        assert "Hello," in mail.text
        code = re.search(r"Your code\s+(cat_[A-Za-z0-9_-]+)", mail.text)
        assert code, mail.text
        expect(await api.client.post("/accounts/email-verification/confirm",
                                     json={"token": code.group(1)}, headers=shop), 204)


async def test_a_mail_server_that_is_down_changes_nothing_the_client_sees(
        database_url: str, smtp: SmtpServer) -> None:
    smtp.stop()
    async with mailing_api(database_url, smtp) as api:
        shop = await api.storefront("web")
        with captured_logs("DEBUG") as logs:
            expect(await api.client.post("/accounts", json={
                "email": "kim@example.com", "password": PASSWORD}, headers=shop), 201)
            answer = expect(await api.client.post(
                "/accounts/password-reset", json={"email": "kim@example.com"},
                headers=shop), 202)
            for _ in range(250):
                if logs.getvalue().count("account notice not delivered") >= 2:
                    break
                await asyncio.sleep(0.02)
        unknown = expect(await api.client.post("/accounts/password-reset", json={
            "email": "nobody@example.com"}, headers=shop), 202)
        assert answer == unknown
        text = logs.getvalue()
        assert text.count("account notice not delivered") == 2, text
        assert "cat_" not in text  # the token never reaches a log line
        # once the server is back, asking again delivers
        smtp.start()
        expect(await api.client.post("/accounts/password-reset", json={
            "email": "kim@example.com"}, headers=shop), 202)
        await mail_to(smtp, "kim@example.com", "choose a new password")
