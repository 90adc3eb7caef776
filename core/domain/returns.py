"""Returns (RMAs): requested, approved or rejected, received, refunded."""

from __future__ import annotations

from datetime import datetime

import msgspec


class ReturnLine(msgspec.Struct, kw_only=True):
    line_id: str
    sku: str
    quantity: int
    restock: bool = True


class ReturnRequest(msgspec.Struct, kw_only=True):
    id: str
    status: str = "requested"
    lines: list[ReturnLine]
    reason: str = ""
    refund_amount: int = 0
    refund_in_flight: bool = False
    created_at: datetime


class ListedReturn(ReturnRequest, kw_only=True):
    """A return in a list across orders: the return and the order it belongs to."""

    order_id: str
    order_number: str
