"""Engine configuration: from code, or from ``ORDNUNG_*`` environment variables."""

from __future__ import annotations

import ipaddress
import json
import os
from typing import Any

import msgspec

from ordnung.core.persistence.database import DEFAULT_URL


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
    #: (API) addresses or networks of the reverse proxies in front of the API. Only
    #: through them does a browser's connection tell its address (``X-Forwarded-For``);
    #: empty: the connection tells the fraud rules nothing (see README "Client IP")
    trusted_proxies: list[str] = []

    def __post_init__(self) -> None:
        for value in self.trusted_proxies:
            try:
                ipaddress.ip_network(value.strip(), strict=False)
            except ValueError:
                raise ValueError(f"trusted_proxies: {value!r} is not an IP address or "
                                 "network (e.g. 10.0.0.0/8 or 192.0.2.1)") from None

    @classmethod
    def from_env(cls, **overrides: Any) -> EngineConfig:
        """Read ``ORDNUNG_DATABASE_URL``, ``ORDNUNG_PLUGINS`` (comma list),
        ``ORDNUNG_PLUGIN_SETTINGS`` (JSON object), ``ORDNUNG_REQUIRE_TAX`` and
        ``ORDNUNG_TRUSTED_PROXIES`` (comma list)."""
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
        if env.get("ORDNUNG_TRUSTED_PROXIES"):
            values["trusted_proxies"] = [p.strip() for p in
                                         env["ORDNUNG_TRUSTED_PROXIES"].split(",") if p.strip()]
        values.update(overrides)
        return msgspec.convert(values, cls)
