"""Engine configuration: from code, or from ``ORDNUNG_*`` environment variables."""

from __future__ import annotations

import ipaddress
import json
import os
from typing import Annotated, Any

import msgspec

from ordnung.core.errors import ConfigError
from ordnung.core.persistence.database import DEFAULT_URL

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
    #: seconds an Idempotency-Key claim is held without renewal (renewed while its request
    #: runs): a key whose process died is free again after at most this long
    idempotency_lease_seconds: Annotated[float, msgspec.Meta(gt=0)] = 10.0
    #: (API) addresses or networks of the reverse proxies in front of the API. Only
    #: through them does a browser's connection tell its address (``X-Forwarded-For``);
    #: empty: the connection tells the fraud rules nothing (see README "Client IP")
    trusted_proxies: list[str] = []

    def __post_init__(self) -> None:
        check_networks("trusted_proxies", self.trusted_proxies)

    @classmethod
    def from_env(cls, **overrides: Any) -> EngineConfig:
        """Read ``ORDNUNG_DATABASE_URL``, ``ORDNUNG_PLUGINS`` (comma list),
        ``ORDNUNG_PLUGIN_SETTINGS`` (JSON object), ``ORDNUNG_REQUIRE_TAX``,
        ``ORDNUNG_IDEMPOTENCY_LEASE_SECONDS`` and ``ORDNUNG_TRUSTED_PROXIES`` (comma list)."""
        values: dict[str, Any] = {}
        env = os.environ
        if env.get("ORDNUNG_DATABASE_URL"):
            values["database_url"] = env["ORDNUNG_DATABASE_URL"]
        if env.get("ORDNUNG_PLUGINS"):
            values["plugins"] = [p.strip() for p in env["ORDNUNG_PLUGINS"].split(",")
                                 if p.strip()]
        if env.get("ORDNUNG_PLUGIN_SETTINGS"):
            values["plugin_settings"] = env_json_object("ORDNUNG_PLUGIN_SETTINGS",
                                                        env["ORDNUNG_PLUGIN_SETTINGS"])
        if env.get("ORDNUNG_IDEMPOTENCY_LEASE_SECONDS"):
            values["idempotency_lease_seconds"] = env_number(
                "ORDNUNG_IDEMPOTENCY_LEASE_SECONDS", env["ORDNUNG_IDEMPOTENCY_LEASE_SECONDS"])
        if env.get("ORDNUNG_REQUIRE_TAX"):
            values["require_tax"] = env_bool("ORDNUNG_REQUIRE_TAX", env["ORDNUNG_REQUIRE_TAX"])
        if env.get("ORDNUNG_TRUSTED_PROXIES"):
            values["trusted_proxies"] = check_networks(
                "ORDNUNG_TRUSTED_PROXIES",
                [p.strip() for p in env["ORDNUNG_TRUSTED_PROXIES"].split(",") if p.strip()])
        values.update(overrides)
        try:
            return msgspec.convert(values, cls)
        except msgspec.ValidationError as exc:
            message = str(exc)
            path = message.rsplit(" - at `", 1)[1].rstrip("`") if " - at `" in message else ""
            raise ConfigError(setting_of(path), message.split(" - at `", 1)[0]) from None
