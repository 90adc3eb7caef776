"""Carts (draft orders) as documents; the ones this worker wrote last are kept
(``...kept_carts``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timedelta

from ordnung.core.domain.carts import Cart
from ordnung.core.errors import Conflict, NotFound
from ordnung.core.persistence.changed_columns import ChangedColumns
from ordnung.core.persistence.codec import decode, encode
from ordnung.core.persistence.database import Database, Statement
from ordnung.core.persistence.fence import WRITE_FENCE
from ordnung.core.persistence.generations import (
    OBSERVED_COLUMNS,
    current,
    observe,
    write_guards,
)
from ordnung.core.persistence.kept_carts import KEPT_CARTS, KeptCarts

#: a cart row's ``active_at`` is the start of the hour of the cart's last change
#: (``updated_at`` in its document): the saves of one hour leave it, and the two
#: housekeeping indexes over it, as they are. Housekeeping keeps a cart one grain past
#: its retention, so that no cart goes before the retention has run out
ACTIVITY_GRAIN = timedelta(hours=1)
#: an insert is a ``SELECT`` of its values, so that it may carry ``write_guards``
_INSERT = ("INSERT INTO carts (id, customer_id, channel, status, data, version, created_at, "
           "active_at, token_hash) SELECT {}, {}, {}, {}, {}, {}, {}, {}, {} WHERE 1 = 1")
_INSERTED = f" RETURNING {OBSERVED_COLUMNS}"
#: a cart's reads bring the generations back (``...persistence.generations``): a
#: request working on a cart needs no statement of its own to confirm a kept key
_WITH_TOKEN = f"SELECT data, token_hash, {OBSERVED_COLUMNS} FROM carts WHERE id = {{}}"
_CLEAR_TOKEN = "UPDATE carts SET token_hash = NULL WHERE id = {}"
_GET = f"SELECT data, {OBSERVED_COLUMNS} FROM carts WHERE id = {{}}"
#: a save names ``customer_id``, ``status`` and ``active_at`` only when they change
_UPDATES = ChangedColumns("carts", ("customer_id = {}", "status = {}", "active_at = {}"),
                          "data = {}, version = {}", "WHERE id = {} AND version = {}")
#: a save of a lent copy's change is guarded by the token hash that let the caller in
_TOKEN = " AND COALESCE(token_hash, '') = {}"
_FOR_CUSTOMER = "SELECT data FROM carts WHERE customer_id = {}"
#: the cart lent to the change this task runs, and its token hash (``lending``)
_LENT: ContextVar[tuple[Cart, str | None] | None] = ContextVar("ordnung_lent_cart",
                                                              default=None)
#: on PostgreSQL a kept copy's save that matches nothing brings the cart back instead,
#: in the same statement (it sees the cart as it was before its own update)
_OR_CURRENT = (f"WITH saved AS ({{}} RETURNING id) "
               f"SELECT id, NULL AS data, NULL AS token_hash, {OBSERVED_COLUMNS} FROM saved "
               f"UNION ALL SELECT NULL, data, token_hash, {OBSERVED_COLUMNS} FROM carts "
               f"WHERE id = {{}} AND NOT EXISTS (SELECT 1 FROM saved)")


#: what a cart's row holds for its indexes (``columns``)
Columns = tuple[str | None, str, datetime]


def active_hour(at: datetime) -> datetime:
    """The ``active_at`` of a cart last changed at ``at``."""
    return at.replace(minute=0, second=0, microsecond=0)


class StaleCopy(Exception):
    """A kept copy's save matched nothing: the cart changed, or a kept credential or
    kept variants are no longer current. Nothing was written. ``current``: the cart and
    its token hash as stored, when the same statement brought them (PostgreSQL)."""

    def __init__(self, cart_id: str, current: tuple[Cart, str | None] | None) -> None:
        super().__init__(cart_id)
        self.current = current


class CartStore:
    def __init__(self, db: Database, kept: int = KEPT_CARTS) -> None:
        self.db = db
        self._get_locked = _GET + db.lock_suffix
        self.kept = KeptCarts(kept)

    async def insert(self, cart: Cart, token_hash: str | None = None) -> None:
        """One statement, guarded like a kept cart's save (``run_confirmed``): it writes
        only if the generations are still those the request's kept credential was read
        at, and brings them back (``...generations``). If they have moved, nothing was
        written: the gate decides (a revoked key is refused) and the insert runs again.

        Inside a transaction, or under an Idempotency-Key's fence (whose proof and the
        insert must commit together), it runs in a transaction whose gate, passed after
        the insert, rolls it back on a refusal."""
        data = encode(cart)
        args = (cart.id, cart.customer_id, cart.channel, cart.status, data, cart.version,
                cart.created_at, active_hour(cart.updated_at), token_hash)
        if self.db.in_transaction() is not None or WRITE_FENCE.get() is not None:
            alone = self.db.in_transaction() is None
            async with self.db.transaction():
                observe((await self.db.run(_INSERT + _INSERTED, *args))[0])
            if alone:  # committed
                self.kept.keep(cart.id, data, token_hash)
            return
        guards, values = write_guards()
        if not await self.db.run_confirmed(_INSERT + guards + _INSERTED, *args, *values):
            seen = current()
            if seen is not None:
                await seen.through_gate()
            observe((await self.db.run(_INSERT + _INSERTED, *args))[0])
        self.kept.keep(cart.id, data, token_hash)

    async def get_with_token(self, cart_id: str) -> tuple[Cart, str | None]:
        """The cart and the hash of its guest token (None for customers' carts)."""
        rows = await self.db.run(_WITH_TOKEN, cart_id)
        if not rows:
            raise NotFound("cart", cart_id)
        row = rows[0]
        observe(row)
        if self.db.in_transaction() is None:  # what is committed, at its version
            self.kept.keep(cart_id, row["data"], row["token_hash"])
        return decode(row["data"], Cart), row["token_hash"]

    async def clear_token(self, cart_id: str) -> None:
        """The cart now belongs to a customer: its guest token no longer opens it."""
        self.kept.forget(cart_id)
        await self.db.run(_CLEAR_TOKEN, cart_id)

    async def get(self, cart_id: str, *, for_update: bool = False) -> Cart:
        rows = await self.db.run(self._get_locked if for_update else _GET, cart_id)
        if not rows:
            raise NotFound("cart", cart_id)
        observe(rows[0])
        return decode(rows[0]["data"], Cart)

    @staticmethod
    def columns(cart: Cart) -> Columns:
        """What the row of ``cart`` holds for its indexes: taken from the cart as read,
        before it changes, it lets a save name only the columns that change."""
        return cart.customer_id, cart.status, active_hour(cart.updated_at)

    async def save(self, cart: Cart, expected_version: int, *,
                   stored: Columns | None = None) -> None:
        """Save a change to the cart as read at ``expected_version`` (``stored``: its
        ``columns`` as read); kept when it is a write of its own (a save inside a
        transaction may yet be rolled back). A change to a lent copy raises
        ``StaleCopy`` instead of ``Conflict``."""
        lent = self._lent(cart)
        if lent is not None:
            await self._save_kept(cart, expected_version, lent[1], stored)
            return
        alone = self.db.in_transaction() is None
        sql, args, data = self._saving(cart, expected_version, stored)
        sql += " RETURNING id"
        try:
            saved = await self.db.run(sql, *args)
        except BaseException:
            self.kept.forget(cart.id)
            raise
        if not saved:
            self.kept.forget(cart.id)
            raise Conflict(f"cart {cart.id} was changed concurrently; retry", cart_id=cart.id)
        if alone:
            self.kept.renew(cart.id, data)
        else:
            self.kept.forget(cart.id)

    @contextmanager
    def lending(self, cart_id: str) -> Iterator[tuple[Cart, str | None] | None]:
        """A copy of the cart as this worker last wrote or read it, and its token hash;
        None if none is kept, or inside a transaction (whose reads must see its own
        writes). Inside the block, ``save`` of that copy and a placement's mark of it
        (``saving(..., read=)``) are guarded as a copy's must be."""
        lent = self.kept.lend(cart_id) if self.db.in_transaction() is None else None
        token = _LENT.set(lent)
        try:
            yield lent
        finally:
            _LENT.reset(token)

    def is_lent(self, cart: Cart) -> bool:
        """``cart`` is the copy lent to this task's change (``lending``): what it says
        is only as good as the write it leads to."""
        return self._lent(cart) is not None

    @staticmethod
    def _lent(cart: Cart | None) -> tuple[Cart, str | None] | None:
        lent = _LENT.get()
        return lent if lent is not None and cart is not None and lent[0] is cart else None

    async def _save_kept(self, cart: Cart, expected_version: int,
                         token_hash: str | None, stored: Columns | None) -> None:
        """Save a change made to a lent copy (``lending``) that was at
        ``expected_version`` with ``token_hash``: one statement, guarded by both and by
        the generations the request's kept credential and variants wait on
        (``write_guards``). Raises ``StaleCopy`` (nothing written, the copy forgotten)
        when it matches nothing."""
        guards, values = write_guards()
        sql, args, data = self._saving(cart, expected_version, stored)
        sql += _TOKEN + guards
        args += [token_hash or "", *values]
        if self.db.is_postgres:
            sql, args = _OR_CURRENT.format(sql, "{}"), [*args, cart.id]
        else:
            sql += f" RETURNING id, {OBSERVED_COLUMNS}"
        try:
            rows = await self.db.run_confirmed(sql, *args)
        except BaseException:
            self.kept.forget(cart.id)  # it may or may not have been written
            raise
        if rows and rows[0]["id"] is not None:
            self.kept.keep(cart.id, data, token_hash)
            return
        cart.version = expected_version
        self.kept.forget(cart.id)
        current = None
        if rows:
            row = rows[0]
            self.kept.keep(cart.id, row["data"], row["token_hash"])
            current = decode(row["data"], Cart), row["token_hash"]
        raise StaleCopy(cart.id, current)

    def saving(self, cart: Cart, expected_version: int, *, read: Cart | None = None
               ) -> Statement:
        """``save`` as a statement to run with a change's other writes
        (``Database.run_together``): it returns a row only if the cart was still at
        ``expected_version``, which the caller must check. ``read``: the cart the
        change was made from; a lent copy's (``lending``) also guards its token hash."""
        self.kept.forget(cart.id)
        sql, args, _ = self._saving(cart, expected_version,
                                    None if read is None else self.columns(read))
        lent = self._lent(read)
        if lent is None:
            return sql + " RETURNING id", args
        return sql + _TOKEN + " RETURNING id", [*args, lent[1] or ""]

    def _saving(self, cart: Cart, expected_version: int, stored: Columns | None
                ) -> tuple[str, list[object], str]:
        """The guarded ``UPDATE`` (no ``RETURNING``), its values, and the document it
        writes."""
        cart.version = expected_version + 1
        sql, named = _UPDATES.update(stored, self.columns(cart))
        data = encode(cart)
        return sql, [*named, data, cart.version, cart.id, expected_version], data

    async def for_customer(self, customer_id: str) -> list[Cart]:
        rows = await self.db.run(_FOR_CUSTOMER, customer_id)
        return [decode(r["data"], Cart) for r in rows]
