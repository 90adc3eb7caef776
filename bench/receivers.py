"""Webhook receivers for ``--webhooks N``: N-1 answer 204 at once, the last one is down."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

import httpx

from bench.server import free_port


class Receivers:
    def __init__(self, count: int) -> None:
        self.count = count
        self.received = 0
        self._lock = threading.Lock()
        self._servers: list[ThreadingHTTPServer] = []
        self.urls: list[str] = []

    async def __aenter__(self) -> Receivers:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", "0")))
                with outer._lock:
                    outer.received += 1
                self.send_response(204)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        for _ in range(max(self.count - 1, 0)):
            httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
            httpd.daemon_threads = True
            threading.Thread(target=httpd.serve_forever, daemon=True).start()
            self._servers.append(httpd)
            self.urls.append(f"http://127.0.0.1:{httpd.server_address[1]}/hook")
        if self.count:
            self.urls.append(f"http://127.0.0.1:{free_port()}/down")
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        for httpd in self._servers:
            httpd.shutdown()
            httpd.server_close()

    async def register(self, base_url: str, admin: dict[str, str]) -> None:
        async with httpx.AsyncClient(base_url=base_url, headers=admin, timeout=30) as client:
            for url in self.urls:
                response = await client.post("/admin/webhooks", json={
                    "url": url, "event_types": ["*"], "description": "bench"})
                response.raise_for_status()

    def delivered(self) -> int:
        with self._lock:
            return self.received
