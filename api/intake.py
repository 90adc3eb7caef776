"""Request intake: every request body is read whole, within limits, before anything runs.

One ASGI layer in front of authentication, idempotency and the handlers, so that
no later layer can read more than the limits allow (whether or not the request
carries an ``Idempotency-Key``):

- **size**: a ``Content-Length`` above ``max_body_bytes`` is refused before a byte
  of the body is read; a body without one (chunked) is counted as it arrives and
  refused as soon as it passes the limit — 413 ``request-too-large``;
- **truncation**: a client that disconnects before its body is complete has sent
  no request: nothing runs, nothing is stored;
- **time**: a body that has not arrived ``body_timeout_seconds`` after the headers
  is refused — 408 ``request-timeout`` (a slow client cannot hold a worker);
- **depth**: a JSON body nested deeper than ``max_json_depth`` is refused before it
  is decoded — 422 ``validation`` (a decoder would recurse once per level).

The layers behind it receive the body as one message.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import msgspec
import structlog
from litestar.types import ASGIApp

from ordnung.api.asgi import Receive, Scope, Send, replaying
from ordnung.api.settings import HttpSettings

log = structlog.get_logger("ordnung.http")

PROBLEM_BASE = "https://ordnung.dev/problems/"
#: methods whose requests carry no body unless they say so (Content-Length or
#: Transfer-Encoding); their receive channel is passed through untouched
_BODILESS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_OPEN = frozenset(b"[{")
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")


def json_too_deep(body: bytes, limit: int) -> bool:
    """True if arrays and objects in ``body`` nest deeper than ``limit`` (brackets inside
    strings do not count). Linear, without decoding anything."""
    if body.count(b"[") + body.count(b"{") <= limit:
        return False
    depth = 0
    for byte in _STRING.sub(b"", body).translate(None, _NOT_BRACKETS):
        if byte in _OPEN:
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


async def send_problem(send: Send, status: int, kind: str, title: str, detail: str,
                       headers: list[tuple[bytes, bytes]] | None = None) -> None:
    """An RFC 9457 problem straight onto the ASGI channel (these layers sit in front of
    the framework's own error handling)."""
    body = msgspec.json.encode({"type": PROBLEM_BASE + kind, "title": title,
                                "status": status, "detail": detail})
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/problem+json"),
        (b"content-length", str(len(body)).encode()), *(headers or [])]})
    await send({"type": "http.response.body", "body": body})


def _is_json(headers: dict[bytes, bytes]) -> bool:
    content_type = headers.get(b"content-type", b"").lower()
    return not content_type or b"json" in content_type


class RequestIntakeMiddleware:
    def __init__(self, app: ASGIApp, settings: HttpSettings | None = None) -> None:
        self.app: Any = app
        self.settings = settings or HttpSettings.from_env()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        declared = headers.get(b"content-length")
        if declared is None and b"transfer-encoding" not in headers \
                and scope["method"] in _BODILESS:
            await self.app(scope, receive, send)
            return
        limit = self.settings.max_body_bytes
        close = [(b"connection", b"close")]
        if declared is not None:
            try:
                length = int(declared)
            except ValueError:
                length = -1
            if length < 0:
                await send_problem(send, 422, "validation", "The request is not valid",
                                   "Content-Length must be a non-negative integer", close)
                return
            if length > limit:
                await send_problem(send, 413, "request-too-large",
                                   "The request body is too large",
                                   f"the body may be at most {limit} bytes "
                                   f"(Content-Length says {length})", close)
                return
        body = await self._read(scope, receive, send, limit)
        if body is None:
            return
        depth = self.settings.max_json_depth
        if body and _is_json(headers) and json_too_deep(body, depth):
            await send_problem(send, 422, "validation", "The request is not valid",
                               f"the JSON body nests arrays and objects deeper than {depth} "
                               "levels")
            return
        await self.app(scope, replaying(body, receive), send)

    async def _read(self, scope: Scope, receive: Receive, send: Send,
                    limit: int) -> bytes | None:
        """The whole body, or None once the request was answered (or the client left)."""
        chunks: list[bytes] = []
        size = 0
        timeout = self.settings.body_timeout_seconds
        close = [(b"connection", b"close")]
        try:
            async with asyncio.timeout(timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        log.info("client disconnected before its body was complete; "
                                 "nothing was run", path=scope["path"], received=size)
                        return None
                    chunk = message.get("body", b"")
                    size += len(chunk)
                    if size > limit:
                        await send_problem(send, 413, "request-too-large",
                                           "The request body is too large",
                                           f"the body may be at most {limit} bytes", close)
                        return None
                    chunks.append(chunk)
                    if not message.get("more_body"):
                        return b"".join(chunks)
        except TimeoutError:
            await send_problem(send, 408, "request-timeout",
                               "The request body did not arrive in time",
                               f"the whole body must arrive within {timeout:g} seconds",
                               close)
            return None
