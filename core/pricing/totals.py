"""Step 6, totals: what the customer pays, and the one line that sums it up."""

from __future__ import annotations

from ordnung.core.domain.pricing import Totals
from ordnung.core.pricing.state import PricingServices, PricingState


async def sum_totals(state: PricingState, services: PricingServices) -> None:
    del services  # the sum needs nothing outside the state
    selection = state.shipping
    subtotal = state.subtotal
    discounts = sum(a.amount for a in state.adjustments)
    shipping = selection.price if selection else 0
    tax = sum(line.tax for line in state.lines) + (selection.tax if selection else 0)
    total = subtotal + discounts + shipping + (0 if state.inclusive else tax)
    state.totals = Totals(subtotal=subtotal, discounts=discounts, shipping=shipping, tax=tax,
                          total=total, balance=total)
    fmt = state.fmt
    state.explain("totals", "core",
                  f"subtotal {fmt(subtotal)} + discounts {fmt(discounts)} + shipping "
                  f"{fmt(shipping)}" + (f" (tax {fmt(tax)} included)" if state.inclusive
                                        else f" + tax {fmt(tax)}"),
                  amount=total)
