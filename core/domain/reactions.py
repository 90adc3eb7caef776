"""A plugin's after-commit reaction that failed: what staff see and can retry."""

from __future__ import annotations

from datetime import datetime

import msgspec


class FailedReaction(msgspec.Struct, kw_only=True, frozen=True):
    id: str
    #: the event the plugin was reacting to, its kind and its order (if any)
    event_id: str
    event_kind: str | None
    order_id: str | None
    plugin: str
    hook: str
    attempts: int
    #: the exception of the last attempt, as the plugin raised it
    last_error: str
    #: when the engine tries again by itself (backing off), unless resolved
    next_attempt_at: datetime
    resolved_at: datetime | None
    created_at: datetime
