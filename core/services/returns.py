"""Returns (RMA): requested → approved | rejected → received → refunded, with restocking."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from fractions import Fraction

from ordnung.core.domain.common import new_id, utcnow
from ordnung.core.domain.money import round_ratio
from ordnung.core.domain.orders import Order, OrderLine
from ordnung.core.domain.returns import ListedReturn, ReturnLine, ReturnRequest
from ordnung.core.errors import Conflict, InvalidInput
from ordnung.core.requests import ReturnLineInput
from ordnung.core.runtime import OrderChange, Runtime
from ordnung.core.services.order_parts import PartFilter, get_return, list_returns
from ordnung.core.services.payments import PaymentService


def unit_refund(order: Order, line: OrderLine, quantity: int) -> int:
    """What ``quantity`` units of ``line`` cost the customer, discount and tax included."""
    paid = line.line_total + line.discount + (0 if order.prices_include_tax else line.tax)
    return round_ratio(Fraction(paid * quantity, line.quantity))


class ReturnService:
    def __init__(self, rt: Runtime, payments: PaymentService) -> None:
        self.rt = rt
        self.payments = payments

    async def list(self, where: PartFilter, *, after: str | None = None,
                   limit: int = 50) -> list[ListedReturn]:
        """Returns across orders (see ``ordnung.core.services.order_parts``)."""
        return await list_returns(self.rt, where, after=after, limit=limit)

    async def get(self, return_id: str) -> ListedReturn:
        return await get_return(self.rt, return_id)

    async def request(self, order_id: str, lines: Sequence[ReturnLineInput], *,
                      reason: str = "", actor: str = "system") -> tuple[Order, ReturnRequest]:
        if not lines:
            raise InvalidInput("a return needs at least one line", field="lines")

        async def work(change: OrderChange) -> ReturnRequest:
            order = change.order
            change.require("order", order, "return")
            open_returns: dict[str, int] = {}
            for r in order.returns:
                if self.rt.lifecycle.return_open(r):
                    for rl in r.lines:
                        open_returns[rl.line_id] = open_returns.get(rl.line_id, 0) + rl.quantity
            wanted: list[ReturnLine] = []
            for item in lines:
                line = order.line(item.line_id)
                returnable = line.shipped - line.returned - open_returns.get(line.id, 0)
                if item.quantity <= 0 or item.quantity > returnable:
                    raise InvalidInput(f"line {line.id}: {item.quantity} requested, "
                                       f"{returnable} returnable", field="lines",
                                       line_id=line.id, returnable=returnable)
                wanted.append(ReturnLine(line_id=line.id, sku=line.sku, quantity=item.quantity,
                                         restock=item.restock))
            rma = ReturnRequest(id=new_id("ret"), lines=wanted, reason=reason,
                                refund_amount=sum(unit_refund(order, order.line(w.line_id),
                                                              w.quantity) for w in wanted),
                                created_at=utcnow())
            order.returns.append(rma)
            change.emit("return.requested", machine="return", entity_id=rma.id,
                        to_state="requested",
                        data={"reason": reason, "refund_amount": rma.refund_amount,
                              "lines": {w.line_id: w.quantity for w in wanted}})
            return rma

        rma, order = await self.rt.change_order(order_id, actor, work)
        return order, rma

    async def _step(self, order_id: str, return_id: str, event: str, actor: str,
                    data: dict[str, object] | None = None) -> Order:
        async def work(change: OrderChange) -> None:
            await change.transition("return", change.order.return_request(return_id), event,
                                    data=data)

        return (await self.rt.change_order(order_id, actor, work))[1]

    async def approve(self, order_id: str, return_id: str, *, actor: str = "system") -> Order:
        return await self._step(order_id, return_id, "approve", actor)

    async def reject(self, order_id: str, return_id: str, *, reason: str = "",
                     actor: str = "system") -> Order:
        return await self._step(order_id, return_id, "reject", actor, {"reason": reason})

    async def receive(self, order_id: str, return_id: str, *,
                      restock: Mapping[str, bool] | None = None,
                      actor: str = "system") -> Order:
        """Goods are back: restock what is sellable, and move the order to (partially) returned."""
        async def work(change: OrderChange) -> None:
            order = change.order
            rma = order.return_request(return_id)
            change.require("return", rma, "receive")
            for rl in rma.lines:
                if restock is not None and rl.line_id in restock:
                    rl.restock = restock[rl.line_id]
                line = order.line(rl.line_id)
                line.returned += rl.quantity
                if rl.restock:
                    location = next((s.location_id for s in order.shipments
                                     if self.rt.lifecycle.shipment_left(s)
                                     and any(sl.line_id == rl.line_id for sl in s.lines)), None)
                    if location is None:
                        raise InvalidInput(f"line {rl.line_id} was never shipped",
                                           field="lines")
                    await change.move_stock("restock", rl.sku, location, rl.quantity, 0,
                                            f"return {rma.id}")
            await change.transition("return", rma, "receive",
                                    data={"restocked": {rl.line_id: rl.quantity
                                                        for rl in rma.lines if rl.restock}})
            everything = all(ln.returned >= ln.quantity - ln.cancelled for ln in order.lines
                             if ln.quantity - ln.cancelled > 0)
            await change.transition("order", order, "return_all" if everything
                                    else "return_partial")

        return (await self.rt.change_order(order_id, actor, work))[1]

    async def refund(self, order_id: str, return_id: str, *, amount: int | None = None,
                     actor: str = "system") -> Order:
        """Refund a received return through its payments, then close it."""
        async def start(change: OrderChange) -> int:
            rma = change.order.return_request(return_id)
            change.require("return", rma, "refund")
            if rma.refund_in_flight:
                raise Conflict(f"return {rma.id} is being refunded", return_id=rma.id)
            value = rma.refund_amount if amount is None else amount
            refundable = sum(p.captured - p.refunded for p in change.order.payments)
            # a return worth nothing (a free gift sent back) closes without a payment refund
            if value < 0 or value > refundable:
                raise InvalidInput(f"cannot refund {value}; {refundable} is refundable",
                                   field="amount", refundable=refundable)
            rma.refund_in_flight = True
            return value

        value, _ = await self.rt.change_order(order_id, actor, start)
        try:
            remaining = value
            order = await self.rt.orders.get(order_id)
            for p in order.payments:
                if remaining == 0:
                    break
                part = min(remaining, p.captured - p.refunded)
                if part > 0:
                    order = await self.payments.refund(order_id, amount=part, payment_id=p.id,
                                                       reason=f"return {return_id}", actor=actor)
                    remaining -= part
        except Exception:
            async def unmark(change: OrderChange) -> None:
                change.order.return_request(return_id).refund_in_flight = False

            await self.rt.change_order(order_id, actor, unmark)
            raise

        async def finish(change: OrderChange) -> None:
            rma = change.order.return_request(return_id)
            rma.refund_in_flight = False
            rma.refund_amount = value
            await change.transition("return", rma, "refund", data={"amount": value})

        return (await self.rt.change_order(order_id, actor, finish))[1]
