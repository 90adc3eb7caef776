"""The schema the code expects: piccolo table classes, one per table, and the indexes.

The schema itself (with its CHECK constraints) is created by the migrations in
``ordnung.migrations``; these classes declare it column for column (type, length,
nullability, primary key), ``COMPOSITE_KEYS`` the primary keys of more than one column
(piccolo's classes name one) and ``INDEXES`` every index. ``tests/test_schema.py``
migrates an empty database on both dialects, reads its schema back
(``ordnung.core.persistence.schema``) and fails on any difference. Nothing is queried
through these classes (see ``ordnung.core.persistence.database``).

Aggregates (orders, carts, customers) keep their full msgspec document in ``data``
plus the columns we filter, sort or constrain on; stock levels and ledger movements
are fully relational because their arithmetic happens in SQL.
"""

from __future__ import annotations

from typing import NamedTuple

from piccolo.columns import BigInt, Boolean, Integer, Text, Timestamptz, Varchar
from piccolo.table import Table


class ProductRow(Table, tablename="products"):
    id = Varchar(length=64, primary_key=True)
    name = Text()
    data = Text()
    created_at = Timestamptz()


class VariantRow(Table, tablename="variants"):
    sku = Varchar(length=64, primary_key=True)
    product_id = Varchar(length=64)
    barcode = Varchar(length=64)
    active = Boolean()
    data = Text()


class LocationRow(Table, tablename="locations"):
    id = Varchar(length=64, primary_key=True)
    name = Text()
    priority = Integer()
    active = Boolean()


class ChannelRow(Table, tablename="channels"):
    id = Varchar(length=64, primary_key=True)
    data = Text()


class StockLevelRow(Table, tablename="stock_levels"):
    id = Varchar(length=140, primary_key=True)
    sku = Varchar(length=64)
    location_id = Varchar(length=64)
    on_hand = BigInt()
    reserved = BigInt()
    allow_backorder = Boolean()
    #: a level is its slices' rows added up; 0 is the row every level has
    slice = Integer()


class MovementRow(Table, tablename="stock_movements"):
    id = Varchar(length=40, primary_key=True)
    sku = Varchar(length=64)
    location_id = Varchar(length=64)
    kind = Varchar(length=16)
    on_hand_delta = BigInt()
    reserved_delta = BigInt()
    order_id = Varchar(length=40, null=True)
    reason = Text()
    actor = Text()
    at = Timestamptz()


class CustomerRow(Table, tablename="customers"):
    id = Varchar(length=40, primary_key=True)
    email = Varchar(length=320)
    erased = Boolean()
    data = Text()
    created_at = Timestamptz()


class CartRow(Table, tablename="carts"):
    id = Varchar(length=40, primary_key=True)
    customer_id = Varchar(length=40, null=True)
    channel = Varchar(length=64)
    status = Varchar(length=16)
    data = Text()
    version = Integer()
    created_at = Timestamptz()
    #: the start of the hour of the cart's last change (``...persistence.carts``)
    active_at = Timestamptz()
    #: SHA-256 of a guest cart's token; NULL for carts of customers and staff
    token_hash = Varchar(length=64, null=True, default=None)


class OrderRow(Table, tablename="orders"):
    id = Varchar(length=40, primary_key=True)
    number = Varchar(length=32)
    channel = Varchar(length=64)
    customer_id = Varchar(length=40, null=True)
    email = Varchar(length=320)
    status = Varchar(length=32)
    currency = Varchar(length=3)
    priority = Integer()
    total = BigInt()
    authorized = BigInt()
    captured = BigInt()
    refunded = BigInt()
    data = Text()
    version = Integer()
    created_at = Timestamptz()
    updated_at = Timestamptz()
    #: since when (database clock) an operation has been in flight on a payment the
    #: gateway has not answered (an authorization in flight); NULL when there is none
    authorizing_since = Timestamptz(null=True, default=None)


class EventRow(Table, tablename="events"):
    id = Varchar(length=40, primary_key=True)
    order_id = Varchar(length=40, null=True)
    seq = Integer()
    kind = Varchar(length=64)
    actor = Text()
    data = Text()
    at = Timestamptz()


