"""Shutdown that does not wait for long-lived responses.

An order-event stream (server-sent events) stays open for minutes; uvicorn, asked
to stop, waits for every open response to end, so one follower could hold a
``SIGTERM`` for as long as it liked. Here the server announces its shutdown
(``SHUTDOWN.begin()``, called by ``ordnung.api.supervisor.DrainingServer``) and
the outermost layer (``ordnung.api.edge``) turns it into what a streaming response
already listens for: the client's ``http.disconnect``. The stream stops, that layer
ends the response cleanly (the last, empty chunk) and uvicorn closes the connection.
Requests that are still reading their body or computing their answer are not
touched: they get the shutdown grace period (``shutdown_grace_seconds``) to finish.
"""

from __future__ import annotations

import asyncio


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
