"""The carts a worker wrote last, kept so that the next change to one needs no read.

A guest checkout is a run of small changes to one cart (a line, another line, the
address, the shipping method, the placement), and each used to start with a read that
checks who holds the cart. The worker that saved or read a cart last already holds
it, so the next change may start from that copy and cost only its write.

A copy is never trusted, only tried. Its save is guarded by everything the copy
stands for: the cart's version (any change by anyone raises it), its token hash (which
decided who may use it) and, while the request's kept credential or variants wait for
their generations, those generations (``...persistence.generations``). A save that
matches nothing wrote nothing; the copy is dropped and the change runs again on the
cart as it is read now, as if there had been no copy. On PostgreSQL that same statement
brings the current cart back, so a stale copy costs what a change without one does.

A placement starts from the copy too: its mark of the cart is guarded by the same
version and token hash, and a copy that was behind before the request began places
nothing (``CartService.place``).

What a request answers without a write (the cart, its quotes) is always read: a copy
could be behind a change another worker made.
"""

from __future__ import annotations

from collections import OrderedDict

from ordnung.core.domain.carts import Cart
from ordnung.core.persistence.codec import decode

#: characters of encoded carts kept per worker, the least recently used dropped first
#: (a cart of three lines is about 3,000)
KEPT_CARTS = 16_000_000


class KeptCarts:
    """The encoded cart and its token hash, by cart id. Each lend decodes a copy of its
    own, so a change that fails halfway leaves nothing behind in what is kept."""

    __slots__ = ("_carts", "_size", "limit")

    def __init__(self, limit: int = KEPT_CARTS) -> None:
        self.limit = limit
        self._size = 0
        self._carts: OrderedDict[str, tuple[str, str | None]] = OrderedDict()

    def keep(self, cart_id: str, data: str, token_hash: str | None) -> None:
        """``data``: the cart as it was just written or read (``encode``d)."""
        self.forget(cart_id)
        if len(data) > self.limit:
            return
        self._carts[cart_id] = (data, token_hash)
        self._size += len(data)
        while self._size > self.limit:
            _, (dropped, _) = self._carts.popitem(last=False)
            self._size -= len(dropped)

    def renew(self, cart_id: str, data: str) -> None:
        """The kept cart was just saved as ``data`` (its token hash unchanged); nothing
        if it is not kept."""
        kept = self._carts.get(cart_id)
        if kept is not None:
            self.keep(cart_id, data, kept[1])

    def lend(self, cart_id: str) -> tuple[Cart, str | None] | None:
        """A fresh copy of the kept cart and its token hash; None if none is kept."""
        kept = self._carts.get(cart_id)
        if kept is None:
            return None
        self._carts.move_to_end(cart_id)
        return decode(kept[0], Cart), kept[1]

    def forget(self, cart_id: str) -> None:
        kept = self._carts.pop(cart_id, None)
        if kept is not None:
            self._size -= len(kept[0])

    def __len__(self) -> int:
        return len(self._carts)