class OutboxRow(Table, tablename="outbox"):
    id = Varchar(length=40, primary_key=True)
    kind = Varchar(length=64)
    order_id = Varchar(length=40, null=True)
    payload = Text()
    created_at = Timestamptz()
    claimed_until = Timestamptz(null=True, default=None)
    dispatched_at = Timestamptz(null=True, default=None)
    attempts = Integer()
    #: when the webhook worker turned the event into deliveries (NULL: not yet)
    webhooks_at = Timestamptz(null=True, default=None)
    #: when the broker worker published the event (NULL: not yet)
    broker_at = Timestamptz(null=True, default=None)


class ReactionFailureRow(Table, tablename="reaction_failures"):
    id = Varchar(length=40, primary_key=True)
    outbox_id = Varchar(length=40)
    hook = Varchar(length=64)
    plugin = Varchar(length=64)
    attempts = Integer()
    last_error = Text()
    next_attempt_at = Timestamptz()
    resolved_at = Timestamptz(null=True, default=None)
    created_at = Timestamptz()


class IdempotencyRow(Table, tablename="idempotency_records"):
    """Request claims (``request:...``) and the engine's own results (``place:...``);
    see ``ordnung.core.persistence.idempotency``."""

    key = Varchar(length=400, primary_key=True)
    fingerprint = Varchar(length=64)
    state = Varchar(length=16)
    owner = Varchar(length=40)
    lease_until = Timestamptz(null=True, default=None)
    effect_by = Varchar(length=40)
    status = Integer()
    headers = Text()
    result = Text()
    created_at = Timestamptz()


ALL_TABLES: tuple[type[Table], ...] = (
    ProductRow,
    VariantRow,
    LocationRow,
    ChannelRow,
    StockLevelRow,
    MovementRow,
    CustomerRow,
    CartRow,
    OrderRow,
    EventRow,
    OutboxRow,
    ReactionFailureRow,
    IdempotencyRow,
)


class ExternalRefRow(Table, tablename="external_refs"):
    """Gateway payment references and tracking numbers, pointing at their order."""

    namespace = Varchar(length=80, primary_key=True)
    reference = Varchar(length=200)
    order_id = Varchar(length=40)
    entity_id = Varchar(length=40)


ALL_TABLES = (*ALL_TABLES, ExternalRefRow)


class ApiKeyRow(Table, tablename="api_keys"):
    id = Varchar(length=40, primary_key=True)
    secret_hash = Varchar(length=64)
    kind = Varchar(length=16)
    name = Text()
    scopes = Text()
    channel = Varchar(length=64, null=True)
    customer_id = Varchar(length=40, null=True)
    created_at = Timestamptz()
    revoked_at = Timestamptz(null=True, default=None)
    expires_at = Timestamptz(null=True, default=None)


ALL_TABLES = (*ALL_TABLES, ApiKeyRow)


class CustomerCredentialRow(Table, tablename="customer_credentials"):
    """A registered customer's password (an argon2 hash)."""

    customer_id = Varchar(length=40, primary_key=True)
    password_hash = Text()
    created_at = Timestamptz()
    updated_at = Timestamptz()


class CustomerSessionRow(Table, tablename="customer_sessions"):
    """A signed-in customer on one device: access and refresh token hashes."""

    id = Varchar(length=40, primary_key=True)
    customer_id = Varchar(length=40)
    channel = Varchar(length=64, null=True)
    access_hash = Varchar(length=64)
    access_expires_at = Timestamptz()
    refresh_hash = Varchar(length=64)
    previous_refresh_hash = Varchar(length=64, null=True, default=None)
    refresh_expires_at = Timestamptz()
    created_at = Timestamptz()
    refreshed_at = Timestamptz()
    revoked_at = Timestamptz(null=True, default=None)
    revoked_reason = Varchar(length=32)


class AccountTokenRow(Table, tablename="account_tokens"):
    """A one-time token sent by e-mail (password reset, e-mail verification), hashed."""

    id = Varchar(length=40, primary_key=True)
    token_hash = Varchar(length=64)
    purpose = Varchar(length=32)
    customer_id = Varchar(length=40)
    email = Varchar(length=320)
    expires_at = Timestamptz()
    used_at = Timestamptz(null=True, default=None)
    created_at = Timestamptz()


