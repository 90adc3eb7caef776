"""Small helpers shared by every domain type: ids and time."""

from __future__ import annotations

import os
import secrets
import time
from datetime import UTC, datetime

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str) -> str:
    """A sortable, collision-resistant id: prefix, 48-bit milliseconds, 80 random bits.

    Ids sort by creation time, which keeps B-tree inserts local and makes cursor
    pagination by id meaningful; no database sequence is needed, so the hot
    path has no shared counter row to contend on.
    """
    millis = int(time.time() * 1000)
    value = (millis << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        value, rem = divmod(value, 32)
        chars.append(_CROCKFORD[rem])
    return f"{prefix}_{''.join(reversed(chars)).lower()}"


def order_number() -> str:
    """A human-readable order number, e.g. ``ORD-7KQ9-XW3D``: easy to read out on the phone.

    40 random bits; the database's unique index catches the rare collision and
    the engine retries with a new number.
    """
    raw = "".join(secrets.choice(_CROCKFORD) for _ in range(8))
    return f"ORD-{raw[:4]}-{raw[4:]}"
