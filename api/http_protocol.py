"""uvicorn's HTTP/1.1 protocol (httptools) with a deadline for a request's headers.

uvicorn times out a connection that stays idle after a response (``timeout_keep_alive``)
and ``ordnung.api.intake`` one whose body is slow, but nothing times out a client that
opens a connection and sends nothing, or its headers a byte at a time (slowloris):
such a connection holds its socket and its place among the ``max_connections`` for
ever. Here every request's headers must be complete ``header_timeout_seconds`` after
the connection opened or the previous response ended; otherwise the client gets
``408 request-timeout`` (if it sent part of a request) and the connection is closed.
"""

from __future__ import annotations

import asyncio
from functools import cache
from typing import Any

import msgspec
import structlog
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

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


@cache
def header_timeout() -> float:
    """``ORDNUNG_HEADER_TIMEOUT_SECONDS`` of this worker (read once)."""
    return HttpSettings.from_env().header_timeout_seconds


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
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self.arm_header_deadline()  # for the next request on this connection

    def connection_lost(self, exc: Exception | None) -> None:
        self.disarm_header_deadline()
        super().connection_lost(exc)