class RateLimitRow(Table, tablename="rate_limits"):
    """A fixed-window counter of the rate limiter."""

    key = Varchar(length=300, primary_key=True)
    hits = BigInt()
    expires_at = Timestamptz()


ALL_TABLES = (*ALL_TABLES, CustomerCredentialRow, CustomerSessionRow, AccountTokenRow,
              RateLimitRow)


class OrderShipmentRow(Table, tablename="order_shipments"):
    """A shipment's look-up row (the shipment itself is in its order's document)."""

    id = Varchar(length=40, primary_key=True)
    order_id = Varchar(length=40)
    status = Varchar(length=32)
    carrier = Varchar(length=64)
    created_at = Timestamptz()
    updated_at = Timestamptz()


class OrderReturnRow(Table, tablename="order_returns"):
    """A return's look-up row (the return itself is in its order's document)."""

    id = Varchar(length=40, primary_key=True)
    order_id = Varchar(length=40)
    status = Varchar(length=32)
    created_at = Timestamptz()
    updated_at = Timestamptz()


class JobLeaseRow(Table, tablename="job_leases"):
    """Which process runs a background job (the reconciliation) until when, on the
    database's clock; see ``ordnung.core.persistence.leases``."""

    name = Varchar(length=64, primary_key=True)
    owner = Varchar(length=40)
    lease_until = Timestamptz()


ALL_TABLES = (*ALL_TABLES, OrderShipmentRow, OrderReturnRow, JobLeaseRow)


class PluginRecordRow(Table, tablename="plugin_records"):
    """A plugin's own record (``ordnung.core.persistence.plugin_store``); its primary key
    is (plugin, kind, key)."""

    plugin = Varchar(length=64, primary_key=True)
    kind = Varchar(length=64)
    key = Varchar(length=200)
    data = Text()
    counter = BigInt()
    updated_at = Timestamptz()


class WebhookEndpointRow(Table, tablename="webhook_endpoints"):
    id = Varchar(length=40, primary_key=True)
    url = Text()
    description = Text()
    event_types = Text()
    channels = Text()
    enabled = Boolean()
    disabled_reason = Text(null=True, default=None)
    secrets = Text()
    failing_since = Timestamptz(null=True, default=None)
    created_at = Timestamptz()
    updated_at = Timestamptz()
    #: ``staff`` or ``customer``: which view of orders the endpoint receives
    shape = Varchar(length=16)


class WebhookDeliveryRow(Table, tablename="webhook_deliveries"):
    id = Varchar(length=40, primary_key=True)
    endpoint_id = Varchar(length=40)
    event_id = Varchar(length=40)
    type = Varchar(length=64)
    payload = Text()
    status = Varchar(length=16)
    attempts = Integer()
    next_attempt_at = Timestamptz()
    retry_from = Timestamptz()
    last_status = Integer(null=True, default=None)
    last_error = Text(null=True, default=None)
    created_at = Timestamptz()
    delivered_at = Timestamptz(null=True, default=None)


class WebhookAttemptRow(Table, tablename="webhook_attempts"):
    id = Varchar(length=40, primary_key=True)
    delivery_id = Varchar(length=40)
    endpoint_id = Varchar(length=40)
    at = Timestamptz()
    status_code = Integer(null=True, default=None)
    latency_ms = Integer()
    answer = Text()
    error = Text(null=True, default=None)


ALL_TABLES = (*ALL_TABLES, PluginRecordRow, WebhookEndpointRow, WebhookDeliveryRow,
              WebhookAttemptRow)


class GenerationRow(Table, tablename="generations"):
    """A counter raised by every write that makes kept credentials or variants stale
    (``ordnung.core.persistence.generations``)."""

    name = Varchar(length=32, primary_key=True)
    value = BigInt()


ALL_TABLES = (*ALL_TABLES, GenerationRow)

