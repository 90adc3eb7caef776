"""``Idempotency-Key`` for every POST: the REST adapter over the engine's idempotency service.

The rules live in ``ordnung.core.services.idempotency``; this layer maps them to
HTTP. The key is scoped to the calling API key (and to the cart token a guest sends,
see ``key_scope``). The request is identified by its
method, path, query and *decoded* JSON body (another serialisation of the same
JSON — whitespace, escapes, key order — is the same request). A repeat of a
finished request replays its answer (``Idempotent-Replayed: true``); a repeat
while the first still runs gets 409 ``conflict`` with ``Retry-After``; the same
key with another request gets 422 ``idempotency-mismatch``.

The answer is handed to the engine before the last of it goes out, so a client
that has its answer never finds the key still pending. The body arrives whole
and within its limits from ``ordnung.api.intake``: a truncated or oversized
request never reaches this layer.
"""

from __future__ import annotations

import hashlib
from typing import Any

import msgspec
from litestar.types import ASGIApp

from ordnung.api.asgi import Message, Receive, Scope, Send, replaying
from ordnung.api.auth import confirmed
from ordnung.api.intake import send_problem
from ordnung.core.domain.access import Principal
from ordnung.core.services.idempotency import Busy, Claim, Mismatch, Proceed, Replay

HEADER = b"idempotency-key"
CART_TOKEN = b"x-cart-token"
MAX_KEY = 200
#: response headers kept with an answer and replayed with it
REPLAYED_HEADERS = frozenset({b"content-type", b"location"})


def key_scope(principal: Principal, scope: Scope) -> str:
    """Whose keys these are: the calling key's, and with a cart token also the token's.

    A publishable storefront key is shared by every visitor of the shop, and the stored
    answer is replayed here, before the cart route checks the token: without the
    token in the scope, anyone repeating another visitor's Idempotency-Key and body
    would be handed that visitor's order."""
    token = dict(scope["headers"]).get(CART_TOKEN)
    if not token:
        return principal.key_id
    return f"{principal.key_id}:{hashlib.sha256(token).hexdigest()[:32]}"


def request_fingerprint(scope: Scope, body: bytes) -> str:
    """What makes two requests the same request: method, path, query and the decoded
    body (re-encoded with sorted keys), or the raw body if it is not JSON."""
    try:
        canonical = msgspec.json.encode(msgspec.json.decode(body), order="sorted") \
            if body else b""
    except (msgspec.DecodeError, msgspec.EncodeError):
        canonical = body
    digest = hashlib.sha256()
    for part in (scope["method"].encode(), scope["path"].encode(),
                 scope.get("query_string", b""), canonical):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.hexdigest()


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body"):
            return b"".join(chunks)


async def _answer_without_running(send: Send, begun: Replay | Mismatch | Busy) -> None:
    """A repeat: the kept answer, or why the request cannot run now."""
    if isinstance(begun, Replay):
        answer = begun.answer
        headers = [(name.encode("latin-1"), value.encode("latin-1"))
                   for name, value in answer.headers]
        await send({"type": "http.response.start", "status": answer.status, "headers": [
            *headers, (b"content-length", str(len(answer.body)).encode()),
            (b"idempotent-replayed", b"true")]})
        await send({"type": "http.response.body", "body": answer.body})
    elif isinstance(begun, Mismatch):
        await send_problem(send, 422, "idempotency-mismatch",
                           "Idempotency key reused with another request",
                           "this Idempotency-Key was already used with a different request")
    else:
        await send_problem(send, 409, "conflict", "Conflict with the current state",
                           "a request with this Idempotency-Key is still being processed; "
                           "retry later", [(b"retry-after", str(begun.retry_after).encode())])


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
            await send_problem(send, 422, "validation", "The request is not valid",
                               f"Idempotency-Key must be 1 to {MAX_KEY} characters")
            return
        body = await _read_body(receive)
        engine = scope["app"].state.engine
        begun = await engine.idempotency.begin(f"{key_scope(principal, scope)}:{raw_key}",
                                               request_fingerprint(scope, body))
        if not isinstance(begun, Proceed):
            # a kept answer goes only to a credential that is still good
            await confirmed(scope, principal)
            await _answer_without_running(send, begun)
            return
        await self._run(begun.claim, scope, body, receive, send)

    async def _run(self, claim: Claim, scope: Scope, body: bytes, receive: Receive,
                   send: Send) -> None:
        """Run the request under its claim, handing its answer to the claim as it goes."""
        status = 500
        kept: list[tuple[str, str]] = []
        chunks: list[bytes] = []

        async def capture_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                kept.extend((name.decode("latin-1").lower(), value.decode("latin-1"))
                            for name, value in message.get("headers", [])
                            if name.lower() in REPLAYED_HEADERS)
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
                if not message.get("more_body"):
                    # kept (or the key given back) before the client has the whole answer:
                    # a repeat it sends afterwards never finds the key still pending
                    await claim.finish(status, kept, b"".join(chunks))
            await send(message)

        async with claim.running():
            await self.app(scope, replaying(body, receive), capture_send)
