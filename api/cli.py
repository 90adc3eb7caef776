"""The ``ordnung`` command line: ``serve``, ``demo``, ``migrate``, ``housekeeping``,
``plugins`` and ``--version``."""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import logging
import os
import re
import sys
import typing
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import msgspec
import structlog

ENV_DATABASE_URL = "ORDNUNG_DATABASE_URL"


def package_version() -> str:
    try:
        return version("ordnung")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0+unknown"


@contextmanager
def quiet_logs(level: int = logging.WARNING) -> Iterator[None]:
    """Send the engine's structlog output to stderr, warnings and up only.

    The commands print text for people on stdout; engine logs would clutter it.
    The previous structlog configuration is restored afterwards.
    """
    previous = structlog.get_config()
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.dev.ConsoleRenderer(colors=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=False,
    )
    try:
        yield
    finally:
        structlog.configure(**previous)


# --------------------------------------------------------------------------- commands


def cmd_demo(args: argparse.Namespace) -> int:
    from ordnung.api.demo import DEFAULT_DEMO_FILE, DEFAULT_DEMO_URL, run_demo

    url = args.database_url or os.environ.get(ENV_DATABASE_URL) or DEFAULT_DEMO_URL
    if url == DEFAULT_DEMO_URL:
        # start from scratch each run; only ever delete the demo's own default file
        for suffix in ("", "-wal", "-shm"):
            Path(DEFAULT_DEMO_FILE + suffix).unlink(missing_ok=True)
    with quiet_logs():
        asyncio.run(run_demo(url))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from ordnung.api.serve import serve

    if args.workers < 1:
        print("ordnung serve: --workers must be at least 1", file=sys.stderr)
        return 2
    return serve(host=args.host, port=args.port, workers=args.workers, demo=args.demo,
                 database_url=args.database_url, log_level=args.log_level,
                 log_json=args.log_json, shutdown_grace=args.shutdown_grace)


async def _migrate(url: str) -> list[str]:
    from ordnung.core.persistence.database import Database, Timeouts

    # a migration may rewrite a large table: its statements are not cut short
    db = Database(url, pool_size=1, timeouts=Timeouts(statement=0))
    async with db.session():
        return await db.migrate()


def cmd_migrate(args: argparse.Namespace) -> int:
    from ordnung.core.persistence.database import DEFAULT_URL

    url = args.database_url or os.environ.get(ENV_DATABASE_URL) or DEFAULT_URL
    with quiet_logs():
        applied = asyncio.run(_migrate(url))
    print(f"database: {redact(url)}")
    if applied:
        print(f"applied {len(applied)} migration(s):")
        for migration_id in applied:
            print(f"  {migration_id}")
    else:
        print("nothing to apply: the database is up to date")
    return 0


async def _housekeeping(url: str) -> tuple[dict[str, int], float]:
    """One pass through an engine built from the same ``ORDNUNG_*`` settings as ``serve``
    (plugins, retentions, batch size), so that it deletes exactly what the server's own
    passes would; the rows deleted by kind, and the server's interval."""
    from ordnung.core import Engine, EngineConfig

    engine = Engine(EngineConfig.from_env(database_url=url, pool_size=2))
    await engine.start()  # applies pending migrations, as serve does
    try:
        return await engine.run_housekeeping(), engine.config.housekeeping_interval_s
    finally:
        try:
            # a server waits for the lease no longer than it must
            await engine.housekeeping.release()
        finally:
            await engine.stop()


def cmd_housekeeping(args: argparse.Namespace) -> int:
    from ordnung.core.persistence.database import DEFAULT_URL

    url = args.database_url or os.environ.get(ENV_DATABASE_URL) or DEFAULT_URL
    with quiet_logs():
        deleted, interval_s = asyncio.run(_housekeeping(url))
    print(f"database: {redact(url)}")
    if not deleted:
        print("nothing done: another process holds the housekeeping lease (a running "
              f"server does a pass every {interval_s:g} s)")
        return 0
    print(f"deleted {sum(deleted.values())} row(s) past their time:")
    width = max(len(kind) for kind in deleted)
    for kind, count in deleted.items():
        print(f"  {kind + ':':<{width + 1}} {count}")
    return 0


def type_name(tp: Any) -> str:
    """``dict[str, int]``, ``list[Tier]``: a settings field's type without module paths."""
    text = tp.__name__ if isinstance(tp, type) else str(tp)
    return re.sub(r"\b(?:[A-Za-z_]\w*\.)+(\w+)", r"\1", text)


def field_text(field: msgspec.structs.FieldInfo) -> str:
    """``name: type = default`` (JSON default), or ``name: type (required)``."""
    text = f"{field.name}: {type_name(field.type)}"
    if field.default is not msgspec.NODEFAULT:
        default = field.default
    elif field.default_factory is not msgspec.NODEFAULT:
        default = field.default_factory()
    else:
        return text + " (required)"
    return f"{text} = {json.dumps(msgspec.to_builtins(default), ensure_ascii=False)}"


