"""Engine configuration: from code, or from ``ORDNUNG_*`` environment variables."""

from __future__ import annotations

import ipaddress
import json
import os
from collections.abc import Callable
from typing import Annotated, Any

import msgspec

from ordnung.core.errors import ConfigError
from ordnung.core.limits import InputLimits
from ordnung.core.persistence.database import DEFAULT_URL
from ordnung.core.persistence.retrying import TRIES

#: the spellings ``ORDNUNG_*`` switches accept; anything else is a mistake, not "true"
TRUE_WORDS = frozenset({"1", "true", "yes", "on"})
FALSE_WORDS = frozenset({"0", "false", "no", "off"})


def env_bool(name: str, raw: str) -> bool:
    word = raw.strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise ConfigError(name, f"expected true or false (or 1/0, yes/no, on/off), got {raw!r}")


def env_json_object(name: str, raw: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ConfigError(name, f"not valid JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(value, dict):
        raise ConfigError(name, f"expected a JSON object, got a JSON {type(value).__name__}")
    return value


def env_number(name: str, raw: str) -> float:
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(name, f"expected a number, got {raw!r}") from None


def setting_of(path: str) -> str:
    """``$.plugin_settings.free_gift`` -> ``ORDNUNG_PLUGIN_SETTINGS``: every field of
    ``EngineConfig`` is read from the variable of its name."""
    field = path.removeprefix("$.").split(".", 1)[0].split("[", 1)[0]
    return f"ORDNUNG_{field.upper()}" if field and field != "$" else "ORDNUNG_*"


def check_networks(name: str, values: list[str]) -> list[str]:
    """``values`` if each is an IP address or network, else a ``ConfigError``."""
    for value in values:
        try:
            ipaddress.ip_network(value.strip(), strict=False)
        except ValueError:
            raise ConfigError(name, f"{value!r} is not an IP address or network (e.g. "
                                    "10.0.0.0/8 or 192.0.2.1)") from None
    return values


#: The built-in plugins enabled when ``plugins`` (``ORDNUNG_PLUGINS``) is not set: one of
#: each kind that works without further settings and cannot surprise a shop. Left out on
#: purpose: ``sandbox`` (a test gateway: it would take test card tokens as payment),
#: ``email`` (needs a mail server), the competing tax plugins ``eu_vat`` and
#: ``us_sales_tax`` (one tax plugin per region), and the plugins that only act once
#: configured or that change the order flow (``weight_bands``, ``free_shipping``,
#: ``shipping_restrictions``, ``spending_milestones``, ``vip_priority``, ``risk_rules``,
#: ``channel_log``). Installed third-party plugins are enabled as well.
DEFAULT_PLUGINS = ("manual", "flat_rate", "store_pickup", "table_tax", "coupons",
                   "free_gift", "privacy")


#: settings of customer accounts and tokens, each read from ``ORDNUNG_<NAME>``
ACCOUNT_SETTINGS = ("access_token_ttl", "refresh_token_ttl", "customer_token_ttl",
                    "password_reset_ttl", "email_verification_ttl", "password_min_length",
                    "stream_token_ttl",
                    "sign_in_limit_per_account", "account_limit_per_address")


def env_account_setting(name: str, raw: str) -> int | str:
    """An account setting from ``ORDNUNG_<NAME>``: a whole number of seconds (or
    characters), or a rate in the ``limits`` notation for the two throttles."""
    variable = f"ORDNUNG_{name.upper()}"
    if name.endswith(("_limit_per_account", "_limit_per_address")):
        from limits import parse

        try:
            parse(raw)
        except ValueError:
            raise ConfigError(variable, f"expected a rate such as '10/15 minutes' or "
                                        f"'30/minute', got {raw!r}") from None
        return raw
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(variable, f"expected a whole number, got {raw!r}") from None

#: timeouts towards the database and the clock measurement, each ``ORDNUNG_<NAME>``
DB_TIME_SETTINGS = ("db_connect_timeout_s", "db_acquire_timeout_s", "db_statement_timeout_s",
                    "db_clock_sync_s")

#: webhook delivery settings in seconds, each ``ORDNUNG_<NAME>``
WEBHOOK_NUMBERS = ("webhooks_timeout_s", "webhooks_retry_for_s", "webhooks_backoff_base_s",
                   "webhooks_backoff_max_s", "webhooks_disable_after_s",
                   "webhooks_rotation_grace_s", "webhooks_interval_s",
                   "broker_backoff_base_s", "broker_backoff_max_s")

def _text(variable: str, raw: str) -> str:
    return raw


def _names(variable: str, raw: str) -> list[str]:
    """A comma list, blanks dropped (``ORDNUNG_PLUGINS=sandbox, manual,``)."""
    return [part.strip() for part in raw.split(",") if part.strip()]


def _networks(variable: str, raw: str) -> list[str]:
    return check_networks(variable, _names(variable, raw))


def _account(variable: str, raw: str) -> int | str:
    return env_account_setting(variable.removeprefix("ORDNUNG_").lower(), raw)


def _whole(variable: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ConfigError(variable, f"expected a whole number, got {raw!r}") from None


def _retention(variable: str, raw: str) -> float:
    """Seconds, or ``off`` (the same as 0: that part of the housekeeping is not done)."""
    return 0.0 if raw.strip().lower() == "off" else env_number(variable, raw)


#: how long the housekeeping pass keeps what the engine needs only for a while, in
#: seconds, each ``ORDNUNG_<NAME>``; 0 or ``off`` keeps those rows for ever
RETENTION_SETTINGS = ("idempotency_retention_s", "session_retention_s", "cart_retention_s",
                      "outbox_retention_s")


#: how ``EngineConfig.from_env`` reads each field from ``ORDNUNG_<FIELD>`` (a reader gets
#: the variable's name, for its error, and its text), in the order they are read
ENV_READERS: tuple[tuple[str, Callable[[str, str], Any]], ...] = (
    ("database_url", _text),
    ("plugins", _names),
    ("plugin_settings", env_json_object),
    ("idempotency_lease_seconds", env_number),
    ("reconcile_grace_s", env_number),
    ("reconcile_interval_s", env_number),
    *((name, env_number) for name in DB_TIME_SETTINGS),
    *((name, env_number) for name in WEBHOOK_NUMBERS),
    ("webhooks_allow_private", env_bool),
    ("require_tax", env_bool),
    *((name, _account) for name in ACCOUNT_SETTINGS),
    ("trusted_proxies", _networks),
    ("housekeeping_interval_s", env_number),
    ("housekeeping_batch", _whole),
    *((name, _retention) for name in RETENTION_SETTINGS),
    ("transaction_tries", _whole),
)


def env_variable(field: str) -> str:
    return f"ORDNUNG_{field.upper()}"


#: a count of seconds or characters that must be above zero
Positive = Annotated[int, msgspec.Meta(gt=0)]


class EngineConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    database_url: str = DEFAULT_URL
    #: entry-point names to enable; None enables ``DEFAULT_PLUGINS`` and every installed
    #: third-party plugin
    plugins: list[str] | None = None
    #: settings per plugin name, validated against the plugin's Settings Struct
    plugin_settings: dict[str, dict[str, Any]] = {}
    #: discover plugins through entry points (tests register objects instead)
    load_entry_points: bool = True
    #: refuse to place an order when no tax plugin answers (fail closed)
    require_tax: bool = True
    default_currency: str = "EUR"
    pool_size: int = 8
    #: apply pending migrations at start
    migrate: bool = True
    #: run the outbox sweeper and reaction retries in the background
    background_tasks: bool = False
    #: seconds a customer's access token (from signing in or refreshing) is valid
    access_token_ttl: Positive = 900
    #: seconds a refresh token is valid; every refresh issues a new one with a fresh term
    refresh_token_ttl: Positive = 30 * 86_400
    #: seconds a customer token issued by staff (``POST /customers/{id}/tokens``) is valid
    customer_token_ttl: Positive = 86_400
    #: seconds a password-reset token sent by e-mail is valid
    password_reset_ttl: Positive = 3_600
    #: seconds an e-mail verification token is valid
    email_verification_ttl: Positive = 2 * 86_400
    #: seconds a stream token (one order's live status, for a browser) is valid
    stream_token_ttl: Positive = 600
    #: shortest password a customer may choose
    password_min_length: Positive = 10
    #: failed sign-ins per account (``limits`` notation, e.g. ``10/15 minutes``)
    sign_in_limit_per_account: str = "10/15 minutes"
    #: account requests (sign-in, registration, password reset) per client address
    account_limit_per_address: str = "30/minute"
    #: seconds an Idempotency-Key claim is held without renewal (renewed while its request
    #: runs): a key whose process died is free again after at most this long
    idempotency_lease_seconds: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    #: seconds a payment's authorization may stay in flight before the reconciliation job
    #: takes its process for dead and finishes the placement (asks the gateway for the
    #: outcome, or voids it and releases the stock); well above any gateway's answer time
    reconcile_grace_s: Annotated[float, msgspec.Meta(ge=0)] = 120.0
    #: seconds between two rounds of the reconciliation job (it runs with the other
    #: background tasks, in every server process, one at a time under a lease)
    reconcile_interval_s: Annotated[float, msgspec.Meta(gt=0)] = 30.0
    #: seconds to wait for a new database connection, for a free pooled connection and
    #: for one statement (PostgreSQL) before answering 503 ``database-unavailable``; 0
    #: waits for ever
    db_connect_timeout_s: Annotated[float, msgspec.Meta(ge=0)] = 5.0
    db_acquire_timeout_s: Annotated[float, msgspec.Meta(ge=0)] = 5.0
    db_statement_timeout_s: Annotated[float, msgspec.Meta(ge=0)] = 15.0
    #: seconds between measurements of this server's clock against the database's
    db_clock_sync_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    #: (API) addresses or networks of the reverse proxies in front of the API. Only
    #: through them does a browser's connection tell its address (``X-Forwarded-For``);
    #: empty: the connection tells the fraud rules nothing (see README "Client IP")
    trusted_proxies: list[str] = []
    #: bounds on what one request may store or cause, each from ``ORDNUNG_MAX_*``
    #: (see ``ordnung.core.limits`` and README "Limits")
    limits: InputLimits = msgspec.field(default_factory=InputLimits)
    #: webhook endpoints may resolve to loopback, private, link-local or metadata
    #: addresses (tests, local installs); off by default: a guard against SSRF
    webhooks_allow_private: bool = False
    #: seconds one webhook request may take before it counts as a failed attempt
    webhooks_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    #: seconds a delivery is retried (exponential backoff with jitter) before it is
    #: marked failed and kept; at least a day
    webhooks_retry_for_s: Annotated[float, msgspec.Meta(gt=0)] = 3 * 86_400.0
    #: first and longest delay between two attempts of one delivery, in seconds
    webhooks_backoff_base_s: Annotated[float, msgspec.Meta(gt=0)] = 5.0
    webhooks_backoff_max_s: Annotated[float, msgspec.Meta(gt=0)] = 3_600.0
    #: seconds an endpoint may fail continuously before it is disabled (with the reason)
    webhooks_disable_after_s: Annotated[float, msgspec.Meta(gt=0)] = 5 * 86_400.0
    #: seconds a rotated-out signing secret keeps signing beside the new one
    webhooks_rotation_grace_s: Annotated[float, msgspec.Meta(ge=0)] = 86_400.0
    #: seconds between two rounds of the webhook worker when it has nothing to do
    webhooks_interval_s: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    #: first and longest delay, in seconds, before the broker worker tries again after
    #: a broker (NATS ...) failed to confirm a batch of events (exponential, jittered)
    broker_backoff_base_s: Annotated[float, msgspec.Meta(gt=0)] = 1.0
    broker_backoff_max_s: Annotated[float, msgspec.Meta(gt=0)] = 300.0
    #: seconds between two housekeeping passes (it runs with the other background tasks,
    #: in every server process, one at a time under a lease): what the engine keeps only
    #: for a while is deleted once its time is over
    housekeeping_interval_s: Annotated[float, msgspec.Meta(gt=0)] = 60.0
    #: rows one delete of the housekeeping pass takes at most (it repeats while full, up
    #: to a bound per pass), so that a sweep never holds many locks or one for long
    housekeeping_batch: Annotated[int, msgspec.Meta(gt=0)] = 1_000
    #: seconds an ``Idempotency-Key``'s record is kept (a repeat within them replays; a
    #: key reused later is a new request); 0 keeps them for ever
    idempotency_retention_s: Annotated[float, msgspec.Meta(ge=0)] = 86_400.0
    #: seconds an expired or revoked customer session, an expired one-time account token
    #: and an expired customer token issued by staff are kept; 0 keeps them for ever
    session_retention_s: Annotated[float, msgspec.Meta(ge=0)] = 86_400.0
    #: seconds a guest's cart, and any cart that became an order, is kept after its last
    #: change; 0 keeps them for ever
    cart_retention_s: Annotated[float, msgspec.Meta(ge=0)] = 30 * 86_400.0
    #: seconds an event's outbox row is kept once its reactions ran and the webhook and
    #: broker workers took it (the event stays in its timeline); 0 keeps them for ever
    outbox_retention_s: Annotated[float, msgspec.Meta(ge=0)] = 7 * 86_400.0
    #: tries in all of a unit of work whose transaction the database aborted for a
    #: concurrent one (deadlock, serialization failure) before ``TransientConflict``
    #: reaches the caller (409); 1 runs it once and never again
    transaction_tries: Annotated[int, msgspec.Meta(ge=1)] = TRIES

    def __post_init__(self) -> None:
        from limits import parse  # the setting is a rate in the limiter's own notation

        check_networks("trusted_proxies", self.trusted_proxies)
        for name in ("sign_in_limit_per_account", "account_limit_per_address"):
            try:
                parse(getattr(self, name))
            except ValueError:
                raise ValueError(f"{name}: {getattr(self, name)!r} is not a rate such as "
                                 "'10/15 minutes' or '30/minute'") from None
        for name in ("access_token_ttl", "refresh_token_ttl", "customer_token_ttl",
                     "password_reset_ttl", "email_verification_ttl", "password_min_length",
                     "stream_token_ttl"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")

    @classmethod
    def from_env(cls, **overrides: Any) -> EngineConfig:
        """Read ``ORDNUNG_DATABASE_URL``, ``ORDNUNG_PLUGINS`` (comma list),
        ``ORDNUNG_PLUGIN_SETTINGS`` (JSON object), ``ORDNUNG_REQUIRE_TAX``,
        ``ORDNUNG_IDEMPOTENCY_LEASE_SECONDS``, ``ORDNUNG_RECONCILE_GRACE_S``,
        ``ORDNUNG_RECONCILE_INTERVAL_S``, ``ORDNUNG_TRUSTED_PROXIES`` (comma list), the
        database timeouts (``ORDNUNG_DB_CONNECT_TIMEOUT_S`` ...; see ``DB_TIME_SETTINGS``),
        the account settings (``ORDNUNG_ACCESS_TOKEN_TTL`` ...; see ``ACCOUNT_SETTINGS``)
        the webhook and broker timings (see ``WEBHOOK_NUMBERS``), the housekeeping
        settings (``ORDNUNG_HOUSEKEEPING_INTERVAL_S``, ``ORDNUNG_HOUSEKEEPING_BATCH``, and
        the retentions ``ORDNUNG_IDEMPOTENCY_RETENTION_S``, ``ORDNUNG_SESSION_RETENTION_S``,
        ``ORDNUNG_CART_RETENTION_S``, ``ORDNUNG_OUTBOX_RETENTION_S``),
        ``ORDNUNG_TRANSACTION_TRIES`` and the input limits
        (``ORDNUNG_MAX_*``; see ``ordnung.core.limits``): ``ENV_READERS`` lists them. An
        empty variable counts as unset."""
        env = os.environ
        values: dict[str, Any] = {
            name: read(env_variable(name), raw) for name, read in ENV_READERS
            if (raw := env.get(env_variable(name)))}
        values["limits"] = InputLimits.from_env()
        values.update(overrides)
        try:
            return msgspec.convert(values, cls)
        except msgspec.ValidationError as exc:
            message = str(exc)
            path = message.rsplit(" - at `", 1)[1].rstrip("`") if " - at `" in message else ""
            raise ConfigError(setting_of(path), message.split(" - at `", 1)[0]) from None
