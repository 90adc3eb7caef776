"""What a worker last learned of its SKUs' availability, as a hint for gift decisions.

Pricing adds a promotion's gift only while the gift is in stock, which used to cost
every priced basket that earns a gift one statement (the gift's availability), on
every cart step and every placement, although the gift's stock is what every such
order reserves anyway, and every reservation's statement returns what is left.

So a worker keeps those figures: each reservation and each availability read tells
it what was available then. A gift whose SKU had plenty available a moment ago (at
least ``MARGIN`` units beyond the gift's quantity, learned at most ``MAX_AGE_S``
ago) is added without reading its stock again. The figure is a hint, never the
answer: the placement's reservation decides, and a placement whose reservation
finds a gift that was assumed on a hint out of stock starts again and reads it (see
``OrderService.place``). A cart shows the gift the same way and learns the truth at
placement. Nothing is assumed for a gift that is scarce, or whose figure is old or
was never learned, and a stock change this worker makes that lowers a SKU's
availability (an adjustment, a count) forgets the SKU's figure.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

#: units beyond the gift's quantity that make a figure "plenty"
MARGIN = 50
#: seconds a figure is trusted after it was learned
MAX_AGE_S = 5.0
#: SKUs a worker keeps figures for (all are dropped when it has more)
MAX_SKUS = 10_000


class StockHints:
    """Per worker: SKU → (units available, when learned on the monotonic clock)."""

    def __init__(self) -> None:
        self._seen: dict[str, tuple[int, float]] = {}

    def learn(self, available: Mapping[str, int]) -> None:
        if not available:
            return
        if len(self._seen) + len(available) > MAX_SKUS:
            self._seen.clear()
        now = time.monotonic()
        for sku, units in available.items():
            self._seen[sku] = (units, now)

    def forget(self, skus: Iterable[str]) -> None:
        for sku in skus:
            self._seen.pop(sku, None)

    def plenty(self, sku: str, quantity: int) -> bool:
        """Whether ``quantity`` of ``sku`` may be taken to be in stock without asking."""
        seen = self._seen.get(sku)
        return (seen is not None and seen[0] >= quantity + MARGIN
                and time.monotonic() - seen[1] <= MAX_AGE_S)
