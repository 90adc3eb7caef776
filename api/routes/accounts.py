"""Customer accounts over the REST API: register, sign in, refresh, sign out, password
reset, e-mail verification and claiming guest orders.

A storefront calls the routes that act for someone not signed in (register, sign in,
refresh, password reset, the e-mailed links) with its storefront key; the ones of a
signed-in customer with that customer's access token. "My orders" is ``GET /orders``
with the access token.
"""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, Response
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import JSONBody

from ordnung.api.auth import signed_in_customer, storefront_key
from ordnung.api.client_ip import FORWARDED_FOR, connection_ip, networks
from ordnung.api.problems import ACCOUNT_401, MEDIA_TYPE, Problem, problems
from ordnung.api.routes.common import LOCATION, caller, created, engine_of
from ordnung.api.routes.handlers import delete, post
from ordnung.api.schemas import (
    Accepted,
    NewPasswordIn,
    PasswordResetIn,
    RefreshIn,
    Registered,
    RegisterIn,
    SignedOut,
    SignInIn,
    VerifyEmailIn,
)
from ordnung.core.domain.accounts import ClaimedOrders, SessionTokens
from ordnung.core.errors import Forbidden

#: one answer whether or not the address has an account
RESET_ACCEPTED = "if the address belongs to an account, a link to choose a new password " \
                 "is on its way"


def client_address(request: Request[Any, Any, Any]) -> str | None:
    """The address the per-address throttle counts: behind the configured trusted
    proxies, the one they forwarded for; otherwise the connection's own."""
    peer = request.client.host if request.client is not None else None
    forwarded = [v.decode("latin-1") for k, v in request.scope["headers"]
                 if k.lower() == FORWARDED_FOR]
    proxies = networks(tuple(engine_of(request).config.trusted_proxies))
    return connection_ip(peer, forwarded, proxies) or peer


def _denied(*statuses: int) -> dict[int, ResponseSpec]:
    """``problems(...)`` with the account routes' own 401 wording."""
    return {**problems(*statuses), 401: ResponseSpec(
        data_container=Problem, media_type=MEDIA_TYPE, description=ACCOUNT_401,
        generate_examples=False)}


class AccountController(Controller):
    path = "/accounts"
    tags = ["accounts"]

    @post("/", guards=[storefront_key], status_code=201, responses=problems(409, 429),
          response_headers=LOCATION)
    async def register(self, request: Request[Any, Any, Any],
                       data: JSONBody[RegisterIn]) -> Response[Registered]:
        """Create a customer account with a password; it is signed in at once and a
        verification e-mail goes out. 409 if the address already belongs to a customer."""
        principal = caller(request)
        customer, session = await engine_of(request).accounts.register(
            email=data.email, password=data.password, name=data.name,
            channel=principal.channel, client_address=client_address(request))
        return created(Registered(customer=customer, session=session),
                       f"/customers/{customer.id}")

    @post("/sessions", guards=[storefront_key], status_code=201, responses=_denied(429),
          response_headers=LOCATION)
    async def sign_in(self, request: Request[Any, Any, Any],
                      data: JSONBody[SignInIn]) -> Response[SessionTokens]:
        """Sign in with e-mail and password: an access token and a refresh token. The
        session's ``Location`` is ``/accounts/sessions/current`` (with its access token)."""
        session = await engine_of(request).accounts.sign_in(
            email=data.email, password=data.password, channel=caller(request).channel,
            client_address=client_address(request))
        return created(session, "/accounts/sessions/current")

    @post("/sessions/refresh", guards=[storefront_key], status_code=200,
          responses=_denied())
    async def refresh(self, request: Request[Any, Any, Any],
                      data: JSONBody[RefreshIn]) -> SessionTokens:
        """Spend a refresh token for a new access token and a new refresh token."""
        return await engine_of(request).accounts.refresh(data.refresh_token)

    @delete("/sessions/current", guards=[signed_in_customer], status_code=204)
    async def sign_out(self, request: Request[Any, Any, Any]) -> None:
        """Sign out: this session's access and refresh tokens stop working at once."""
        principal = caller(request)
        if not principal.session:
            raise Forbidden("this customer token was issued by staff, not by signing in; "
                            "staff revoke it")
        await engine_of(request).accounts.sign_out(principal.key_id)

    @delete("/sessions", guards=[signed_in_customer], status_code=200)
    async def sign_out_everywhere(self, request: Request[Any, Any, Any]) -> SignedOut:
        """Sign out on every device: every session of the customer ends at once."""
        ended = await engine_of(request).accounts.sign_out_everywhere(
            caller(request).customer_id or "")
        return SignedOut(sessions_ended=ended)

    @post("/password-reset", guards=[storefront_key], status_code=202,
          responses=problems(429))
    async def request_password_reset(self, request: Request[Any, Any, Any],
                                     data: JSONBody[PasswordResetIn]) -> Accepted:
        """E-mail a one-time link to choose a new password. The answer is the same whether
        or not the address has an account."""
        await engine_of(request).accounts.request_password_reset(
            data.email, channel=caller(request).channel,
            client_address=client_address(request))
        return Accepted(detail=RESET_ACCEPTED)

    @post("/password-reset/confirm", guards=[storefront_key], status_code=204,
          responses=_denied())
    async def reset_password(self, request: Request[Any, Any, Any],
                             data: JSONBody[NewPasswordIn]) -> None:
        """Choose a new password with the e-mailed token (once, before it expires); every
        session of the account ends."""
        await engine_of(request).accounts.reset_password(data.token, data.password)

    @post("/email-verification", guards=[signed_in_customer], status_code=202)
    async def request_verification(self, request: Request[Any, Any, Any]) -> Accepted:
        """E-mail the signed-in customer a link that verifies their address."""
        principal = caller(request)
        sent = await engine_of(request).accounts.request_verification(
            principal.customer_id or "", channel=principal.channel)
        return Accepted(detail="a verification link is on its way" if sent
                        else "the address is verified already")

    @post("/email-verification/confirm", guards=[storefront_key], status_code=204,
          responses=_denied())
    async def verify_email(self, request: Request[Any, Any, Any],
                           data: JSONBody[VerifyEmailIn]) -> None:
        """Verify the address with the e-mailed token (once, before it expires)."""
        await engine_of(request).accounts.verify_email(data.token)

    @post("/me/claim-orders", guards=[signed_in_customer], status_code=200,
          responses=problems(403))
    async def claim_orders(self, request: Request[Any, Any, Any]) -> ClaimedOrders:
        """Attach the guest orders placed with the customer's verified e-mail address to
        the account (403 email-not-verified before the address is verified)."""
        principal = caller(request)
        return await engine_of(request).accounts.claim_orders(
            principal.customer_id or "", actor=principal.actor)
