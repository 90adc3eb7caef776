"""The plugin API: everything a plugin imports from ordnung, in one module.

``from ordnung.plugin import hookimpl, PricingContext, ShippingQuote, ...``: the hook
marker, every type a hook's signature names (arguments and answers), the plugin
context a plugin gets at start, the errors a hook may raise, and the few helpers
the built-in plugins share (money, ISO codes, ids and the clock). The modules
these come from are the core's internals and may move; this module is what stays.
The hooks themselves, with their conventions and contracts, are ``core/hookspecs.py``
and docs/hooks.md.
"""

from ordnung.core.contexts import PricingContext, RiskContext, TransitionContext
from ordnung.core.domain.accounts import AccountNotice
from ordnung.core.domain.addresses import (
    EU_MEMBER_STATES,
    Address,
    require_iso,
    subdivisions_of,
)
from ordnung.core.domain.catalog import Variant
from ordnung.core.domain.common import new_id, utcnow
from ordnung.core.domain.coupons import CouponGrant
from ordnung.core.domain.customers import Customer
from ordnung.core.domain.events import Event
from ordnung.core.domain.inventory import AvailabilityChange
from ordnung.core.domain.money import Money, is_valid_currency, round_ratio
from ordnung.core.domain.orders import Order, OrderLine
from ordnung.core.domain.payments import (
    GatewayResult,
    OperationLookup,
    PaymentMethod,
    PaymentRequest,
    PaymentUpdate,
)
from ordnung.core.domain.pricing import (
    Discount,
    GiftLine,
    LineTax,
    Note,
    RiskAssessment,
    ShippingQuote,
    TaxAnswer,
    Violation,
)
from ordnung.core.domain.shipments import Label, Shipment, TrackingUpdate
from ordnung.core.errors import (
    Forbidden,
    InvalidInput,
    OrdnungError,
    PluginError,
    ValidationFailed,
)
from ordnung.core.hookspecs import hookimpl
from ordnung.core.lifecycle.machine import StateExtension, StateSpec, Transition
from ordnung.core.persistence.codec import encode
from ordnung.core.persistence.plugin_store import PluginStore
from ordnung.core.plugin_base import WithContext
from ordnung.core.plugin_context import PluginContext, PluginEngine

__all__ = [
    # the hook marker
    "hookimpl",
    # what a plugin gets at start (ordnung_plugin_started)
    "PluginContext",
    "PluginEngine",
    "PluginStore",
    "WithContext",
    # hook arguments
    "AccountNotice",
    "AvailabilityChange",
    "CouponGrant",
    "Customer",
    "Event",
    "Order",
    "OrderLine",
    "PaymentRequest",
    "PricingContext",
    "RiskContext",
    "Shipment",
    "TransitionContext",
    # hook answers
    "Discount",
    "GatewayResult",
    "GiftLine",
    "Label",
    "LineTax",
    "Note",
    "OperationLookup",
    "PaymentMethod",
    "PaymentUpdate",
    "RiskAssessment",
    "ShippingQuote",
    "StateExtension",
    "StateSpec",
    "TaxAnswer",
    "TrackingUpdate",
    "Transition",
    "Violation",
    # errors a hook may raise
    "Forbidden",
    "InvalidInput",
    "OrdnungError",
    "PluginError",
    "ValidationFailed",
    # shared helpers
    "Address",
    "EU_MEMBER_STATES",
    "Money",
    "Variant",
    "encode",
    "is_valid_currency",
    "new_id",
    "require_iso",
    "round_ratio",
    "subdivisions_of",
    "utcnow",
]
