"""Plain ASGI types for the raw middlewares (they handle HTTP and pass the rest through)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def replaying(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the app the body a middleware has read already, once, and
    then whatever the client sends next (its disconnect)."""
    delivered = False

    async def replay() -> Message:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
