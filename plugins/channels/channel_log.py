"""Channel sync reference plugin: keeps each channel's last known availability per SKU.

A real marketplace connector (Etsy, eBay...) implements the same hook and
pushes the number to the marketplace's API. This one records what it was told
and logs it, which is what the storefront demo and the tests look at.
"""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from ordnung.plugin import AvailabilityChange, hookimpl

log = structlog.get_logger("ordnung.channels")


class ChannelLog:
    """Records the availability each channel was told, per SKU."""

    def __init__(self) -> None:
        self.available: dict[str, dict[str, int]] = {}
        self.notifications = 0

    @hookimpl
    def ordnung_availability_changed(self, changes: Sequence[AvailabilityChange]) -> None:
        for change in changes:
            for channel in change.channels:
                self.available.setdefault(channel, {})[change.sku] = change.available
                self.notifications += 1
            log.info("availability pushed", sku=change.sku, available=change.available,
                     channels=change.channels)
