"""Initial schema.

Written as portable DDL rather than generated, because the invariants live in
CHECK constraints declared inside CREATE TABLE (SQLite cannot add them
later). Every statement runs unchanged on SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ordnung.migrations.raw import run_statements

if TYPE_CHECKING:
    from ordnung.core.persistence.database import Database

ID = "2026-11-22T00:00:00:000000"
DESCRIPTION = "initial schema"

STATEMENTS = [
    """CREATE TABLE products (
        id VARCHAR(64) PRIMARY KEY,
        name TEXT NOT NULL,
        data TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL
    )""",
    """CREATE TABLE variants (
        sku VARCHAR(64) PRIMARY KEY,
        product_id VARCHAR(64) NOT NULL REFERENCES products (id),
        barcode VARCHAR(64) NOT NULL DEFAULT '',
        active BOOLEAN NOT NULL DEFAULT TRUE,
        data TEXT NOT NULL
    )""",
    "CREATE INDEX variants_barcode ON variants (barcode)",
    "CREATE INDEX variants_product ON variants (product_id)",
    """CREATE TABLE locations (
        id VARCHAR(64) PRIMARY KEY,
        name TEXT NOT NULL,
        priority INTEGER NOT NULL DEFAULT 100,
        active BOOLEAN NOT NULL DEFAULT TRUE
    )""",
    """CREATE TABLE channels (
        id VARCHAR(64) PRIMARY KEY,
        data TEXT NOT NULL
    )""",
    # available = on_hand - reserved never goes below zero unless the SKU
    # allows backorders: the database refuses it whatever the code does.
    """CREATE TABLE stock_levels (
        id VARCHAR(140) PRIMARY KEY,
        sku VARCHAR(64) NOT NULL REFERENCES variants (sku),
        location_id VARCHAR(64) NOT NULL REFERENCES locations (id),
        on_hand BIGINT NOT NULL DEFAULT 0,
        reserved BIGINT NOT NULL DEFAULT 0,
        allow_backorder BOOLEAN NOT NULL DEFAULT FALSE,
        CONSTRAINT stock_levels_sku_location UNIQUE (sku, location_id),
        CONSTRAINT stock_never_oversold CHECK (
            on_hand >= 0 AND reserved >= 0 AND (allow_backorder OR reserved <= on_hand)
        )
    )""",
    """CREATE TABLE stock_movements (
        id VARCHAR(40) PRIMARY KEY,
        sku VARCHAR(64) NOT NULL,
        location_id VARCHAR(64) NOT NULL,
        kind VARCHAR(16) NOT NULL,
        on_hand_delta BIGINT NOT NULL,
        reserved_delta BIGINT NOT NULL,
        order_id VARCHAR(40),
        reason TEXT NOT NULL DEFAULT '',
        actor TEXT NOT NULL DEFAULT '',
        at TIMESTAMPTZ NOT NULL
    )""",
    "CREATE INDEX stock_movements_sku ON stock_movements (sku, location_id)",
    "CREATE INDEX stock_movements_order ON stock_movements (order_id)",
    """CREATE TABLE customers (
        id VARCHAR(40) PRIMARY KEY,
        email VARCHAR(320) NOT NULL,
        erased BOOLEAN NOT NULL DEFAULT FALSE,
        data TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL
    )""",
    "CREATE INDEX customers_email ON customers (email)",
    """CREATE TABLE carts (
        id VARCHAR(40) PRIMARY KEY,
        customer_id VARCHAR(40),
        channel VARCHAR(64) NOT NULL,
        status VARCHAR(16) NOT NULL,
        data TEXT NOT NULL,
        version INTEGER NOT NULL DEFAULT 0,
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL
    )""",
    # The money invariants, backed by the database:
    # refunded <= captured <= authorized <= total, nothing negative.
    """CREATE TABLE orders (
        id VARCHAR(40) PRIMARY KEY,
        number VARCHAR(32) NOT NULL,
        channel VARCHAR(64) NOT NULL,
        customer_id VARCHAR(40),
        email VARCHAR(320) NOT NULL DEFAULT '',
        status VARCHAR(32) NOT NULL,
        currency VARCHAR(3) NOT NULL,
        priority INTEGER NOT NULL DEFAULT 0,
        total BIGINT NOT NULL,
        authorized BIGINT NOT NULL DEFAULT 0,
        captured BIGINT NOT NULL DEFAULT 0,
        refunded BIGINT NOT NULL DEFAULT 0,
        data TEXT NOT NULL,
        version INTEGER NOT NULL DEFAULT 0,
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL,
        CONSTRAINT orders_number UNIQUE (number),
        CONSTRAINT orders_money CHECK (
            total >= 0 AND refunded >= 0 AND refunded <= captured
            AND captured <= authorized AND authorized <= total
        )
    )""",
    "CREATE INDEX orders_customer ON orders (customer_id, id)",
    "CREATE INDEX orders_status ON orders (status, priority)",
    """CREATE TABLE events (
        id VARCHAR(40) PRIMARY KEY,
        order_id VARCHAR(40),
        seq INTEGER NOT NULL DEFAULT 0,
        kind VARCHAR(64) NOT NULL,
        actor TEXT NOT NULL DEFAULT '',
        data TEXT NOT NULL,
        at TIMESTAMPTZ NOT NULL
    )""",
    "CREATE INDEX events_order ON events (order_id, seq)",
    """CREATE TABLE outbox (
        id VARCHAR(40) PRIMARY KEY,
        kind VARCHAR(64) NOT NULL,
        order_id VARCHAR(40),
        payload TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        claimed_until TIMESTAMPTZ,
        dispatched_at TIMESTAMPTZ,
        attempts INTEGER NOT NULL DEFAULT 0
    )""",
    "CREATE INDEX outbox_pending ON outbox (id) WHERE dispatched_at IS NULL",
    """CREATE TABLE reaction_failures (
        id VARCHAR(40) PRIMARY KEY,
        outbox_id VARCHAR(40) NOT NULL,
        hook VARCHAR(64) NOT NULL,
        plugin VARCHAR(64) NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 1,
        last_error TEXT NOT NULL DEFAULT '',
        next_attempt_at TIMESTAMPTZ NOT NULL,
        resolved_at TIMESTAMPTZ,
        created_at TIMESTAMPTZ NOT NULL,
        CONSTRAINT reaction_failures_once UNIQUE (outbox_id, hook, plugin)
    )""",
    "CREATE INDEX reaction_failures_due ON reaction_failures (next_attempt_at) "
    "WHERE resolved_at IS NULL",
    # gateway payment references and carrier tracking numbers -> order
    """CREATE TABLE external_refs (
        namespace VARCHAR(80) NOT NULL,
        reference VARCHAR(200) NOT NULL,
        order_id VARCHAR(40) NOT NULL,
        entity_id VARCHAR(40) NOT NULL,
        PRIMARY KEY (namespace, reference)
    )""",
    """CREATE TABLE idempotency_keys (
        key VARCHAR(300) PRIMARY KEY,
        fingerprint VARCHAR(64) NOT NULL,
        result TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL
    )""",
]


async def apply(db: Database) -> None:
    """Run this migration's statements on ``db`` (inside the caller's transaction)."""
    await run_statements(db, STATEMENTS)

