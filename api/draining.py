"""Shutdown that does not wait for long-lived responses.

An order-event stream (server-sent events) stays open for minutes; uvicorn, asked
to stop, waits for every open response to end, so one follower could hold a
``SIGTERM`` for as long as it liked. Here the server announces its shutdown
(``SHUTDOWN.begin()``, called by ``ordnung.api.supervisor.DrainingServer``) and
``DrainMiddleware`` turns it into what a streaming response already listens for: the
client's ``http.disconnect``. The stream stops, the middleware ends the response
cleanly (the last, empty chunk) and uvicorn closes the connection. Requests that are
still reading their body or computing their answer are not touched: they get the
shutdown grace period (``shutdown_grace_seconds``) to finish.
"""

from __future__ import annotations

import asyncio
from typing import Any

from ordnung.api.asgi import Message, Receive, Scope, Send


class ShutdownSignal:
    """Process-wide: has this server begun to stop? Awaitable from any event loop."""

    def __init__(self) -> None:
        self.begun = False
        self._waiters: set[asyncio.Future[None]] = set()

    def begin(self) -> None:
        self.begun = True
        for waiter in list(self._waiters):
            if not waiter.done():
                waiter.get_loop().call_soon_threadsafe(_resolve, waiter)

    async def wait(self) -> None:
        if self.begun:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            await waiter
        finally:
            self._waiters.discard(waiter)


def _resolve(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


SHUTDOWN = ShutdownSignal()


class DrainMiddleware:
    """Outermost ASGI layer: once the server stops, a response that has started and
    still listens to its client (a stream) hears ``http.disconnect`` and is ended."""

    def __init__(self, app: Any, signal: ShutdownSignal = SHUTDOWN) -> None:
        self.app = app
        self.signal = signal

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = finished = False

        async def watched_send(message: Message) -> None:
            nonlocal started, finished
            if message["type"] == "http.response.start":
                started = True
            elif message["type"] == "http.response.body" and not message.get("more_body"):
                finished = True
            await send(message)

        async def receive_or_drain() -> Message:
            if not started:  # still reading its request: the grace period covers it
                return await receive()
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

        await self.app(scope, receive_or_drain, watched_send)
        if started and not finished and self.signal.begun:
            # the stream was stopped for the shutdown: close its body properly
            await send({"type": "http.response.body", "body": b"", "more_body": False})
