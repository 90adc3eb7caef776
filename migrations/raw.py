"""What every migration here shares: portable statements, run by the engine's runner.

``Database.migrate`` (called by ``ordnung migrate`` and by every engine's start) calls
each migration module's ``apply(db)`` inside its one locked transaction, in ``ID``
order, and records the ids it applied in the ``migration`` table.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ordnung.core.persistence.database import Database


async def run_statements(db: Database, statements: Sequence[str]) -> None:
    for statement in statements:
        await db.run(statement)
