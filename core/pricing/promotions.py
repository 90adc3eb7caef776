"""Step 2, promotions: the plugins' discounts, capped and spread over the lines.

Gift lines the plugins answer are kept for the gifts step; notes go straight into the
explanation. Order-level discounts are spread over lines in proportion to their
amounts (largest remainder, no cent lost) before tax, so each line's taxable base is
``line_total + discount``.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ordnung.core.domain.money import allocate
from ordnung.core.domain.orders import OrderLine
from ordnung.core.domain.pricing import Adjustment, Discount, GiftLine, Note
from ordnung.core.errors import PluginError
from ordnung.core.pricing.state import PricingServices, PricingState


def take_discount(state: PricingState, plugin: str, answer: Discount) -> None:
    if answer.amount < 0:
        raise PluginError(plugin, "a Discount amount must be positive")
    if answer.line_id is not None and answer.line_id not in {line.id for line in state.lines}:
        raise PluginError(plugin, f"discount targets unknown line {answer.line_id!r}")
    state.adjustments.append(Adjustment(
        id=f"A{len(state.adjustments) + 1}", source=plugin, kind="discount",
        amount=-answer.amount, reason=answer.reason, line_id=answer.line_id, code=answer.code))


def take_answer(state: PricingState, plugin: str, answer: Any) -> None:
    if isinstance(answer, Discount):
        take_discount(state, plugin, answer)
    elif isinstance(answer, GiftLine):
        state.gifts.append((plugin, answer))
    elif isinstance(answer, Note):
        state.explain("promotions", plugin, answer.message)
    else:
        raise PluginError(plugin, f"ordnung_adjustments returned {type(answer).__name__}")


def cap_discounts(state: PricingState) -> None:
    """Keep every line and the order at or above zero; say what was cut."""
    remaining = {line.id: line.line_total for line in state.lines}
    order_left = sum(remaining.values())
    capped: list[Adjustment] = []
    for adj in sorted(state.adjustments, key=lambda a: (a.line_id is None, a.id)):
        wanted = -adj.amount
        limit = min(remaining[adj.line_id] if adj.line_id else order_left, order_left)
        granted = min(wanted, max(limit, 0))
        if granted != wanted:
            state.explain("promotions", "core",
                          f"{adj.source}: discount capped at {state.fmt(granted)} (asked "
                          f"{state.fmt(wanted)}) so the total never goes below zero",
                          line_id=adj.line_id)
        if adj.line_id:
            remaining[adj.line_id] -= granted
        order_left -= granted
        capped.append(msgspec.structs.replace(adj, amount=-granted))
    capped.sort(key=lambda a: a.id)
    state.adjustments = capped


def allocate_discounts(lines: list[OrderLine],
                       adjustments: list[Adjustment]) -> list[OrderLine]:
    per_line = {line.id: 0 for line in lines}
    order_level = 0
    for adj in adjustments:
        if adj.line_id:
            per_line[adj.line_id] += adj.amount
        else:
            order_level += adj.amount
    if order_level:
        bases = [line.line_total + per_line[line.id] for line in lines]
        for line, share in zip(lines, allocate(order_level, bases), strict=True):
            per_line[line.id] += share
    return [msgspec.structs.replace(line, discount=per_line[line.id]) for line in lines]


async def apply_promotions(state: PricingState, services: PricingServices) -> None:
    for plugin, answers in await services.plugins.call("ordnung_adjustments",
                                                       ctx=state.context()):
        for answer in answers:
            take_answer(state, plugin, answer)
    cap_discounts(state)
    for adj in state.adjustments:
        state.explain("promotions", adj.source, adj.reason, amount=adj.amount,
                      line_id=adj.line_id)
    state.set_lines(allocate_discounts(state.lines, state.adjustments))
