"""Delivery dates the carriers quote, shared by the carrier plugins (not a plugin itself)."""

from __future__ import annotations

from datetime import date, timedelta


def add_business_days(start: date, days: int) -> date:
    """``start`` plus ``days`` working days (Monday to Friday)."""
    current = start
    while days > 0:
        current += timedelta(days=1)
        if current.weekday() < 5:
            days -= 1
    return current
