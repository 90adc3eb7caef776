"""``ordnung serve``: the REST API under uvicorn, one Engine per worker process.

The parent process prepares the database once before any worker starts:
it applies migrations, makes sure the ``ORDNUNG_ADMIN_KEY`` admin key exists
and, with ``--demo``, seeds the demo shop (idempotently) and issues a
storefront key and an admin key that it prints once. Workers then build
their app from the same ``ORDNUNG_*`` environment (``worker_app``); they
migrate again at start, which finds nothing to do (the runner locks).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import shutil
import sys
import tempfile
from collections.abc import MutableMapping
from typing import Any, TextIO, cast

import msgspec
from litestar import Litestar

from ordnung.api.rate_limits import WriteLimits
from ordnung.api.seed import DEMO_PLUGIN_SETTINGS, demo_plugins
from ordnung.api.settings import HttpSettings
from ordnung.core.config import env_json_object
from ordnung.core.domain.access import ADMIN_SCOPES
from ordnung.core.errors import ConfigError
from ordnung.core.persistence.sqlite_engine import SQLiteSettings

ENV_DATABASE_URL = "ORDNUNG_DATABASE_URL"
ENV_PLUGIN_SETTINGS = "ORDNUNG_PLUGIN_SETTINGS"
ENV_ADMIN_KEY = "ORDNUNG_ADMIN_KEY"
ENV_DEMO = "ORDNUNG_DEMO"
#: prometheus-client's multiprocess folder (see ordnung.api.metrics)
ENV_METRICS_DIR = "PROMETHEUS_MULTIPROC_DIR"
#: an admin key chosen by the operator must not be guessable
MIN_ADMIN_KEY = 16
#: how the parent tells the workers to log (they are separate processes)
ENV_LOG_LEVEL = "ORDNUNG_LOG_LEVEL"
ENV_LOG_JSON = "ORDNUNG_LOG_JSON"
ENV_SHUTDOWN_GRACE = "ORDNUNG_SHUTDOWN_GRACE_SECONDS"


class DemoKeys(msgspec.Struct, frozen=True, kw_only=True):
    storefront: str
    admin: str


def configure_from_env() -> None:
    """Configure structlog from ``ORDNUNG_LOG_LEVEL`` / ``ORDNUNG_LOG_JSON``."""
    from ordnung.core.logging import configure_logging

    configure_logging(os.environ.get(ENV_LOG_LEVEL, "INFO"),
                      json=os.environ.get(ENV_LOG_JSON) == "1", final=True)


def worker_app() -> Litestar:
    """The uvicorn factory of each worker: logging as the parent said, then the app,
    whose heap is settled once it has started (``settle_heap``)."""
    from ordnung.api.app import create_app

    configure_from_env()
    app = create_app(demo=False)
    app.on_startup.append(settle_heap)
    return app


#: allocations between two collections of the youngest generation (Python's default is
#: 700): a worker under load otherwise collects about 80 times a second, each time
#: walking the objects of every request in flight, which cost it 3-4 % of its CPU (1 %
#: at this setting, measured with ``bench guest-checkout``)
YOUNG_COLLECTION_EVERY = 10_000


def settle_heap() -> None:
    """Move what the started worker holds for good (modules, the app, the plugins, the
    engine's pools) out of the garbage collector's sight: a full collection otherwise
    walks those 150,000 objects each time, about 100 ms of a core in which no request
    moves, several times a minute under load. What requests create is still collected,
    in fewer, larger rounds (``YOUNG_COLLECTION_EVERY``)."""
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_EVERY, middle, old)


def demo_plugin_settings(current: str | None) -> str:
    """``ORDNUNG_PLUGIN_SETTINGS`` for the demo: the gift tier, unless the operator's own
    settings already configure ``free_gift``."""
    settings: dict[str, Any] = env_json_object(ENV_PLUGIN_SETTINGS, current) if current else {}
    for name, value in DEMO_PLUGIN_SETTINGS.items():
        settings.setdefault(name, value)
    return json.dumps(settings)


async def prepare(*, demo: bool, admin_key: str | None) -> DemoKeys | None:
    """Migrate, ensure the bootstrap admin key and (``demo``) seed and issue demo keys."""
    from ordnung.core import Engine, EngineConfig

    engine = Engine(EngineConfig.from_env(pool_size=2))
    await engine.start()  # applies migrations and validates the plugins' settings
    try:
        if admin_key:
            await engine.access.ensure_admin(admin_key)
        if not demo:
            return None
        from ordnung.api.seed import seed_demo_shop

        await seed_demo_shop(engine)
        storefront = await engine.access.issue("storefront", name="demo storefront",
                                               channel="web")
        admin = await engine.access.issue("admin", name="demo admin", scopes=ADMIN_SCOPES)
        return DemoKeys(storefront=storefront.secret, admin=admin.secret)
    finally:
        await engine.stop()


def gift_note() -> str:
    """``; a free tote bag from EUR 50.00``: the free-gift tiers the workers will use."""
    from ordnung.core import Money

    try:
        settings = json.loads(os.environ.get(ENV_PLUGIN_SETTINGS) or "{}")
        tiers = settings.get("free_gift", {}).get("tiers", [])
        return "".join(f"; a free {t.get('name') or t['sku']} from "
                       f"{Money(int(t['threshold']), t['currency']).format()}" for t in tiers)
    except (ValueError, KeyError, TypeError, AttributeError):
        return ""


def print_banner(out: TextIO, *, url: str, host: str, port: int, workers: int,
                 keys: DemoKeys | None) -> None:
    from ordnung.api.cli import redact

    base = f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}"
    lines = [f"ordnung API on {base} ({workers} worker{'s' if workers > 1 else ''}), "
             f"database {redact(url)}",
             f"  OpenAPI docs:     {base}/schema",
             f"  OpenAPI document: {base}/schema/openapi.json"]
    if keys is not None:
        lines += [
            "",
            f"Demo shop ready (channels web, etsy, ebay, pos{gift_note()}). "
            "These keys are shown once; every start with --demo issues a new pair (earlier "
            "pairs stay valid until revoked, DELETE /admin/keys/{id}; set ORDNUNG_ADMIN_KEY "
            "to keep one admin key across starts):",
            f"  storefront key (channel web): {keys.storefront}",
            f"  admin key (every scope):      {keys.admin}",
            "",
            "Try:",
            f"  curl -H 'Authorization: Bearer {keys.storefront}' "
            f"{base}/catalogue/products",
        ]
    if os.environ.get(ENV_ADMIN_KEY):
        lines.append(f"  the {ENV_ADMIN_KEY} admin key holds every scope")
    print("\n".join(lines), file=out, flush=True)


def serve(*, host: str = "127.0.0.1", port: int = 8000, workers: int = 1, demo: bool = False,
          database_url: str | None = None, log_level: str = "info", log_json: bool = False,
          shutdown_grace: float | None = None, out: TextIO | None = None) -> int:
    """Prepare the database in this process, then run uvicorn (blocks until stopped)."""
    import uvicorn

    from ordnung.api import supervisor
    from ordnung.api.http_protocol import TimedHttpToolsProtocol
    from ordnung.core.persistence.database import DEFAULT_URL

    env = os.environ
    if database_url:
        env[ENV_DATABASE_URL] = database_url
    url = env.get(ENV_DATABASE_URL) or DEFAULT_URL
    env[ENV_DATABASE_URL] = url
    demo = demo or env.get(ENV_DEMO) == "1"
    env.pop(ENV_DEMO, None)  # the parent seeds; workers must not race to do it again
    if demo:
        env[ENV_PLUGIN_SETTINGS] = demo_plugin_settings(env.get(ENV_PLUGIN_SETTINGS))
        env.setdefault("ORDNUNG_PLUGINS", ",".join(demo_plugins(
            env_json_object(ENV_PLUGIN_SETTINGS, env[ENV_PLUGIN_SETTINGS]))))
    admin_key = env.get(ENV_ADMIN_KEY)
    if admin_key and len(admin_key) < MIN_ADMIN_KEY:
        # before anything touches the database: a typo must not leave a migrated database
        # behind, nor a half-started server
        raise ConfigError(ENV_ADMIN_KEY, f"must be at least {MIN_ADMIN_KEY} characters "
                                         f"(it has {len(admin_key)})")
    if shutdown_grace is not None:
        env[ENV_SHUTDOWN_GRACE] = str(shutdown_grace)
    # the HTTP edge's limits, checked once here, not in each worker
    http = HttpSettings.from_env()
    SQLiteSettings.from_env()
    WriteLimits.from_env()  # and the write rate limits
    env[ENV_LOG_LEVEL] = log_level.upper()
    env[ENV_LOG_JSON] = "1" if log_json else "0"
    configure_from_env()

    metrics_dir = prepare_metrics_dir(env)
    keys = asyncio.run(prepare(demo=demo, admin_key=env.get(ENV_ADMIN_KEY) or None))
    print_banner(out or sys.stdout, url=url, host=host, port=port, workers=workers, keys=keys)
    config = uvicorn.Config(
        "ordnung.api.serve:worker_app", factory=True, host=host, port=port,
        workers=workers, log_level=log_level.lower(),
        access_log=False,  # the app logs one structured line per request
        # X-Forwarded-For is believed only from ORDNUNG_TRUSTED_PROXIES, by the
        # app itself (api/client_ip.py): uvicorn must not rewrite the peer first
        proxy_headers=False,
        # uvicorn's own lines go through the handler configure_logging installs
        # (in the parent here, in each worker by worker_app), in the same format
        log_config=None,
        lifespan="on",
        # connections that never send: a deadline for the headers and a cap on the
        # connections (the protocol), for the body (ordnung.api.intake) and for idle
        # keep-alive connections
        http=TimedHttpToolsProtocol,
        timeout_keep_alive=cast(Any, http.keep_alive_timeout_seconds),
        timeout_graceful_shutdown=cast(Any, http.shutdown_grace_seconds))
    started = supervisor.run(config, grace_seconds=http.shutdown_grace_seconds)
    if metrics_dir is not None:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    return 0 if started else 3


def prepare_metrics_dir(env: MutableMapping[str, str]) -> str | None:
    """Point ``PROMETHEUS_MULTIPROC_DIR`` at a folder the workers share, before any of them
    imports prometheus-client: a fresh temporary one (returned, to be removed at exit),
    or the operator's own, emptied of an earlier run's files."""
    given = env.get(ENV_METRICS_DIR)
    if given:
        os.makedirs(given, exist_ok=True)
        for name in os.listdir(given):
            if name.endswith(".db"):
                os.unlink(os.path.join(given, name))
        return None
    folder = tempfile.mkdtemp(prefix="ordnung-metrics-")
    env[ENV_METRICS_DIR] = folder
    return folder
