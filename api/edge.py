"""The outermost ASGI layer: what every request gets before and after everything else.

Three duties, each explained in its own module, share this one layer:

- **the request's id and its log line** (``ordnung.api.logging_middleware``): every
  answer carries ``x-request-id``, every line logged meanwhile is bound to it, and one
  line per request says how it ended;
- **the HTTP metrics** (``ordnung.api.metrics``): every answer counted and timed by
  route and status;
- **draining** (``ordnung.api.draining``): once the server stops, a response that still
  listens to its client (a stream) hears ``http.disconnect`` and is ended cleanly.

They sit outside litestar's exception handling, because only there is every answer
seen as the client sees it (a 401 from authentication, a 404 for a path no route
serves). They are one layer rather than three because each layer costs every request
a coroutine and a wrapped ``send``: merged, the three cost a third less.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import structlog
from litestar.types import ASGIApp

from ordnung.api.asgi import Message, Receive, Scope, Send
from ordnung.api.draining import SHUTDOWN, ShutdownSignal
from ordnung.api.logging_middleware import REQUEST_ID, request_id_of
from ordnung.api.metrics import METHODS, RequestSeries, record_pool, route_of
from ordnung.core import Engine

log = structlog.get_logger("ordnung.http")

_clear = structlog.contextvars.clear_contextvars
_bind = structlog.contextvars.bind_contextvars


class EdgeMiddleware:
    """Request id and log line, metrics, and draining, around the whole application."""

    def __init__(self, app: ASGIApp, signal: ShutdownSignal = SHUTDOWN) -> None:
        self.app: Any = app
        self.signal = signal
        self.series = RequestSeries()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        status = 0
        started = finished = False
        began = time.perf_counter()

        async def send_out(message: Message) -> None:
            nonlocal status, started, finished
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]
                started = True
                message["headers"] = [*message.get("headers", []),
                                      (REQUEST_ID, request_id.encode())]
            elif kind == "http.response.body" and not message.get("more_body"):
                finished = True
            await send(message)

        async def receive_or_drain() -> Message:
            if not started:  # still reading its request: the grace period covers it
                return await receive()
            return await self._drained(receive)

        _clear()
        _bind(request_id=request_id)
        try:
            await self.app(scope, receive_or_drain, send_out)
            if started and not finished and self.signal.begun:
                # the stream was stopped for the shutdown: close its body properly
                await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            seconds = time.perf_counter() - began
            method = scope["method"] if scope["method"] in METHODS else "other"
            self.series.observe(method, route_of(scope), status or 500, seconds)
            engine = getattr(getattr(scope.get("app"), "state", None), "engine", None)
            if isinstance(engine, Engine) and engine.db.engine is not None:
                record_pool(engine)
            # status None: no answer was started (the connection ended first)
            log.info("request", method=scope["method"], path=scope["path"],
                     status=status or None, ms=round(seconds * 1000, 1))
            _clear()

    async def _drained(self, receive: Receive) -> Message:
        """The client's next message, or ``http.disconnect`` once the server stops."""
        if self.signal.begun:
            return {"type": "http.disconnect"}
        client = asyncio.ensure_future(receive())
        stopping = asyncio.ensure_future(self.signal.wait())
        try:
            await asyncio.wait({client, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if client.done():
            return client.result()
        client.cancel()
        return {"type": "http.disconnect"}
