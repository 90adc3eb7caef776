"""Timeline events: append-only, written in the same transaction as the change."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec


class Event(msgspec.Struct, kw_only=True, frozen=True):
    id: str
    #: e.g. "order.placed", "payment.captured", "shipment.shipped", "stock.adjusted"
    kind: str
    order_id: str | None = None
    #: position in the order's timeline
    seq: int = 0
    machine: str | None = None
    entity_id: str = ""
    from_state: str | None = None
    to_state: str | None = None
    transition: str | None = None
    actor: str = "system"
    data: dict[str, Any] = {}
    at: datetime
