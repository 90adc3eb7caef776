"""The pricing pipeline: lines → promotions → gifts → shipping → tax → totals.

Each step is a small function over one ``PricingState`` (``state.py``), in the order
``pipeline.STEPS`` gives. The lines a cart or order buys are priced from the
catalogue; a variant marked ``given_only`` (a free gift) is refused there
(``NotForSale``): only a promotion or loyalty plugin adds it, as a zero-priced gift
line whose stock is reserved like any.

Deterministic: the same cart, catalogue and plugin settings give the same totals,
because every step is a pure function of its inputs and plugins are called in a fixed
order. Every amount that is not a catalogue price is an ``Adjustment`` or a step in
``explanation`` naming the plugin that caused it; each step appends what it did.

Rounding is documented once, in ``tax.py``; order-level discounts are spread over
lines in ``promotions.py``.
"""

from ordnung.core.pricing.pipeline import STEPS, PricingPipeline
from ordnung.core.pricing.state import Basket, Buyer, PricingServices, PricingState
from ordnung.core.pricing.tax import parse_rate, tax_amount

__all__ = ["STEPS", "Basket", "Buyer", "PricingPipeline", "PricingServices", "PricingState",
           "parse_rate", "tax_amount"]
