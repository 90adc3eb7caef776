"""Customers: guest or registered, with what loyalty rules read."""

from __future__ import annotations

from datetime import datetime

import msgspec

from ordnung.core.domain.addresses import Address


class Customer(msgspec.Struct, kw_only=True):
    id: str
    email: str
    name: str = ""
    phone: str = ""
    tags: list[str] = []
    addresses: list[Address] = []
    consents: dict[str, bool] = {}
    #: lifetime captured spend per currency, in minor units
    lifetime_spend: dict[str, int] = {}
    order_count: int = 0
    registered: bool = True
    #: the customer proved they receive mail at ``email`` (a token sent there came back)
    email_verified: bool = False
    erased: bool = False
    created_at: datetime
