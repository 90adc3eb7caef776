"""Small helpers shared by every domain type: ids and time.

Time is the database's: every server of a shop shares one database, and leases
and ages (outbox claims, in-flight authorizations, failed-reaction back-off,
sessions, rate windows) are compared across servers, so each process reads its
own clock corrected by the offset it last measured against the database's
(``set_clock_offset``, kept current by ``Database``). A server whose system
clock is minutes off then still agrees with the others on what has expired.
"""

from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime, timedelta

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
#: every ten bits as two lower-case Crockford characters, and where an id's 13 pairs sit
_PAIRS = tuple(a + b for a in _CROCKFORD.lower() for b in _CROCKFORD.lower())
_SHIFTS = tuple(range(120, -1, -10))
#: the same pairs in upper case, as order numbers are spelled
_UPPER_PAIRS = tuple(a + b for a in _CROCKFORD for b in _CROCKFORD)


#: seconds this process's clock is pretended to be off; only for tests that prove skew
#: does not matter (``ORDNUNG_TEST_CLOCK_SKEW_S``), zero otherwise
_SKEW_S = float(os.environ.get("ORDNUNG_TEST_CLOCK_SKEW_S", "0") or 0)
#: the database's clock minus this process's (skewed) clock, as last measured
_offset_s = 0.0
_correction = timedelta(seconds=_SKEW_S)
#: the value of the last id this process made (ids never go back: ``new_id``)
_last_id = 0
_id_lock = threading.Lock()


def _new_id_lock() -> None:
    """A forked child starts with a lock of its own (the parent's may be held)."""
    global _id_lock
    _id_lock = threading.Lock()


os.register_at_fork(after_in_child=_new_id_lock)


def system_now() -> datetime:
    """This process's own clock, uncorrected (what the database's clock is compared to)."""
    return datetime.now(UTC) + timedelta(seconds=_SKEW_S)


def set_clock_offset(seconds: float) -> None:
    """Take the database's clock to be ``seconds`` ahead of ``system_now()``."""
    global _offset_s, _correction
    _offset_s = seconds
    _correction = timedelta(seconds=_SKEW_S + seconds)


def clock_offset() -> float:
    return _offset_s


def utcnow() -> datetime:
    """Now on the database's clock (this process's clock plus the measured offset)."""
    return datetime.now(UTC) + _correction


def new_id(prefix: str) -> str:
    """A sortable, collision-resistant id: prefix, 48-bit milliseconds, 80 random bits.

    Ids sort by creation time, which keeps B-tree inserts local and makes cursor
    pagination by id meaningful; no database sequence is needed, so the hot
    path has no shared counter row to contend on.

    Within one process they sort in the order they were made, also when several are
    made in one millisecond (a fast machine places orders in less) or the clock steps
    back (a new offset to the database's): such an id is the last one plus a fresh
    random step of up to 40 bits, so it still cannot be guessed from the one before.
    So orders of equal priority leave the fulfilment queue in the order they were
    placed. Ids of two processes made in the same millisecond still sort at random
    between them.
    """
    global _last_id
    millis = int((time.time() + _SKEW_S + _offset_s) * 1000)
    drawn = os.urandom(10)
    value = (millis << 80) | int.from_bytes(drawn, "big")
    with _id_lock:
        if value <= _last_id:  # not after the last id: right after it, by a random step
            value = _last_id + 1 + int.from_bytes(drawn[:5], "big")
        _last_id = value
    # 26 Crockford characters, two (ten bits) at a time: on every write's path
    return f"{prefix}_{''.join([_PAIRS[(value >> shift) & 1023] for shift in _SHIFTS])}"


def order_number() -> str:
    """A human-readable order number, e.g. ``ORD-7KQ9-XW3D``: easy to read out on the phone.

    40 random bits; the database's unique index catches the rare collision and
    the engine retries with a new number.
    """
    # the 40 bits drawn at once and spelled two characters (ten bits) at a time: eight
    # ``secrets.choice`` calls cost more than the rest of the order's ids together
    value = int.from_bytes(os.urandom(5), "big")
    return (f"ORD-{_UPPER_PAIRS[value >> 30]}{_UPPER_PAIRS[(value >> 20) & 1023]}"
            f"-{_UPPER_PAIRS[(value >> 10) & 1023]}{_UPPER_PAIRS[value & 1023]}")
