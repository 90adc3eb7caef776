"""Engine configuration: from code, or from ``ORDNUNG_*`` environment variables."""

from __future__ import annotations

import json
import os
from typing import Annotated, Any

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
    #: seconds an Idempotency-Key claim is held without renewal (renewed while its request
    #: runs): a key whose process died is free again after at most this long
    idempotency_lease_seconds: Annotated[float, msgspec.Meta(gt=0)] = 10.0

    @classmethod
    def from_env(cls, **overrides: Any) -> EngineConfig:
        """Read ``ORDNUNG_DATABASE_URL``, ``ORDNUNG_PLUGINS`` (comma list),
        ``ORDNUNG_PLUGIN_SETTINGS`` (JSON object), ``ORDNUNG_REQUIRE_TAX`` and
        ``ORDNUNG_IDEMPOTENCY_LEASE_SECONDS``."""
        values: dict[str, Any] = {}
        env = os.environ
        if env.get("ORDNUNG_DATABASE_URL"):
            values["database_url"] = env["ORDNUNG_DATABASE_URL"]
        if env.get("ORDNUNG_PLUGINS"):
            values["plugins"] = [p.strip() for p in env["ORDNUNG_PLUGINS"].split(",")
                                 if p.strip()]
        if env.get("ORDNUNG_PLUGIN_SETTINGS"):
            values["plugin_settings"] = json.loads(env["ORDNUNG_PLUGIN_SETTINGS"])
        if env.get("ORDNUNG_IDEMPOTENCY_LEASE_SECONDS"):
            values["idempotency_lease_seconds"] = float(env["ORDNUNG_IDEMPOTENCY_LEASE_SECONDS"])
        if env.get("ORDNUNG_REQUIRE_TAX"):
            values["require_tax"] = env["ORDNUNG_REQUIRE_TAX"].lower() not in ("0", "false", "no")
        values.update(overrides)
        return msgspec.convert(values, cls)
