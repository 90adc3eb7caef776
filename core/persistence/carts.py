"""Carts (draft orders) as documents."""

from __future__ import annotations

from ordnung.core.domain.carts import Cart
from ordnung.core.errors import Conflict, NotFound
from ordnung.core.persistence.codec import decode, encode
from ordnung.core.persistence.database import Database
from ordnung.core.persistence.tables import CartRow


class CartStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def insert(self, cart: Cart, token_hash: str | None = None) -> None:
        await CartRow.insert(CartRow(
            id=cart.id, customer_id=cart.customer_id, channel=cart.channel, status=cart.status,
            data=encode(cart), version=cart.version, created_at=cart.created_at,
            updated_at=cart.updated_at, token_hash=token_hash)).run()

    async def get_with_token(self, cart_id: str) -> tuple[Cart, str | None]:
        """The cart and the hash of its guest token (None for customers' carts)."""
        rows = await CartRow.select(CartRow.data, CartRow.token_hash).where(
            CartRow.id == cart_id).run()
        if not rows:
            raise NotFound("cart", cart_id)
        return decode(rows[0]["data"], Cart), rows[0]["token_hash"]

    async def clear_token(self, cart_id: str) -> None:
        """The cart now belongs to a customer: its guest token no longer opens it."""
        await CartRow.update({CartRow.token_hash: None}).where(CartRow.id == cart_id).run()

    async def get(self, cart_id: str, *, for_update: bool = False) -> Cart:
        query = CartRow.select(CartRow.data).where(CartRow.id == cart_id)
        rows = await (self.db.for_update(query) if for_update else query)
        if not rows:
            raise NotFound("cart", cart_id)
        return decode(rows[0]["data"], Cart)

    async def save(self, cart: Cart, expected_version: int) -> None:
        cart.version = expected_version + 1
        rows = await CartRow.update({
            CartRow.customer_id: cart.customer_id,
            CartRow.status: cart.status,
            CartRow.data: encode(cart),
            CartRow.version: cart.version,
            CartRow.updated_at: cart.updated_at,
        }).where((CartRow.id == cart.id) & (CartRow.version == expected_version)).returning(
            CartRow.id).run()
        if not rows:
            raise Conflict(f"cart {cart.id} was changed concurrently; retry", cart_id=cart.id)

    async def for_customer(self, customer_id: str) -> list[Cart]:
        rows = await CartRow.select(CartRow.data).where(CartRow.customer_id == customer_id).run()
        return [decode(r["data"], Cart) for r in rows]
