"""Confirming a credential the worker kept, as late as is safe and usually for free.

``BearerAuthMiddleware`` may take the caller's key or token from what this worker kept
(``ordnung.core.services.access``); it must be known current before the request changes
anything or answers. The generation that says so rides on a statement the request runs
anyway (``ordnung.core.persistence.generations``):

* a write's rate-limit count or its Idempotency-Key claim, which run before the route:
  the credential is confirmed before the route runs, as if it had been looked up;
* otherwise a statement the route makes anyway: the read of its cart (or the save of
  the worker's copy of it, which writes only if the generations are still those the
  kept copies were read at: ``Database.run_confirmed``), or the stock reservation of a
  placement. The confirmation then waits at the request's gate, which
  ``Database.run`` passes before the first write (just after it, for a write inside a
  transaction that brings the generation back itself: a refusal rolls it back), and
  this layer before the first byte of the answer. If no statement has brought the
  generation by then, the gate asks for it in one statement.

Until the gate, the route may also have priced with variants the worker kept, at a
``catalog`` generation it had not yet seen (``Observed.assume_catalog``); the gate
checks that generation too.

A credential that is no longer good answers 401, and nothing was written for it (its
first write is where the gate stopped it; a transaction it had begun rolls back). A
credential whose scopes changed meanwhile is looked up again, and the route is run
once more as the credential now stands (its guards then decide with the current
scopes); so is a route that priced with variants changed meanwhile. Until the gate
nothing was written (or it is rolled back), so running it again is safe.
"""

from __future__ import annotations

from typing import Any, cast

from litestar.exceptions import NotAuthorizedException
from litestar.utils.scope.state import ScopeState

from ordnung.api.asgi import Message, Receive, Scope, Send
from ordnung.api.auth import confirmed
from ordnung.core import Engine
from ordnung.core.domain.access import Principal
from ordnung.core.persistence.generations import Observed, current

REVOKED = "unknown or revoked key"


class CredentialChanged(Exception):
    """The kept credential's scopes, or the variants the route used, changed before the
    route committed or answered: run the route again (never seen outside this module)."""


class _Deferred:
    """The gate of one request: confirms ``principal`` once, remembers how it ended."""

    def __init__(self, engine: Engine, principal: Principal, seen: Observed) -> None:
        self.engine = engine
        self.principal = principal
        self.seen = seen
        self.refused: NotAuthorizedException | None = None
        self.changed: Principal | None = None
        #: the gate could not be passed at the answer (the database went away while it
        #: looked): the answer is held back and this is raised instead
        self.failed: Exception | None = None

    async def __call__(self) -> None:
        if self.refused is None and self.changed is None:
            found = await self.engine.access.confirm(self.principal, self.seen)
            if found is None:
                self.refused = NotAuthorizedException(REVOKED)
            elif found != self.principal or self.seen.stale():
                self.changed = found  # or the variants it used changed: run it again
        if self.refused is not None:
            raise self.refused
        if self.changed is not None:
            raise CredentialChanged


class ConfirmCredentialMiddleware:
    """The innermost layer before the route (see the module docstring)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        principal = scope.get("user")
        seen = current()
        if not isinstance(principal, Principal) or seen is None or seen.pending is None:
            await self.app(scope, receive, send)
            return
        if seen.access is not None or scope["type"] != "http":
            await confirmed(scope, principal)  # the generation is here: no statement
            await self.app(scope, receive, send)
            return
        await self._deferred(scope, receive, send, principal, seen)

    async def _deferred(self, scope: Scope, receive: Receive, send: Send,
                        principal: Principal, seen: Observed) -> None:
        engine: Engine = scope["app"].state.engine
        gate = _Deferred(engine, principal, seen)
        seen.gate = gate
        heard: list[Message] = []

        async def listening() -> Message:
            message = await receive()
            heard.append(message)
            return message

        async def answering(message: Message) -> None:
            if message["type"] == "http.response.start":
                try:
                    await seen.through_gate()
                except (NotAuthorizedException, CredentialChanged):
                    pass
                except Exception as exc:  # e.g. the database is unavailable: a 503
                    gate.failed = exc
            if gate.refused is None and gate.changed is None and gate.failed is None:
                await send(message)

        try:
            await self.app(scope, listening, answering)
        except (NotAuthorizedException, CredentialChanged):
            if gate.refused is None and gate.changed is None:
                raise
        if gate.refused is not None or gate.changed is not None or gate.failed is not None:
            # what the route answered was held back: nothing has gone out yet (litestar's
            # exception layer below noted a start it saw on the way)
            ScopeState.from_scope(cast(Any, scope)).response_started = False
        if gate.failed is not None:
            raise gate.failed  # answered as the error it is, not as a broken answer
        if gate.refused is not None:
            raise gate.refused  # nothing was sent: the 401 of an unknown key
        if gate.changed is not None:
            scope["user"] = scope["auth"] = gate.changed
            seen.gate = seen.assumed = None
            await self.app(scope, _again(heard, receive), send)


def _again(heard: list[Message], receive: Receive) -> Receive:
    """A ``receive`` that gives the route what it heard the first time, then the rest."""
    replay = list(heard)

    async def again() -> Message:
        return replay.pop(0) if replay else await receive()

    return again
