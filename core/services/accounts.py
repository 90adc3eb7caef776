"""Customer accounts: registration, sign-in, sessions, password reset, e-mail verification
and claiming guest orders.

Secrets: passwords are hashed with argon2 (argon2-cffi's defaults, RFC 9106), in a
worker thread so that hashing never stalls the event loop. Access, refresh and one-time
tokens are random (192 bits) and stored as SHA-256 hashes.

Throttling: sign-in is limited per account (failed attempts) and per client address
(every account request) with the ``limits`` library; its counters live in the database
so that every worker process and machine counts together. A throttled call raises
``RateLimited`` with the seconds until the next attempt may pass.

One-time tokens (password reset, e-mail verification) are handed to the
``ordnung_account_notice`` hook in the background, after the request has answered: a
password-reset request takes the same time and gives the same answer whether or not
the address has an account.
"""

from __future__ import annotations

import asyncio
import math
import secrets
from datetime import datetime, timedelta

import structlog
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from limits import RateLimitItem, parse
from limits.aio.strategies import FixedWindowRateLimiter

from ordnung.core.config import EngineConfig
from ordnung.core.domain.accounts import AccountNotice, ClaimedOrders, NoticeKind, SessionTokens
from ordnung.core.domain.common import new_id, utcnow
from ordnung.core.domain.customers import Customer
from ordnung.core.errors import (
    EmailNotVerified,
    InvalidCredentials,
    InvalidInput,
    NotFound,
    RateLimited,
)
from ordnung.core.persistence.rate_limits import DatabaseStorage
from ordnung.core.runtime import OrderChange, Runtime, bound
from ordnung.core.services.access import SESSION_PREFIX, token_hash
from ordnung.core.services.customers import CustomerService

log = structlog.get_logger("ordnung.accounts")

REFRESH_PREFIX = "cr_"
ACCOUNT_TOKEN_PREFIX = "cat_"
#: longest password accepted (argon2 takes any length; this bounds the work per request)
MAX_PASSWORD = 1024
#: how long the engine waits for notices still being handed over when it stops
DRAIN_SECONDS = 10.0
#: password-reset e-mails per address and window, whatever the client address: more
#: requests are answered as usual but send nothing (no mail bombing, nothing revealed)
RESET_MAILS = "3/hour"


def _secret(prefix: str) -> str:
    return f"{prefix}{secrets.token_urlsafe(24)}"


