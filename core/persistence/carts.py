"""Carts (draft orders) as documents."""

from __future__ import annotations

from ordnung.core.domain.carts import Cart
from ordnung.core.errors import Conflict, NotFound
from ordnung.core.persistence.codec import decode, encode
from ordnung.core.persistence.database import Database, Statement
from ordnung.core.persistence.generations import OBSERVED_COLUMNS, observe

_INSERT = ("INSERT INTO carts (id, customer_id, channel, status, data, version, created_at, "
           "updated_at, token_hash) VALUES ({}, {}, {}, {}, {}, {}, {}, {}, {}) "
           f"RETURNING {OBSERVED_COLUMNS}")
#: a cart's reads bring the generations back (``...persistence.generations``): a
#: request working on a cart needs no statement of its own to confirm a kept key
_WITH_TOKEN = f"SELECT data, token_hash, {OBSERVED_COLUMNS} FROM carts WHERE id = {{}}"
_CLEAR_TOKEN = "UPDATE carts SET token_hash = NULL WHERE id = {}"
_GET = f"SELECT data, {OBSERVED_COLUMNS} FROM carts WHERE id = {{}}"
_SAVE = ("UPDATE carts SET customer_id = {}, status = {}, data = {}, version = {}, "
         "updated_at = {} WHERE id = {} AND version = {} RETURNING id")
_FOR_CUSTOMER = "SELECT data FROM carts WHERE customer_id = {}"


class CartStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        self._get_locked = _GET + db.lock_suffix

    async def insert(self, cart: Cart, token_hash: str | None = None) -> None:
        """In a transaction of its own: the insert brings the generations back, and a
        request whose kept key they show revoked rolls it back (``...generations``)."""
        async with self.db.transaction():
            rows = await self.db.run(_INSERT, cart.id, cart.customer_id, cart.channel,
                                     cart.status, encode(cart), cart.version,
                                     cart.created_at, cart.updated_at, token_hash)
            observe(rows[0])

    async def get_with_token(self, cart_id: str) -> tuple[Cart, str | None]:
        """The cart and the hash of its guest token (None for customers' carts)."""
        rows = await self.db.run(_WITH_TOKEN, cart_id)
        if not rows:
            raise NotFound("cart", cart_id)
        row = rows[0]
        observe(row)
        return decode(row["data"], Cart), row["token_hash"]

    async def clear_token(self, cart_id: str) -> None:
        """The cart now belongs to a customer: its guest token no longer opens it."""
        await self.db.run(_CLEAR_TOKEN, cart_id)

    async def get(self, cart_id: str, *, for_update: bool = False) -> Cart:
        rows = await self.db.run(self._get_locked if for_update else _GET, cart_id)
        if not rows:
            raise NotFound("cart", cart_id)
        observe(rows[0])
        return decode(rows[0]["data"], Cart)

    async def save(self, cart: Cart, expected_version: int) -> None:
        sql, args = self.saving(cart, expected_version)
        if not await self.db.run(sql, *args):
            raise Conflict(f"cart {cart.id} was changed concurrently; retry", cart_id=cart.id)

    @staticmethod
    def saving(cart: Cart, expected_version: int) -> Statement:
        """``save`` as a statement to run with a change's other writes
        (``Database.run_together``): it returns a row only if the cart was still at
        ``expected_version``, which the caller must check."""
        cart.version = expected_version + 1
        return _SAVE, [cart.customer_id, cart.status, encode(cart), cart.version,
                       cart.updated_at, cart.id, expected_version]

    async def for_customer(self, customer_id: str) -> list[Cart]:
        rows = await self.db.run(_FOR_CUSTOMER, customer_id)
        return [decode(r["data"], Cart) for r in rows]
