"""``Idempotency-Key`` for every POST: replay the first response, never a second effect.

The key is scoped to the calling API key. The first request stores a
*pending* record before it runs; a concurrent duplicate finds it and gets 409
(it never runs the handler). The handler's status and body are stored before
the last of the answer goes out (a client that has its answer never finds the
key pending) and replayed for every repeat with the same body; the same key
with a different body answers 422. A 5xx answer is not stored, so the client
may retry; engine-level idempotency (placements) and in-flight payment marks
still stop a second effect if the first attempt got further than it said.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import msgspec
from litestar.types import ASGIApp

from ordnung.api.asgi import Message, Receive, Scope, Send
from ordnung.core.domain.access import Principal
from ordnung.core.domain.common import utcnow
from ordnung.core.errors_db import is_unique_violation
from ordnung.core.persistence.tables import HttpIdempotencyRow

HEADER = b"idempotency-key"
MAX_KEY = 200
#: a pending record older than this is treated as abandoned (its worker died); longer than
#: the engine's RESUME_AUTHORIZATION_AFTER, so the repeat that gets through may finish a
#: placement whose authorization the dead worker left in flight
STALE = timedelta(minutes=2)


def _problem(status: int, kind: str, detail: str) -> tuple[int, bytes]:
    body = msgspec.json.encode({"type": f"https://ordnung.dev/problems/{kind}",
                                "title": kind.replace("-", " "), "status": status,
                                "detail": detail})
    return status, body


async def _send_raw(send: Send, status: int, body: bytes, content_type: str,
                    replayed: bool = False) -> None:
    headers = [(b"content-type", content_type.encode()),
               (b"content-length", str(len(body)).encode())]
    if replayed:
        headers.append((b"idempotent-replayed", b"true"))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


class IdempotencyMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app: Any = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        header = dict(scope["headers"]).get(HEADER)
        principal = scope.get("user")
        if header is None or not isinstance(principal, Principal):
            await self.app(scope, receive, send)
            return
        raw_key = header.decode("latin-1").strip()
        if not raw_key or len(raw_key) > MAX_KEY:
            status, body = _problem(422, "validation",
                                    f"Idempotency-Key must be 1 to {MAX_KEY} characters")
            await _send_raw(send, status, body, "application/problem+json")
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = bool(message.get("more_body"))
        body_bytes = b"".join(chunks)
        fingerprint = hashlib.sha256(scope["path"].encode() + b"\n" + scope.get(
            "query_string", b"") + b"\n" + body_bytes).hexdigest()
        key = f"{principal.key_id}:{raw_key}"

        claimed = await self._claim(key, fingerprint)
        if claimed is not None:
            status, content_type, stored, replayed = claimed
            await _send_raw(send, status, stored, content_type, replayed=replayed)
            return

        replayed_body = False

        async def replay_receive() -> Message:
            nonlocal replayed_body
            if not replayed_body:
                replayed_body = True
                return {"type": "http.request", "body": body_bytes, "more_body": False}
            return await receive()

        captured: dict[str, Any] = {"status": 500, "content_type": "", "body": [],
                                    "stored": False}

        async def store() -> None:
            captured["stored"] = True
            await HttpIdempotencyRow.update({
                HttpIdempotencyRow.state: "done",
                HttpIdempotencyRow.status: captured["status"],
                HttpIdempotencyRow.content_type: captured["content_type"],
                HttpIdempotencyRow.body: b"".join(captured["body"]).decode("utf-8", "replace"),
            }).where(HttpIdempotencyRow.key == key).run()

        async def capture_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
                for name, value in message.get("headers", []):
                    if name.lower() == b"content-type":
                        captured["content_type"] = value.decode("latin-1")
            elif message["type"] == "http.response.body":
                captured["body"].append(message.get("body", b""))
                if not message.get("more_body") and captured["status"] < 500:
                    # stored before the client has the whole answer: a repeat it sends
                    # afterwards replays it, never finds the key still pending
                    await store()
            await send(message)

        try:
            await self.app(scope, replay_receive, capture_send)
        except BaseException:
            if not captured["stored"]:
                await self._forget(key)
            raise
        if captured["status"] >= 500:
            await self._forget(key)
        elif not captured["stored"]:
            await store()

    async def _claim(self, key: str, fingerprint: str) -> tuple[int, str, bytes, bool] | None:
        """None if we may run the request; else the response to send instead."""
        for _ in range(3):
            try:
                await HttpIdempotencyRow.insert(HttpIdempotencyRow(
                    key=key, fingerprint=fingerprint, state="pending", status=0,
                    content_type="", body="", created_at=utcnow())).run()
                return None
            except Exception as exc:
                if not is_unique_violation(exc):
                    raise
            rows = await HttpIdempotencyRow.select().where(HttpIdempotencyRow.key == key).run()
            if not rows:
                continue
            row = rows[0]
            if row["fingerprint"] != fingerprint:
                status, body = _problem(422, "idempotency-mismatch",
                                        "this Idempotency-Key was already used with a "
                                        "different request")
                return status, "application/problem+json", body, False
            if row["state"] == "done":
                return row["status"], row["content_type"], row["body"].encode(), True
            if utcnow() - row["created_at"] > STALE:
                await HttpIdempotencyRow.delete().where(
                    (HttpIdempotencyRow.key == key) & (HttpIdempotencyRow.state == "pending")
                ).run()
                continue
            status, body = _problem(409, "conflict", "a request with this Idempotency-Key "
                                                     "is still being processed; retry later")
            return status, "application/problem+json", body, False
        status, body = _problem(409, "conflict", "could not claim the Idempotency-Key")
        return status, "application/problem+json", body, False

    @staticmethod
    async def _forget(key: str) -> None:
        await HttpIdempotencyRow.delete().where(
            (HttpIdempotencyRow.key == key) & (HttpIdempotencyRow.state == "pending")).run()