#: primary keys of more than one column, in order (the class names the first)
COMPOSITE_KEYS: dict[str, tuple[str, ...]] = {
    "external_refs": ("namespace", "reference"),
    "plugin_records": ("plugin", "kind", "key"),
}


class Index(NamedTuple):
    """An index the code relies on: its table, columns in order, whether it is unique
    (a UNIQUE constraint counts as one) and the condition of a partial index."""

    table: str
    columns: tuple[str, ...]
    unique: bool = False
    where: str = ""


#: every index but the primary keys', by name (a UNIQUE constraint: by its constraint's)
INDEXES: dict[str, Index] = {
    "variants_barcode": Index("variants", ("barcode",)),
    "variants_product": Index("variants", ("product_id",)),
    "stock_levels_sku_location_slice": Index("stock_levels", ("sku", "location_id", "slice"),
                                             unique=True),
    "stock_movements_sku": Index("stock_movements", ("sku", "location_id")),
    "stock_movements_order": Index("stock_movements", ("order_id",)),
    "customers_email": Index("customers", ("email",)),
    "orders_number": Index("orders", ("number",), unique=True),
    "orders_customer": Index("orders", ("customer_id", "id")),
    "orders_status_id": Index("orders", ("status", "id")),
    "orders_channel_id": Index("orders", ("channel", "id")),
    #: the fulfilment queue's order; priority is descending in the index (the schema
    #: comparison reads columns, not their direction)
    "orders_queue": Index("orders", ("status", "priority", "id")),
    "orders_email": Index("orders", ("email",)),
    "orders_authorizing": Index("orders", ("authorizing_since",),
                                where="authorizing_since IS NOT NULL"),
    "events_order": Index("events", ("order_id", "seq")),
    "outbox_pending": Index("outbox", ("id",), where="dispatched_at IS NULL"),
    "outbox_webhooks_pending": Index("outbox", ("id",), where="webhooks_at IS NULL"),
    "outbox_broker_pending": Index("outbox", ("id",), where="broker_at IS NULL"),
    "reaction_failures_once": Index("reaction_failures", ("outbox_id", "hook", "plugin"),
                                    unique=True),
    "reaction_failures_due": Index("reaction_failures", ("next_attempt_at",),
                                   where="resolved_at IS NULL"),
    "api_keys_secret_hash": Index("api_keys", ("secret_hash",)),
    "api_keys_customer": Index("api_keys", ("customer_id",)),
    "customer_sessions_access": Index("customer_sessions", ("access_hash",)),
    "customer_sessions_refresh": Index("customer_sessions", ("refresh_hash",)),
    "customer_sessions_previous": Index("customer_sessions", ("previous_refresh_hash",)),
    "customer_sessions_customer": Index("customer_sessions", ("customer_id",)),
    "account_tokens_hash": Index("account_tokens", ("token_hash",)),
    "account_tokens_customer": Index("account_tokens", ("customer_id", "purpose")),
    "order_shipments_order": Index("order_shipments", ("order_id",)),
    "order_returns_order": Index("order_returns", ("order_id",)),
    "webhook_deliveries_due": Index("webhook_deliveries", ("status", "next_attempt_at")),
    "webhook_deliveries_endpoint": Index("webhook_deliveries",
                                         ("endpoint_id", "status", "id")),
    "webhook_attempts_delivery": Index("webhook_attempts", ("delivery_id", "id")),
    #: the housekeeping pass's deletes (``ordnung.core.persistence.housekeeping``)
    "rate_limits_expires": Index("rate_limits", ("expires_at",)),
    "idempotency_records_created": Index("idempotency_records", ("created_at",)),
    "customer_sessions_refresh_expires": Index("customer_sessions", ("refresh_expires_at",)),
    "customer_sessions_revoked": Index("customer_sessions", ("revoked_at",),
                                       where="revoked_at IS NOT NULL"),
    "account_tokens_expires": Index("account_tokens", ("expires_at",)),
    "api_keys_expires": Index("api_keys", ("kind", "expires_at"),
                              where="expires_at IS NOT NULL"),
    "carts_guest_active": Index("carts", ("active_at",), where="customer_id IS NULL"),
    "carts_status_active": Index("carts", ("status", "active_at")),
}
