"""A coupon one plugin grants and another issues: the shape they share through a hook.

Loyalty plugins reward customers with coupon codes but do not keep coupons; the
plugin that validates codes at checkout does. ``ordnung_issue_coupon`` hands a
``CouponGrant`` to that plugin, so neither reads or writes the other's store.
"""

from __future__ import annotations

from datetime import datetime

import msgspec


class CouponGrant(msgspec.Struct, kw_only=True, frozen=True):
    """A coupon to issue. Exactly one of ``percent`` and ``amount`` is set."""

    code: str
    #: whole percent off the subtotal, 1..100
    percent: int = 0
    #: a fixed amount off, in minor units of ``currency``
    amount: int = 0
    currency: str = ""
    #: the subtotal (before discounts) must reach this
    min_subtotal: int = 0
    expires_at: datetime | None = None
    #: total uses over all orders; None = unlimited
    max_uses: int | None = None
    #: uses per customer id and per e-mail address; None = unlimited
    max_uses_per_customer: int | None = None
    #: only this customer may use it
    customer_id: str | None = None
    description: str = ""
