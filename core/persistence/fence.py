"""Write fencing: every write made on behalf of a claimed request proves the claim first.

While an adapter's request holds an idempotency claim, the claim sits in
``WRITE_FENCE`` (a context variable, so it follows the request's task and nothing
else). ``Database`` calls ``before_write`` ahead of every INSERT, UPDATE or DELETE
the engine runs, inside the same transaction, and ``committed`` when that
transaction has committed. The claim uses this to know, from the database itself,
whether the request changed anything (a request that changed nothing may be retried
with the same key at once), and to refuse writes once its lease was lost to a repeat
(two attempts never both write).
"""

from __future__ import annotations

import functools
import re
from contextvars import ContextVar
from typing import Protocol


class WriteFence(Protocol):
    async def before_write(self) -> None:
        """Called before a write statement, in its transaction (if any)."""

    def committed(self, transaction: object) -> None:
        """Called after ``transaction`` (an outermost one) has committed."""


WRITE_FENCE: ContextVar[WriteFence | None] = ContextVar("ordnung_write_fence", default=None)

_WRITES = ("INSERT", "UPDATE", "DELETE", "REPLAC", "UPSERT")
#: a statement that begins with WITH writes if one of its parts does
_MODIFIES = re.compile(r"\b(INSERT|UPDATE|DELETE)\b", re.IGNORECASE)


@functools.lru_cache(maxsize=4096)
def is_write(sql: str) -> bool:
    """Whether ``sql`` writes. Asked before every statement; the engine's statements are
    few and fixed (a batch of rows makes one per row count), so each is looked at once."""
    head = sql.lstrip()[:6].upper()
    return head in _WRITES or (head[:4] == "WITH" and _MODIFIES.search(sql) is not None)