def nested_structs(settings_type: type[msgspec.Struct]) -> list[type[msgspec.Struct]]:
    """Struct types used inside a Settings Struct's fields (``Tier`` in ``list[Tier]``)."""
    found: list[type[msgspec.Struct]] = []

    def visit(tp: Any) -> None:
        if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
            if tp not in found:
                found.append(tp)
                for f in msgspec.structs.fields(tp):
                    visit(f.type)
            return
        for arg in typing.get_args(tp):
            visit(arg)

    for field in msgspec.structs.fields(settings_type):
        visit(field.type)
    return found


def describe_settings(settings_type: Any) -> list[str]:
    """The lines ``ordnung plugins`` prints for a plugin's Settings Struct."""
    if not (isinstance(settings_type, type) and issubclass(settings_type, msgspec.Struct)):
        return ["  settings: none"]
    lines = ["  settings (field: type = default):"]
    lines += [f"    {field_text(f)}" for f in msgspec.structs.fields(settings_type)]
    for struct in nested_structs(settings_type):
        inner = ", ".join(field_text(f) for f in msgspec.structs.fields(struct))
        lines.append(f"    where {struct.__name__} = {{{inner}}}")
    return lines


def cmd_plugins(args: argparse.Namespace) -> int:
    """List every plugin of the entry-point group; a broken one is reported, not fatal."""
    from importlib.metadata import entry_points

    from ordnung.core.errors import PluginError
    from ordnung.core.plugin_host import ENTRY_POINT_GROUP, PluginHost

    found = sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)
    print(f"{len(found)} plugin(s) in entry-point group {ENTRY_POINT_GROUP!r}")
    host = PluginHost()
    broken = 0
    for ep in found:
        print("")
        try:
            obj = ep.load()
        except Exception as exc:
            broken += 1
            print(f"{ep.name} — cannot be imported from {ep.value}: {exc}")
            continue
        note = ""
        try:
            with quiet_logs():
                host.register(obj, name=ep.name)  # default settings, as an engine would
            host.check()
            described = next(p for p in host.describe() if p["name"] == ep.name)
            hooks: list[str] = described["hooks"]
            doc: str = described["doc"]
        except PluginError as exc:
            note = f"  not loadable without settings: {exc.detail}"
            hooks = sorted(n for n in dir(obj) if n.startswith("ordnung_")
                           and hasattr(getattr(obj, n), "ordnung_impl"))
            doc = (inspect.getdoc(obj) or "").split("\n\n")[0]
        print(ep.name + (f" — {doc}" if doc else ""))
        print("  hooks: " + (", ".join(hooks) or "(none)"))
        for line in describe_settings(getattr(obj, "Settings", None)):
            print(line)
        if note:
            print(note)
    return 1 if broken else 0


