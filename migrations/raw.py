"""What every migration here shares: portable DDL statements, run by either runner.

The engine's own runner calls a migration module's ``apply(engine)`` inside its
locked transaction; piccolo's ``piccolo migrations forwards ordnung`` calls its
``forwards()``, which wraps the same statements in a ``MigrationManager``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from piccolo.apps.migrations.auto.migration_manager import MigrationManager
from piccolo.engine import engine_finder
from piccolo.engine.base import Engine

APP_NAME = "ordnung"


async def run_statements(engine: Engine, statements: Sequence[str]) -> None:
    for statement in statements:
        await engine.run_ddl(statement)


def piccolo_forwards(migration_id: str, description: str,
                     apply: Callable[[Engine], Awaitable[None]]) -> MigrationManager:
    """A piccolo ``MigrationManager`` that runs ``apply`` on piccolo's configured engine."""
    manager = MigrationManager(migration_id=migration_id, app_name=APP_NAME,
                               description=description)

    async def run() -> None:
        engine = engine_finder()
        assert engine is not None, "piccolo_conf must name an engine"
        await apply(engine)

    manager.add_raw(run)
    return manager
