"""Health endpoints for load balancers and orchestrators.

- ``/health/live``: the process serves HTTP. It touches nothing else, so a database
  outage never gets a healthy process restarted (liveness must not depend on
  dependencies).
- ``/health/ready``: this process can do its work: the database answers within
  ``READY_TIMEOUT_S``, it has no migration pending, and how many events wait for
  their reactions (the outbox backlog, reported, not judged). ``503`` with
  ``Retry-After`` when not ready, so traffic goes elsewhere meanwhile.
- ``/health``: the original combined check (the database answers), kept for
  existing probes; ``503 database-unavailable`` when it does not.
"""

from __future__ import annotations

import time
from typing import Any

from litestar import Request, Response
from litestar.openapi.datastructures import ResponseSpec

from ordnung.api.routes.handlers import get
from ordnung.core import Engine
from ordnung.core.errors import DatabaseUnavailable

#: seconds the readiness probe waits for the database
READY_TIMEOUT_S = 2.0


def _engine(request: Request[Any, Any, Any]) -> Engine:
    engine: Engine = request.app.state.engine
    return engine


@get("/health", tags=["health"], exclude_from_auth=True)
async def health(request: Request[Any, Any, Any]) -> dict[str, str]:
    """The database answers (503 ``database-unavailable`` when it does not in time)."""
    engine = _engine(request)
    await engine.db.probe(READY_TIMEOUT_S)
    return {"status": "ok", "database": engine.db.kind}


@get("/health/live", tags=["health"], exclude_from_auth=True, opt={"database": False})
async def live() -> dict[str, str]:
    """The process is serving (always 200 while it is)."""
    return {"status": "ok"}


@get("/health/ready", tags=["health"], exclude_from_auth=True, opt={"database": False},
     responses={503: ResponseSpec(data_container=dict[str, Any], generate_examples=False,
                                  description="Not ready: the same report, with status "
                                              "not-ready and a Retry-After header")})
async def ready(request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
    """The database answers and is up to date: 200, else 503 with ``Retry-After``. The
    body reports each dependency: ``database`` (kind, reachable, latency or error),
    ``migrations`` (pending ids) and ``outbox`` (undelivered events)."""
    engine = _engine(request)
    started = time.monotonic()
    database: dict[str, Any] = {"kind": engine.db.kind}
    body: dict[str, Any] = {"status": "ready", "database": database}
    try:
        await engine.db.probe(READY_TIMEOUT_S)
        database.update(reachable=True,
                        latency_ms=round((time.monotonic() - started) * 1000, 1))
        pending = await engine.db.pending_migrations()
        backlog = await engine.runtime.journal.pending_count()
    except DatabaseUnavailable as exc:
        database.update(reachable=False, error=exc.detail)
        body["status"] = "not-ready"
        return Response(body, status_code=503, headers={"Retry-After": str(exc.retry_after)})
    body["migrations"] = {"pending": pending}
    body["outbox"] = {"backlog": backlog}
    if pending:
        body["status"] = "not-ready"
        return Response(body, status_code=503, headers={"Retry-After": "5"})
    return Response(body, status_code=200)
