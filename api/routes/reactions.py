"""Failed plugin reactions: what did not happen after a change committed, and a retry."""

from __future__ import annotations

from typing import Any, Literal

import msgspec
from litestar import Controller, Request
from litestar.params import FromPath, FromQuery

from ordnung.api.auth import admin
from ordnung.api.problems import problems
from ordnung.api.routes.common import check_cursor, check_limit, engine_of
from ordnung.api.routes.handlers import get, post
from ordnung.core.domain.reactions import FailedReaction


class FailedReactionPage(msgspec.Struct, kw_only=True):
    items: list[FailedReaction]
    #: the cursor of the next page (pass it as ``after``), None on the last page
    next: str | None = None


class ReactionController(Controller):
    path = "/admin/reactions"
    tags = ["admin"]
    guards = [admin("plugins")]

    @get("/", responses=problems(422))
    async def list_failed(self, request: Request[Any, Any, Any],
                          status: FromQuery[Literal["open", "resolved"]] = "open",
                          after: FromQuery[str | None] = None,
                          limit: FromQuery[int] = 50) -> FailedReactionPage:
        """Plugin reactions that failed after their change committed, with the last error
        (``open``: still retried with backoff; ``resolved``: succeeded later)."""
        check_cursor(after, "rf")
        items = await engine_of(request).reactions.failed(
            resolved=status == "resolved", after=after, limit=check_limit(limit))
        return FailedReactionPage(items=items,
                                  next=items[-1].id if len(items) == limit else None)

    @get("/{reaction_id:str}", responses=problems(404))
    async def get_failed(self, request: Request[Any, Any, Any],
                         reaction_id: FromPath[str]) -> FailedReaction:
        """One failed reaction."""
        return await engine_of(request).reactions.get(reaction_id)

    @post("/{reaction_id:str}/retry", status_code=200, responses=problems(404))
    async def retry(self, request: Request[Any, Any, Any],
                    reaction_id: FromPath[str]) -> FailedReaction:
        """Run the reaction again now, not at its next backed-off attempt; the answer is
        resolved, or carries the new error."""
        return await engine_of(request).reactions.retry(reaction_id)
