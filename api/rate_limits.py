"""Rate limits on the write paths (POST, PATCH, PUT, DELETE): 429 before anything runs.

Counted with the ``limits`` library in the database (``DatabaseStorage``, the same
store as the sign-in throttle), so every worker process and machine of one shop shares
the counts. Who is counted:

* **per caller** (``ORDNUNG_RATE_LIMIT_WRITES``): a guest by the cart token it sends
  (``X-Cart-Token``), a customer by the customer. A publishable storefront key is
  shared by every visitor of a shop, so it is never counted as one caller; a storefront
  request without a cart token is counted per address only;
* **per admin key** (``ORDNUNG_RATE_LIMIT_WRITES_PER_KEY``): a backend places orders for
  all of a shop's visitors with one key, so its limit is far higher (by default 1,000
  writes a second, more than one server answers: it stops a runaway client);
* **per client address** (``ORDNUNG_RATE_LIMIT_WRITES_PER_ADDRESS``): for storefront keys
  and customer tokens, which run in the shopper's browser or app. The address is the
  connection's, or behind the configured trusted proxies the one they forwarded for
  (``ordnung.api.client_ip``): a client's own ``X-Forwarded-For`` is never believed.
  Admin keys are not counted per address: their address is their server's.

A worker takes its counts in shares (``ordnung.api.rate_shares``): most writes are
counted against what it took, without a statement. The counts a write has no share of
left are raised together, in one statement (``DatabaseStorage.incr_many``), and the
write is refused if any of them is over its limit; a refused write counts against every
one of them, as it does against the limit that refused it. A limit of up to 31 writes a
window is counted exactly, write by write; a larger one may lose up to a sixteenth of
itself per worker and window to writes a worker took and was not sent.

Each setting is a rate in the ``limits`` notation (``120/minute``, ``10/second``) or
``off``. The layer sits behind authentication (an unknown key is a 401, not counted)
and behind ``Idempotency-Key`` handling, so the replay of a stored answer is not
counted again; a 429 is never kept as a key's answer (``ordnung.core.services.
idempotency``), so the same request with the same key passes once the window is over.

The counting statement, when it runs, also brings back the generations that confirm a
key this worker kept (``ordnung.core.persistence.generations``): a kept key revoked
meanwhile is counted by the statement that then finds it revoked, and answers 401
before anything runs. A write counted from a share confirms its key later, before it
writes (``ordnung.api.confirming``).
"""

from __future__ import annotations

import hashlib
import math
import os
from typing import Any

import msgspec
import structlog
from limits import RateLimitItem, parse
from litestar.types import ASGIApp

from ordnung.api.asgi import Receive, Scope, Send
from ordnung.api.client_ip import FORWARDED_FOR, connection_ip, networks
from ordnung.api.idempotency import CART_TOKEN
from ordnung.api.intake import send_problem
from ordnung.api.problems import WRITES
from ordnung.api.rate_shares import Shares
from ordnung.core import Engine
from ordnung.core.domain.access import Principal
from ordnung.core.errors import ConfigError
from ordnung.core.persistence.rate_limits import DatabaseStorage

log = structlog.get_logger("ordnung.http")

OFF = "off"
#: how a refusal names the count that refused it
LABELS = {"writes-key": "with this API key", "writes-customer": "for this customer",
          "writes-cart": "with this cart token", "writes-address": "from this address"}

#: the variable each field is read from
VARIABLES = {"writes": "ORDNUNG_RATE_LIMIT_WRITES",
             "writes_per_key": "ORDNUNG_RATE_LIMIT_WRITES_PER_KEY",
             "writes_per_address": "ORDNUNG_RATE_LIMIT_WRITES_PER_ADDRESS"}


def rate(variable: str, raw: str) -> RateLimitItem | None:
    """``raw`` as a limit, None for ``off``; a ``ConfigError`` naming ``variable`` else."""
    text = raw.strip()
    if text.lower() == OFF:
        return None
    try:
        return parse(text)
    except ValueError:
        raise ConfigError(variable, f"expected a rate such as '120/minute' or '10/second', "
                                    f"or 'off', got {raw!r}") from None


