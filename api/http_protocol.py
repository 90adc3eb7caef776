"""uvicorn's HTTP/1.1 protocol (httptools) with a deadline for a request's headers and
a cap on the connections one worker serves.

uvicorn times out a connection that stays idle after a response (``timeout_keep_alive``)
and ``ordnung.api.intake`` one whose body is slow, but nothing times out a client that
opens a connection and sends nothing, or its headers a byte at a time (slowloris):
such a connection holds its socket and its place among the ``max_connections`` for
ever. Here every request's headers must be complete ``header_timeout_seconds`` after
the connection opened or the previous response ended; otherwise the client gets
``408 request-timeout`` (if it sent part of a request) and the connection is closed.

A request that arrives while the worker already holds more than ``max_connections``
connections (or runs that many requests) is answered at once with ``503
server-busy`` and ``Retry-After`` (uvicorn's own ``limit_concurrency`` answers in
plain text, and counts the connection that asks as one too many).
"""

from __future__ import annotations

import asyncio
from functools import cache
from typing import Any

import msgspec
import structlog
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from ordnung.api.asgi import Receive, Scope, Send
from ordnung.api.intake import send_problem
from ordnung.api.settings import HttpSettings

log = structlog.get_logger("ordnung.http")

PROBLEM = msgspec.json.encode({
    "type": "https://ordnung.dev/problems/request-timeout",
    "title": "The request headers did not arrive in time", "status": 408,
    "detail": "a request's headers must arrive within the header timeout"})
TIMEOUT_RESPONSE = (b"HTTP/1.1 408 Request Timeout\r\n"
                    b"content-type: application/problem+json\r\n"
                    b"content-length: " + str(len(PROBLEM)).encode() + b"\r\n"
                    b"connection: close\r\n\r\n" + PROBLEM)


#: seconds a client turned away at the connection cap is told to wait
BUSY_RETRY_AFTER = 1


@cache
def settings() -> HttpSettings:
    """This worker's HTTP settings (read once)."""
    return HttpSettings.from_env()


def header_timeout() -> float:
    return settings().header_timeout_seconds


async def server_busy(scope: Scope, receive: Receive, send: Send) -> None:
    """The answer beyond the connection cap (the request is not run)."""
    await send_problem(send, 503, "server-busy", "The server is busy",
                       f"this worker already serves {settings().max_connections} "
                       "connections; try again shortly",
                       [(b"retry-after", str(BUSY_RETRY_AFTER).encode()),
                        (b"connection", b"close")])


class TimedHttpToolsProtocol(HttpToolsProtocol):
    """One connection; closed when a request's headers do not arrive in time."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_deadline: asyncio.TimerHandle | None = None
        self.partial = False  # some bytes of the awaited request have arrived

    def arm_header_deadline(self) -> None:
        self.disarm_header_deadline()
        self.partial = False
        self.header_deadline = self.loop.call_later(header_timeout(), self.headers_too_late)

    def disarm_header_deadline(self) -> None:
        if self.header_deadline is not None:
            self.header_deadline.cancel()
            self.header_deadline = None

    def headers_too_late(self) -> None:
        self.header_deadline = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            return  # a request is running: its headers did arrive
        log.info("headers not received in time; connection closed",
                 client=self.client, partial=self.partial)
        if self.partial:
            self.transport.write(TIMEOUT_RESPONSE)
        self.transport.close()

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.arm_header_deadline()

    def data_received(self, data: bytes) -> None:
        if self.header_deadline is not None:
            self.partial = True
        super().data_received(data)

    def on_headers_complete(self) -> None:
        self.disarm_header_deadline()
        limit = settings().max_connections
        if len(self.connections) <= limit and len(self.tasks) < limit:
            super().on_headers_complete()
            return
        log.warning("connection limit reached; request refused", limit=limit,
                    connections=len(self.connections))
        app, self.app = self.app, server_busy
        try:
            super().on_headers_complete()
        finally:
            self.app = app

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self.arm_header_deadline()  # for the next request on this connection

    def connection_lost(self, exc: Exception | None) -> None:
        self.disarm_header_deadline()
        super().connection_lost(exc)
