"""Step 4, shipping: every carrier's quotes, and the one the cart chose.

Outside placement an unavailable method is explained, not refused, so a cart can be
shown with the quotes it may choose from.
"""

from __future__ import annotations

from ordnung.core.domain.pricing import ShippingSelection
from ordnung.core.errors import InvalidInput, PluginError
from ordnung.core.pricing.state import PricingServices, PricingState


async def collect_quotes(state: PricingState, services: PricingServices) -> None:
    for plugin, answers in await services.plugins.call("ordnung_shipping_quotes",
                                                       ctx=state.context()):
        for quote in answers:
            if quote.price < 0:
                raise PluginError(plugin, "shipping quotes must have a non-negative price")
            state.quotes.append((f"{plugin}:{quote.service}", quote))


def available(state: PricingState) -> str:
    return ", ".join(method for method, _ in state.quotes)


def select(state: PricingState, wanted: str) -> None:
    chosen = [(method, quote) for method, quote in state.quotes if method == wanted]
    if chosen:
        method, quote = chosen[0]
        carrier, service = method.split(":", 1)
        state.shipping = ShippingSelection(method=method, carrier=carrier, service=service,
                                           name=quote.name, price=quote.price,
                                           expected_delivery=quote.expected_delivery)
        state.explain("shipping", carrier, f"{quote.name} ({service})", amount=quote.price)
    elif state.strict:
        raise InvalidInput(f"shipping method {wanted!r} is not available for this cart "
                           f"(available: {available(state) or 'none'})",
                           field="shipping_method")
    else:
        state.explain("shipping", "core", f"shipping method {wanted!r} is not available")


async def quote_shipping(state: PricingState, services: PricingServices) -> None:
    await collect_quotes(state, services)
    wanted = state.basket.shipping_method
    if wanted:
        select(state, wanted)
    elif state.strict and state.quotes:
        raise InvalidInput(f"choose a shipping method (available: {available(state)})",
                           field="shipping_method")