class WriteLimits(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """The three write limits (``limits`` notation, or ``off``); see the module docstring."""

    #: writes per guest cart token or per customer
    writes: str = "120/minute"
    #: writes per admin key
    writes_per_key: str = "60000/minute"
    #: writes per client address (storefront keys and customer tokens); as high as the
    #: per-key limit by default: a storefront's own server may call the API with its
    #: publishable key for all of its visitors, from one address
    writes_per_address: str = "60000/minute"

    def __post_init__(self) -> None:
        for field, variable in VARIABLES.items():
            rate(variable, getattr(self, field))

    @classmethod
    def off(cls) -> WriteLimits:
        return cls(writes=OFF, writes_per_key=OFF, writes_per_address=OFF)

    @classmethod
    def from_env(cls, **overrides: Any) -> WriteLimits:
        """The limits from ``ORDNUNG_RATE_LIMIT_WRITES*``; a value that is not a rate
        raises ``ConfigError`` naming its variable."""
        values = {field: os.environ[variable] for field, variable in VARIABLES.items()
                  if os.environ.get(variable)}
        values.update(overrides)
        return cls(**values)

    def item(self, field: str) -> RateLimitItem | None:
        return rate(VARIABLES[field], getattr(self, field))


def client_address(scope: Scope, engine: Engine) -> str | None:
    """The address the per-address limit counts (see ``ordnung.api.client_ip``)."""
    client = scope.get("client")
    peer = client[0] if client else None
    forwarded = [v.decode("latin-1") for k, v in scope["headers"]
                 if k.lower() == FORWARDED_FOR]
    proxies = networks(tuple(engine.config.trusted_proxies))
    return connection_ip(peer, forwarded, proxies) or peer


class WriteRateLimitMiddleware:
    """Refuses a write over any of its caller's limits with 429 ``rate-limited`` and
    ``Retry-After`` (seconds until the window that refused it is over)."""

    def __init__(self, app: ASGIApp, limits: WriteLimits | None = None,
                 shares: Shares | None = None) -> None:
        """``shares``: the worker's shares of its counts, one for the whole app (litestar
        builds this layer once per route)."""
        self.app: Any = app
        self.limits = limits or WriteLimits.from_env()
        self.per_caller = self.limits.item("writes")
        self.per_key = self.limits.item("writes_per_key")
        self.per_address = self.limits.item("writes_per_address")
        self._storage: tuple[Engine, DatabaseStorage] | None = None
        self.shares = shares if shares is not None else Shares()

    def storage(self, engine: Engine) -> DatabaseStorage:
        if self._storage is None or self._storage[0] is not engine:
            self._storage = (engine, DatabaseStorage(engine.db))
        return self._storage[1]

    def counted(self, scope: Scope, principal: Principal, engine: Engine
                ) -> list[tuple[RateLimitItem, str, str]]:
        """(limit, namespace, identifier) for each count this request is part of."""
        counts: list[tuple[RateLimitItem, str, str]] = []
        if principal.kind == "admin":
            if self.per_key is not None:
                counts.append((self.per_key, "writes-key", principal.key_id))
            return counts
        if self.per_caller is not None:
            if principal.kind == "customer" and principal.customer_id:
                counts.append((self.per_caller, "writes-customer", principal.customer_id))
            else:
                token = dict(scope["headers"]).get(CART_TOKEN)
                if token:  # a secret: only its hash is stored, as with the cart's own
                    counts.append((self.per_caller, "writes-cart",
                                   hashlib.sha256(token).hexdigest()))
        if self.per_address is not None:
            address = client_address(scope, engine)
            if address:
                counts.append((self.per_address, "writes-address", address))
        return counts

    async def refusal(self, scope: Scope, principal: Principal, engine: Engine
                      ) -> tuple[RateLimitItem, str, float] | None:
        """Count this write against each of its limits (from the worker's shares, or
        all the counts it has no share of left raised in one statement: the fixed window
        of ``limits``' ``FixedWindowRateLimiter``); the first over its limit, with the
        seconds until its window is over, or None."""
        counted = self.counted(scope, principal, engine)
        if not counted:
            return None
        with engine.db.outside_transaction():
            return await self.shares.count(self.storage(engine), counted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        principal = scope.get("user")
        if scope["type"] != "http" or scope["method"] not in WRITES \
                or not isinstance(principal, Principal):
            await self.app(scope, receive, send)
            return
        engine: Engine = scope["app"].state.engine
        refused = await self.refusal(scope, principal, engine)
        if refused is None:
            await self.app(scope, receive, send)
            return
        item, namespace, seconds_left = refused
        retry_after = max(1, math.ceil(seconds_left))
        log.info("rate limited", limit=str(item), scope=namespace,
                 method=scope["method"], path=scope["path"])
        await send_problem(send, 429, "rate-limited", "Too many requests",
                           f"too many writes {LABELS[namespace]} (at most {item}); "
                           f"try again in {retry_after} s",
                           [(b"retry-after", str(retry_after).encode())])
