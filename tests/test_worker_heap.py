"""A started worker keeps what it holds for good out of the garbage collector's walks.

Without it, each full collection walks the whole started app (about 150,000 objects)
and holds the worker's event loop for about 100 ms (``bench placement``: three such
pauses in ten seconds, 0.3 s of the worker's CPU; ``BENCHMARKS.md``).
"""

from __future__ import annotations

import gc

import pytest

from ordnung.api import serve
from ordnung.api.serve import worker_app


async def test_a_worker_settles_its_heap_once_it_has_started(
        database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDNUNG_DATABASE_URL", database_url)
    # a worker's logging is configured for good (cached loggers): not this test process's
    monkeypatch.setattr(serve, "configure_from_env", lambda: None)
    app = worker_app()
    gc.unfreeze()
    try:
        async with app.lifespan():
            assert app.state.engine is not None  # started: what it holds is there
            frozen = gc.get_freeze_count()
            # the app, its engine and its plugins are among what no collection walks
            assert frozen > 10_000
            assert len(gc.get_objects()) < frozen / 4  # what a collection still walks
    finally:
        gc.unfreeze()
