"""Engine configuration: from code, or from ``ORDNUNG_*`` environment variables."""

from __future__ import annotations

import json
import os
from typing import Any

import msgspec

from ordnung.core.persistence.database import DEFAULT_URL

#: settings of customer accounts and tokens, each read from ``ORDNUNG_<NAME>``
ACCOUNT_SETTINGS = ("access_token_ttl", "refresh_token_ttl", "customer_token_ttl",
                    "password_reset_ttl", "email_verification_ttl", "password_min_length",
                    "sign_in_limit_per_account", "account_limit_per_address")


def _int(name: str, raw: str) -> int:
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"ORDNUNG_{name.upper()} must be a whole number, not {raw!r}") from None


class EngineConfig(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    database_url: str = DEFAULT_URL
    #: entry-point names to enable; None enables every installed plugin
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
    access_token_ttl: int = 900
    #: seconds a refresh token is valid; every refresh issues a new one with a fresh term
    refresh_token_ttl: int = 30 * 86_400
    #: seconds a customer token issued by staff (``POST /customers/{id}/tokens``) is valid
    customer_token_ttl: int = 86_400
    #: seconds a password-reset token sent by e-mail is valid
    password_reset_ttl: int = 3_600
    #: seconds an e-mail verification token is valid
    email_verification_ttl: int = 2 * 86_400
    #: shortest password a customer may choose
    password_min_length: int = 10
    #: failed sign-ins per account (``limits`` notation, e.g. ``10/15 minutes``)
    sign_in_limit_per_account: str = "10/15 minutes"
    #: account requests (sign-in, registration, password reset) per client address
    account_limit_per_address: str = "30/minute"

    def __post_init__(self) -> None:
        from limits import parse  # the setting is a rate in the limiter's own notation

        for name in ("sign_in_limit_per_account", "account_limit_per_address"):
            try:
                parse(getattr(self, name))
            except ValueError:
                raise ValueError(f"{name}: {getattr(self, name)!r} is not a rate such as "
                                 "'10/15 minutes' or '30/minute'") from None
        for name in ("access_token_ttl", "refresh_token_ttl", "customer_token_ttl",
                     "password_reset_ttl", "email_verification_ttl", "password_min_length"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")

    @classmethod
    def from_env(cls, **overrides: Any) -> EngineConfig:
        """Read ``ORDNUNG_DATABASE_URL``, ``ORDNUNG_PLUGINS`` (comma list),
        ``ORDNUNG_PLUGIN_SETTINGS`` (JSON object), ``ORDNUNG_REQUIRE_TAX`` and the
        account settings (``ORDNUNG_ACCESS_TOKEN_TTL`` ...; see ``ACCOUNT_SETTINGS``)."""
        values: dict[str, Any] = {}
        env = os.environ
        if env.get("ORDNUNG_DATABASE_URL"):
            values["database_url"] = env["ORDNUNG_DATABASE_URL"]
        if env.get("ORDNUNG_PLUGINS"):
            values["plugins"] = [p.strip() for p in env["ORDNUNG_PLUGINS"].split(",")
                                 if p.strip()]
        if env.get("ORDNUNG_PLUGIN_SETTINGS"):
            values["plugin_settings"] = json.loads(env["ORDNUNG_PLUGIN_SETTINGS"])
        if env.get("ORDNUNG_REQUIRE_TAX"):
            values["require_tax"] = env["ORDNUNG_REQUIRE_TAX"].lower() not in ("0", "false", "no")
        for name in ACCOUNT_SETTINGS:
            raw = env.get(f"ORDNUNG_{name.upper()}")
            if raw:
                values[name] = raw if name.endswith("limit_per_account") or name.endswith(
                    "limit_per_address") else _int(name, raw)
        values.update(overrides)
        return msgspec.convert(values, cls)