def redact(url: str) -> str:
    """Hide a password in a database URL before printing it."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def cmd_new_plugin(args: argparse.Namespace) -> int:
    """Scaffold a plugin package (entry point, Settings, one hook, kit tests)."""
    from ordnung.api.scaffold import ScaffoldError, install_hint, scaffold

    try:
        target = scaffold(args.name, Path(args.dir))
    except ScaffoldError as exc:
        print(f"ordnung new-plugin: {exc}", file=sys.stderr)
        return 2
    print(f"created {target}")
    for path in sorted(p for p in target.rglob("*") if p.is_file()):
        print(f"  {path.relative_to(target)}")
    print(f"next: {install_hint(target)}")
    return 0


# --------------------------------------------------------------------------- parser


def cmd_graphql_schema(args: argparse.Namespace) -> int:
    from ordnung.api.graphql.schema import build_schema

    schema = build_schema(introspection=True)
    if args.markdown:
        from ordnung.api.graphql.reference import markdown_reference

        print(markdown_reference(schema._schema), end="")
    else:
        print(schema.as_str())
    return 0


def cmd_hooks_doc(args: argparse.Namespace) -> int:
    from ordnung.api.hooks_doc import hook_table, with_hook_table

    if args.update:
        path = Path(args.update)
        path.write_text(with_hook_table(path.read_text(encoding="utf-8")), encoding="utf-8")
    else:
        print(hook_table(), end="")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ordnung", description="ordnung: a plugin-based headless commerce order engine.")
    parser.add_argument("--version", action="version", version=f"ordnung {package_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = commands.add_parser(
        "serve", help="serve the REST API (uvicorn)",
        description=f"Serve the REST API on {ENV_DATABASE_URL} (default sqlite:///ordnung.db "
                    "in the current directory). Migrations are applied once before the "
                    "workers start. ORDNUNG_ADMIN_KEY, if set, is an admin key with every "
                    "scope. --demo seeds a demo shop (idempotently) and prints a storefront "
                    "key and an admin key. OpenAPI docs at /schema.")
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default "
                                                          "127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--workers", type=int, default=1,
                       help="worker processes (default 1); use PostgreSQL for many")
    serve.add_argument("--demo", action="store_true",
                       help="seed the demo shop and print a storefront and an admin key")
    serve.add_argument("--database-url", metavar="URL", help=f"overrides {ENV_DATABASE_URL}")
    serve.add_argument("--log-level", default="info",
                       choices=["debug", "info", "warning", "error"], help="default info")
    serve.add_argument("--log-json", action="store_true",
                       help="log JSON lines (for log collectors) instead of text")
    serve.add_argument("--shutdown-grace", type=float, metavar="SECONDS",
                       help="seconds running requests get to finish when the server is "
                            "stopped; open event streams end at once (overrides "
                            "ORDNUNG_SHUTDOWN_GRACE_SECONDS, default 10)")
    serve.set_defaults(handler=cmd_serve)

    demo = commands.add_parser(
        "demo", help="run one order's whole life on a demo shop and print it",
        description="Seed a small shop, place an order, pay, ship, deliver, return and "
                    "refund it, and print the order, its pricing, timeline and stock. "
                    "Uses sqlite:///ordnung-demo.db in the current directory (recreated "
                    f"each run) unless {ENV_DATABASE_URL} or --database-url is given.")
    demo.add_argument("--database-url", metavar="URL",
                      help="sqlite:///path or postgresql://... (use an empty database)")
    demo.set_defaults(handler=cmd_demo)

    migrate = commands.add_parser(
        "migrate", help="apply database migrations",
        description=f"Apply pending migrations to {ENV_DATABASE_URL} "
                    "(default sqlite:///ordnung.db) and print what was applied.")
    migrate.add_argument("--database-url", metavar="URL",
                         help=f"overrides {ENV_DATABASE_URL}")
    migrate.set_defaults(handler=cmd_migrate)

    housekeeping = commands.add_parser(
        "housekeeping", help="delete what is kept only for a while, once, now",
        description=f"Run one housekeeping pass on {ENV_DATABASE_URL} (default "
                    "sqlite:///ordnung.db) with the same ORDNUNG_* settings as serve "
                    "(retentions, batch size): delete expired rate-limit counters, "
                    "Idempotency-Key records, sessions and tokens, abandoned carts and "
                    "outbox rows, and print the rows deleted by kind. Does nothing while "
                    "another process (a running server) holds the housekeeping lease.")
    housekeeping.add_argument("--database-url", metavar="URL",
                              help=f"overrides {ENV_DATABASE_URL}")
    housekeeping.set_defaults(handler=cmd_housekeeping)

    plugins = commands.add_parser(
        "plugins", help="list installed plugins, their hooks and settings",
        description="List the plugins discovered in the 'ordnung' entry-point group with "
                    "the hooks they implement and their default settings. Needs no database.")
    plugins.set_defaults(handler=cmd_plugins)
    new_plugin = commands.add_parser(
        "new-plugin", help="scaffold a plugin package to start from",
        description="Write NAME/ (in --dir, default the current directory): a "
                    "pyproject.toml registering the plugin in the 'ordnung' entry-point "
                    "group, a plugin class with a Settings Struct and one hook, and tests "
                    "using ordnung.testing (the conformance kit) that pass as written.")
    new_plugin.add_argument("name", metavar="NAME",
                            help="plugin (entry-point and package) name, e.g. acme_bonus")
    new_plugin.add_argument("--dir", default=".", metavar="PATH",
                            help="folder to create NAME/ in (default: current directory)")
    new_plugin.set_defaults(handler=cmd_new_plugin)
    graphql_schema = commands.add_parser(
        "graphql-schema", help="print the GraphQL schema (SDL)",
        description="Print the GraphQL API's schema in SDL, as committed in "
                    "schema.graphql. Needs no database.")
    graphql_schema.add_argument("--markdown", action="store_true",
                                help="print the schema reference in Markdown instead, as "
                                     "committed in docs/graphql.md")
    graphql_schema.set_defaults(handler=cmd_graphql_schema)
    hooks_doc = commands.add_parser(
        "hooks-doc", help="print the hook table of docs/hooks.md",
        description="Print every hook's convention, phase and answer type as its spec in "
                    "core/hookspecs.py declares them: the table committed in docs/hooks.md. "
                    "Needs no database.")
    hooks_doc.add_argument("--update", metavar="PATH",
                           help="replace the generated table in PATH (docs/hooks.md) instead")
    hooks_doc.set_defaults(handler=cmd_hooks_doc)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Callable[[argparse.Namespace], int] | None = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    from ordnung.api.startup_errors import describe_database_error
    from ordnung.core.errors import ConfigError, OrdnungError

    # piccolo warns when it cannot read the server's version; the error that follows
    # says what is wrong, once
    warnings.filterwarnings("ignore", message=r".*Unable to fetch server version")

    try:
        return handler(args)
    except ConfigError as exc:
        print(f"ordnung {args.command}: {exc.detail}", file=sys.stderr)
        return 2
    except OrdnungError as exc:
        print(f"ordnung {args.command}: {exc.detail}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # e.g. `ordnung demo | head`: the reader has gone, stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except Exception as exc:
        url = getattr(args, "database_url", None) or os.environ.get(ENV_DATABASE_URL) or ""
        line = describe_database_error(exc, url, redact(url)) if url else None
        if line is None:
            raise
        print(f"ordnung {args.command}: {line}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
