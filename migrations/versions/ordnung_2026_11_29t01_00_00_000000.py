"""Customer accounts, cart tokens and expiring customer tokens.

Passwords, refresh tokens, access tokens, one-time account tokens and cart
tokens are stored only as hashes (argon2 for passwords, SHA-256 for the random
tokens, which carry enough entropy that a slow hash would add nothing).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ordnung.migrations.raw import run_statements

if TYPE_CHECKING:
    from ordnung.core.persistence.database import Database

ID = "2026-11-29T01:00:00:000000"
DESCRIPTION = "customer accounts, sessions, cart tokens, rate limits"

STATEMENTS = [
    # a guest cart's secret: the cart answers only to its holder (or its customer, or staff)
    "ALTER TABLE carts ADD COLUMN token_hash VARCHAR(64)",
    # customer tokens issued by staff expire; keys are found by their hash on every request
    "ALTER TABLE api_keys ADD COLUMN expires_at TIMESTAMPTZ",
    "CREATE INDEX api_keys_secret_hash ON api_keys (secret_hash)",
    "CREATE INDEX api_keys_customer ON api_keys (customer_id)",
    """CREATE TABLE customer_credentials (
        customer_id VARCHAR(40) PRIMARY KEY,
        password_hash TEXT NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        updated_at TIMESTAMPTZ NOT NULL
    )""",
    # one row per signed-in device: a short-lived access token and a rotating refresh token
    """CREATE TABLE customer_sessions (
        id VARCHAR(40) PRIMARY KEY,
        customer_id VARCHAR(40) NOT NULL,
        channel VARCHAR(64),
        access_hash VARCHAR(64) NOT NULL,
        access_expires_at TIMESTAMPTZ NOT NULL,
        refresh_hash VARCHAR(64) NOT NULL,
        previous_refresh_hash VARCHAR(64),
        refresh_expires_at TIMESTAMPTZ NOT NULL,
        created_at TIMESTAMPTZ NOT NULL,
        refreshed_at TIMESTAMPTZ NOT NULL,
        revoked_at TIMESTAMPTZ,
        revoked_reason VARCHAR(32) NOT NULL DEFAULT ''
    )""",
    "CREATE INDEX customer_sessions_access ON customer_sessions (access_hash)",
    "CREATE INDEX customer_sessions_refresh ON customer_sessions (refresh_hash)",
    "CREATE INDEX customer_sessions_previous ON customer_sessions (previous_refresh_hash)",
    "CREATE INDEX customer_sessions_customer ON customer_sessions (customer_id)",
    # one-time tokens sent by e-mail: password reset, e-mail verification
    """CREATE TABLE account_tokens (
        id VARCHAR(40) PRIMARY KEY,
        token_hash VARCHAR(64) NOT NULL,
        purpose VARCHAR(32) NOT NULL,
        customer_id VARCHAR(40) NOT NULL,
        email VARCHAR(320) NOT NULL,
        expires_at TIMESTAMPTZ NOT NULL,
        used_at TIMESTAMPTZ,
        created_at TIMESTAMPTZ NOT NULL
    )""",
    "CREATE INDEX account_tokens_hash ON account_tokens (token_hash)",
    "CREATE INDEX account_tokens_customer ON account_tokens (customer_id, purpose)",
    # a verified customer claims the guest orders placed with their address
    "CREATE INDEX orders_email ON orders (email)",
    # fixed-window counters of the rate limiter, shared by every worker process
    """CREATE TABLE rate_limits (
        key VARCHAR(300) PRIMARY KEY,
        hits BIGINT NOT NULL DEFAULT 0,
        expires_at TIMESTAMPTZ NOT NULL
    )""",
]


async def apply(db: Database) -> None:
    """Run this migration's statements on ``db`` (inside the caller's transaction)."""
    await run_statements(db, STATEMENTS)