class AccountService:
    def __init__(self, rt: Runtime, customers: CustomerService, config: EngineConfig) -> None:
        self.rt = rt
        self.customers = customers
        self.config = config
        self.hasher = PasswordHasher()
        self.limiter = FixedWindowRateLimiter(DatabaseStorage(rt.db))
        self.per_account: RateLimitItem = parse(config.sign_in_limit_per_account)
        self.per_address: RateLimitItem = parse(config.account_limit_per_address)
        self.reset_mails: RateLimitItem = parse(RESET_MAILS)
        self._dummy_hash: str | None = None
        self._notices: set[asyncio.Task[None]] = set()

    # -- registration and sign-in ---------------------------------------------------------
    async def register(self, *, email: str, password: str, name: str = "",
                       channel: str | None = None,
                       client_address: str | None = None) -> tuple[Customer, SessionTokens]:
        """A new customer with a password, signed in at once; a verification e-mail is
        sent in the background. An address that already belongs to a customer (with or
        without a password) answers ``Conflict``: claiming it takes a password reset,
        which proves that the caller receives that address's mail."""
        await self._throttle_address(client_address)
        self._check_password(password)
        password_hash = await asyncio.to_thread(self.hasher.hash, password)
        async def unit() -> tuple[Customer, SessionTokens]:
            await self.rt.accounts.lock_address(email.strip().lower())
            customer = await self.customers.create(email=email, name=name, registered=True)
            await self.rt.accounts.set_password(customer.id, password_hash)
            return customer, await self._open_session(customer.id, channel)

        customer, tokens = await self.rt.transactionally(unit)
        log.info("customer registered", customer_id=customer.id)
        await self._send_token(customer, "email_verification", channel)
        return customer, tokens

    async def sign_in(self, *, email: str, password: str, channel: str | None = None,
                      client_address: str | None = None) -> SessionTokens:
        """Tokens for a customer whose password matches; ``InvalidCredentials`` otherwise
        (the same for an unknown address, a wrong password or an erased customer)."""
        await self._throttle_address(client_address)
        account = email.strip().lower()
        if not await self.limiter.test(self.per_account, "sign-in", account):
            raise await self._limited(self.per_account, "too many failed sign-ins for this "
                                      "account", "sign-in", account)
        customer = await self.customers.by_email(account) if account else None
        stored = await self.rt.accounts.password_hash(customer.id) if customer else None
        if customer is None or stored is None or not await self._verify(stored, password):
            if stored is None:
                await self._verify(await self._dummy(), password)  # the same time either way
            await self.limiter.hit(self.per_account, "sign-in", account)
            raise InvalidCredentials("the e-mail address or the password is wrong")
        await self.limiter.clear(self.per_account, "sign-in", account)
        if self.hasher.check_needs_rehash(stored):
            await self.rt.accounts.set_password(
                customer.id, await asyncio.to_thread(self.hasher.hash, password))
        tokens = await self._open_session(customer.id, channel)
        log.info("customer signed in", customer_id=customer.id, session_id=tokens.session_id)
        return tokens

    async def refresh(self, refresh_token: str) -> SessionTokens:
        """New tokens for a live refresh token, which is spent by it. A spent refresh token
        that comes back means a copy is in other hands: the session ends."""
        now = utcnow()
        access, refresh = _secret(SESSION_PREFIX), _secret(REFRESH_PREFIX)
        access_expires, refresh_expires = self._terms(now)
        row = await self.rt.accounts.rotate(
            refresh_hash=token_hash(refresh_token), now=now, access_hash=token_hash(access),
            access_expires_at=access_expires, new_refresh_hash=token_hash(refresh),
            refresh_expires_at=refresh_expires)
        if row is None:
            reused = await self.rt.accounts.revoke_reused(token_hash(refresh_token))
            if reused is not None:
                log.warning("a spent refresh token was used again; session ended",
                            session_id=reused)
            raise InvalidCredentials("the refresh token is unknown, expired, spent or revoked")
        return self._tokens(row["customer_id"], row["id"], access, access_expires, refresh,
                            refresh_expires, now)

    async def sign_out(self, session_id: str) -> None:
        """End one session: its access and refresh tokens stop working at once."""
        await self.rt.accounts.revoke_session(session_id, "signed-out")

    async def sign_out_everywhere(self, customer_id: str) -> int:
        """End every session of the customer; how many there were."""
        return await self.rt.accounts.revoke_sessions(customer_id, "signed-out")

    # -- password reset -------------------------------------------------------------------
    async def request_password_reset(self, email: str, *, channel: str | None = None,
                                     client_address: str | None = None) -> None:
        """Send a one-time reset token to ``email`` if it belongs to a customer. Answers
        the same (nothing) either way; the e-mail goes out in the background."""
        await self._throttle_address(client_address)
        account = email.strip().lower()
        customer = await self.customers.by_email(account) if account else None
        if customer is None:
            return
        if not await self.limiter.hit(self.reset_mails, "reset-mail", account):
            log.info("password reset mail withheld: too many for this account",
                     customer_id=customer.id)
            return
        await self._send_token(customer, "password_reset", channel)

    async def reset_password(self, token: str, password: str) -> None:
        """Set a new password with a reset token (once, before it expires). Every session
        of the customer ends; the address counts as verified (the token came from it)."""
        self._check_password(password)
        password_hash = await asyncio.to_thread(self.hasher.hash, password)
        async def unit() -> Customer:
            customer = await self._spend(token, "password_reset")
            await self.rt.accounts.set_password(customer.id, password_hash)
            await self.rt.accounts.revoke_sessions(customer.id, "password-reset")
            if not customer.email_verified:
                customer.email_verified = True
                await self.rt.customers.save(customer)
            return customer

        customer = await self.rt.transactionally(unit)
        log.info("password reset", customer_id=customer.id)

    # -- e-mail verification ----------------------------------------------------------------
    async def request_verification(self, customer_id: str, *,
                                   channel: str | None = None) -> bool:
        """Send a verification token to the customer's address; False if already verified."""
        customer = await self.customers.active(customer_id)
        if customer.email_verified:
            return False
        await self._send_token(customer, "email_verification", channel)
        return True

    async def verify_email(self, token: str) -> Customer:
        async def unit() -> Customer:
            customer = await self._spend(token, "email_verification")
            customer.email_verified = True
            await self.rt.customers.save(customer)
            return customer

        customer = await self.rt.transactionally(unit)
        log.info("e-mail verified", customer_id=customer.id)
        return customer

    # -- guest orders -----------------------------------------------------------------------
    async def claim_orders(self, customer_id: str, *, actor: str = "system") -> ClaimedOrders:
        """Attach the guest orders placed with the customer's verified address to the
        account; each order's timeline records it. Needs a verified address."""
        customer = await self.customers.active(customer_id)
        if not customer.email_verified:
            raise EmailNotVerified("verify the e-mail address before claiming orders placed "
                                   "with it", customer_id=customer_id)
        claimed: list[str] = []
        for order_id in await self.rt.orders.guest_ids_for_email(customer.email):
            async def attach(change: OrderChange) -> bool:
                order = change.order
                if order.customer_id is not None or order.email != customer.email:
                    return False  # claimed meanwhile, or the address was changed or erased
                order.customer_id = customer.id
                change.emit("order.claimed", entity_id=customer.id,
                            data={"customer_id": customer.id})
                return True

            with bound(customer_id=customer.id):
                done, _ = await self.rt.change_order(order_id, actor, attach)
            if done:
                claimed.append(order_id)
        log.info("guest orders claimed", customer_id=customer.id, orders=len(claimed))
        return ClaimedOrders(customer_id=customer.id, order_ids=claimed)

    # -- notices ----------------------------------------------------------------------------
    async def drain(self) -> None:
        """Wait (at most ``DRAIN_SECONDS``) for notices still being handed to plugins."""
        pending = [t for t in self._notices if not t.done()]
        if pending:
            await asyncio.wait(pending, timeout=DRAIN_SECONDS)
        for task in pending:
            task.cancel()

    async def _send_token(self, customer: Customer, kind: NoticeKind,
                          channel: str | None) -> None:
        ttl = (self.config.password_reset_ttl if kind == "password_reset"
               else self.config.email_verification_ttl)
        token = _secret(ACCOUNT_TOKEN_PREFIX)
        expires_at = utcnow() + timedelta(seconds=ttl)
        await self.rt.accounts.add_token(
            token_id=new_id("atk"), token_hash=token_hash(token), purpose=kind,
            customer_id=customer.id, email=customer.email, expires_at=expires_at)
        notice = AccountNotice(kind=kind, customer=customer, email=customer.email,
                               token=token, expires_at=expires_at, channel=channel)
        task = asyncio.get_running_loop().create_task(self._deliver(notice))
        self._notices.add(task)
        task.add_done_callback(self._notices.discard)

    async def _deliver(self, notice: AccountNotice) -> None:
        """Hand a notice to the plugins. Never logs the token; a failure is logged and the
        customer asks again (a new token replaces the old one)."""
        try:
            answers = await self.rt.plugins.call("ordnung_account_notice", notice=notice)
        except Exception as exc:
            log.warning("account notice not delivered", kind=notice.kind,
                        customer_id=notice.customer.id, error=type(exc).__name__)
            return
        if not self.rt.plugins.has_impl("ordnung_account_notice"):
            log.warning("no plugin delivers account notices (ordnung_account_notice)",
                        kind=notice.kind, customer_id=notice.customer.id)
        elif answers:
            log.info("account notice handed over", kind=notice.kind,
                     customer_id=notice.customer.id)

    # -- helpers ----------------------------------------------------------------------------
    async def _spend(self, token: str, purpose: NoticeKind) -> Customer:
        row = await self.rt.accounts.spend_token(token_hash(token), purpose, utcnow())
        if row is None:
            raise InvalidCredentials("the token is unknown, expired or already used")
        try:
            customer = await self.rt.customers.get(row["customer_id"])  # as stored
        except NotFound:
            customer = None
        if customer is None or customer.erased:
            raise InvalidCredentials("the token is unknown, expired or already used")
        if customer.email != row["email"]:
            raise InvalidCredentials("the token was sent to another e-mail address")
        return customer

    def _check_password(self, password: str) -> None:
        minimum = self.config.password_min_length
        if len(password) < minimum:
            raise InvalidInput(f"the password needs at least {minimum} characters",
                               field="password")
        if len(password) > MAX_PASSWORD:
            raise InvalidInput(f"the password has more than {MAX_PASSWORD} characters",
                               field="password")

    async def _verify(self, stored: str, password: str) -> bool:
        try:
            return bool(await asyncio.to_thread(self.hasher.verify, stored, password))
        except (VerificationError, InvalidHashError):
            return False

    async def _dummy(self) -> str:
        if self._dummy_hash is None:
            self._dummy_hash = await asyncio.to_thread(self.hasher.hash,
                                                       secrets.token_urlsafe(16))
        return self._dummy_hash

    async def _throttle_address(self, client_address: str | None) -> None:
        if client_address and not await self.limiter.hit(self.per_address, "address",
                                                         client_address):
            raise await self._limited(self.per_address, "too many account requests from "
                                      "this address", "address", client_address)

    async def _limited(self, item: RateLimitItem, detail: str,
                       *identifiers: str) -> RateLimited:
        stats = await self.limiter.get_window_stats(item, *identifiers)
        retry_after = max(1, math.ceil(stats.reset_time - utcnow().timestamp()))
        log.info("rate limited", limit=str(item), scope=identifiers[0])
        return RateLimited(f"{detail}; try again in {retry_after} s", retry_after=retry_after)

    def _terms(self, now: datetime) -> tuple[datetime, datetime]:
        return (now + timedelta(seconds=self.config.access_token_ttl),
                now + timedelta(seconds=self.config.refresh_token_ttl))

    async def _open_session(self, customer_id: str, channel: str | None) -> SessionTokens:
        now = utcnow()
        session_id = new_id("ses")
        access, refresh = _secret(SESSION_PREFIX), _secret(REFRESH_PREFIX)
        access_expires, refresh_expires = self._terms(now)
        await self.rt.accounts.open_session(
            session_id=session_id, customer_id=customer_id, channel=channel,
            access_hash=token_hash(access), access_expires_at=access_expires,
            refresh_hash=token_hash(refresh), refresh_expires_at=refresh_expires)
        return self._tokens(customer_id, session_id, access, access_expires, refresh,
                            refresh_expires, now)

    @staticmethod
    def _tokens(customer_id: str, session_id: str, access: str, access_expires: datetime,
                refresh: str, refresh_expires: datetime, now: datetime) -> SessionTokens:
        return SessionTokens(
            customer_id=customer_id, session_id=session_id, access_token=access,
            expires_in=round((access_expires - now).total_seconds()), expires_at=access_expires,
            refresh_token=refresh,
            refresh_expires_in=round((refresh_expires - now).total_seconds()),
            refresh_expires_at=refresh_expires)
