"""A complimentary gift once the subtotal reaches a threshold.

Tiers are independent: reaching 100 after 50 earns both gifts. A gift is
added when the subtotal reaches its tier and disappears when it falls below;
it is never added twice, and its stock is reserved like any line (the core
skips it, with a reason, when it is out of stock). The explanation says how
much more to spend for the next gift.
"""

from __future__ import annotations

import msgspec

from ordnung.plugin import GiftLine, Money, Note, PricingContext, hookimpl


class Tier(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    threshold: int
    currency: str
    sku: str
    quantity: int = 1
    name: str = ""


class FreeGift:
    """Free gift lines at spending thresholds."""

    class Settings(msgspec.Struct, forbid_unknown_fields=True):
        tiers: list[Tier] = []

    def __init__(self, settings: FreeGift.Settings) -> None:
        self.settings = settings

    @hookimpl
    def ordnung_adjustments(self, ctx: PricingContext) -> list[GiftLine | Note]:
        out: list[GiftLine | Note] = []
        tiers = sorted((t for t in self.settings.tiers if t.currency == ctx.currency),
                       key=lambda t: t.threshold)
        for tier in tiers:
            label = tier.name or tier.sku
            if ctx.subtotal >= tier.threshold:
                out.append(GiftLine(sku=tier.sku, quantity=tier.quantity,
                                    reason=f"free {label} for orders from "
                                           f"{Money(tier.threshold, tier.currency).format()}"))
            else:
                missing = Money(tier.threshold - ctx.subtotal, tier.currency)
                out.append(Note(message=f"spend {missing.format()} more for a free {label}"))
                break
        return out
