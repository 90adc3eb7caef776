"""Fulfilment: the priority queue, shipments, picking, packing with scans, shipping, delivery.

Every operation first asks the order's *state* whether it allows fulfilment
and then the core's own invariant — the payment is secured — so neither a
plugin-added state nor a plugin bug can ship an unpaid order.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import structlog

from ordnung.core.domain.common import new_id, utcnow
from ordnung.core.domain.orders import Order
from ordnung.core.domain.shipments import (
    Label,
    ListedShipment,
    Shipment,
    ShipmentLine,
    TrackingEvent,
    TrackingUpdate,
)
from ordnung.core.errors import (
    InvalidInput,
    InvariantViolation,
    NotFound,
    OrdnungError,
)
from ordnung.core.invariants import payment_secured
from ordnung.core.lifecycle import Lifecycle
from ordnung.core.runtime import OrderChange, Runtime
from ordnung.core.services.order_parts import (
    PartFilter,
    get_shipment,
    list_shipments,
)

log = structlog.get_logger("ordnung.fulfilment")


class FulfilmentService:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def _ready(self, change: OrderChange) -> None:
        self._check_ready(change.order)

    def _check_ready(self, order: Order) -> None:
        self.rt.machines["order"].require(order.id, order.status, "fulfil")
        if not payment_secured(order):
            raise InvariantViolation(
                f"order {order.number} is not paid: it cannot be picked, packed or "
                "shipped until its payment is secured", order_id=order.id)

    async def queue(self, limit: int = 100, after: str | None = None) -> list[Order]:
        """Orders ready to fulfil, highest priority first, then oldest first; ``after`` is
        the id of the last order of the previous page. A page is full unless the queue
        ends: orders the database offers that are not ready (unpaid, nothing left to
        ship) are skipped and more are read."""
        states = self.rt.machines["order"].states_allowing("fulfil")
        ready: list[Order] = []
        while len(ready) < limit:
            batch = await self.rt.orders.queue(states, limit=limit, after=after)
            ready.extend(o for o in batch if payment_secured(o)
                         and any(line.open_quantity > 0 for line in o.lines))
            if len(batch) < limit:
                break
            after = batch[-1].id
        return ready[:limit]

    async def shipments(self, where: PartFilter, *, after: str | None = None,
                        limit: int = 50) -> list[ListedShipment]:
        """Shipments across orders (see ``ordnung.core.services.order_parts``)."""
        return await list_shipments(self.rt, where, after=after, limit=limit)

    async def shipment(self, shipment_id: str) -> ListedShipment:
        return await get_shipment(self.rt, shipment_id)

    async def create_shipment(self, order_id: str, *, lines: Mapping[str, int] | None = None,
                              location_id: str | None = None,
                              actor: str = "system") -> tuple[Order, list[Shipment]]:
        """Create shipments for unshipped units: by default everything, one per location."""
        async def work(change: OrderChange) -> list[Shipment]:
            self._ready(change)
            order = change.order
            pending = _in_open_shipments(order, self.rt.lifecycle)
            wanted: dict[str, int] = {}
            for line in order.lines:
                free = line.open_quantity - pending.get(line.id, 0)
                if lines is None:
                    if free > 0:
                        wanted[line.id] = free
                elif line.id in lines:
                    qty = lines[line.id]
                    if qty <= 0 or qty > free:
                        raise InvalidInput(f"line {line.id}: {qty} requested, {free} left to ship",
                                           field="lines", line_id=line.id)
                    wanted[line.id] = qty
            if lines is not None:
                unknown = set(lines) - {ln.id for ln in order.lines}
                if unknown:
                    raise InvalidInput(f"unknown lines {sorted(unknown)}", field="lines")
            if not wanted:
                raise InvalidInput("nothing left to ship", field="lines")
            by_location: dict[str, list[ShipmentLine]] = {}
            held = _held_by_open_shipments(order, self.rt.lifecycle)
            for line_id, qty in wanted.items():
                line = order.line(line_id)
                remaining = qty
                for alloc in line.allocations:
                    if location_id and alloc.location_id != location_id:
                        continue
                    # units reserved here that no open shipment holds yet
                    free_here = alloc.quantity - held.get((line.id, alloc.location_id), 0)
                    take = min(remaining, free_here)
                    if take > 0:
                        by_location.setdefault(alloc.location_id, []).append(ShipmentLine(
                            line_id=line.id, sku=line.sku, barcode=line.barcode, quantity=take))
                        remaining -= take
                    if remaining == 0:
                        break
                if remaining:
                    raise InvalidInput(f"line {line_id}: only {qty - remaining} reserved at "
                                       f"{location_id or 'any location'}", field="location_id")
            created: list[Shipment] = []
            for loc, shipment_lines in sorted(by_location.items()):
                shipment = Shipment(
                    id=new_id("shp"), location_id=loc, lines=shipment_lines,
                    carrier=order.shipping.carrier if order.shipping else "",
                    service=order.shipping.service if order.shipping else "",
                    created_at=utcnow())
                order.shipments.append(shipment)
                change.emit("shipment.pending", machine="shipment", entity_id=shipment.id,
                            to_state=shipment.status,
                            data={"location_id": loc,
                                  "lines": {sl.line_id: sl.quantity for sl in shipment_lines}})
                created.append(shipment)
            return created

        created, order = await self.rt.change_order(order_id, actor, work)
        return order, created

    async def _shipment_op(self, shipment_id: str, order_id: str, actor: str,
                           op: Any) -> Order:
        async def work(change: OrderChange) -> None:
            self._ready_for_shipment(change)
            await op(change, change.order.shipment(shipment_id))

        return (await self.rt.change_order(order_id, actor, work))[1]

    def _ready_for_shipment(self, change: OrderChange) -> None:
        self._ready(change)

    async def pick(self, order_id: str, shipment_id: str, *, actor: str = "system") -> Order:
        async def op(change: OrderChange, shipment: Shipment) -> None:
            await change.transition("shipment", shipment, "pick")

        return await self._shipment_op(shipment_id, order_id, actor, op)

    async def pack(self, order_id: str, shipment_id: str, scans: Sequence[str], *,
                   actor: str = "system") -> Order:
        """Verify scanned SKUs or barcodes against the shipment; a wrong item is refused."""
        async def op(change: OrderChange, shipment: Shipment) -> None:
            change.require("shipment", shipment, "pack")
            # a SKU may sit on several lines (bought and given as a gift): count per SKU
            expected: Counter[str] = Counter()
            code_to_sku: dict[str, str] = {}
            for sl in shipment.lines:
                expected[sl.sku] += sl.quantity
                code_to_sku[sl.sku] = sl.sku
                if sl.barcode:
                    code_to_sku[sl.barcode] = sl.sku
            seen: Counter[str] = Counter()
            for code in scans:
                sku = code_to_sku.get(code.strip())
                if sku is None:
                    raise InvalidInput(f"scanned {code!r}, which is not in this shipment",
                                       field="scans", scanned=code,
                                       expected=sorted(expected))
                seen[sku] += 1
                if seen[sku] > expected[sku]:
                    raise InvalidInput(f"scanned {sku} {seen[sku]} times; the shipment "
                                       f"holds {expected[sku]}", field="scans", scanned=code)
            missing = {sku: qty - seen[sku] for sku, qty in expected.items() if seen[sku] < qty}
            if missing:
                raise InvalidInput("not everything was scanned: missing " + ", ".join(
                    f"{n} × {sku}" for sku, n in sorted(missing.items())), field="scans",
                    missing=missing)
            for sl in shipment.lines:
                sl.packed = sl.quantity
            await change.transition("shipment", shipment, "pack",
                                    data={"scans": len(scans)})

        return await self._shipment_op(shipment_id, order_id, actor, op)

    async def ship(self, order_id: str, shipment_id: str, *, tracking_number: str = "",
                   carrier: str | None = None, actor: str = "system") -> Order:
        """Ship a packed shipment: label from the carrier plugin, stock consumed."""
        order = await self.rt.orders.get(order_id)
        shipment = order.shipment(shipment_id)
        # everything that would refuse the shipment is checked before a label is bought
        self._check_ready(order)
        self.rt.machines["shipment"].require(shipment.id, shipment.status, "ship")
        carrier_name = carrier or shipment.carrier
        label: Label | None = None
        if carrier_name and self.rt.plugins.implements(carrier_name, "ordnung_create_label"):
            label = await self.rt.plugins.call("ordnung_create_label", to=carrier_name,
                                               order=order, shipment=shipment)
        number = label.tracking_number if label else tracking_number
        if not number:
            raise InvalidInput("a tracking number is required (the carrier made none)",
                               field="tracking_number")

        async def op(change: OrderChange, shipment: Shipment) -> None:
            change.require("shipment", shipment, "ship")
            for sl in shipment.lines:
                await change.move_stock("ship", sl.sku, shipment.location_id, -sl.quantity,
                                        -sl.quantity, f"shipment {shipment.id}")
                line = change.order.line(sl.line_id)
                line.shipped += sl.quantity
                _consume_allocation(line.allocations, shipment.location_id, sl.quantity)
            shipment.carrier = carrier_name or ""
            shipment.tracking_number = number
            shipment.label_url = label.label_url if label else ""
            shipment.shipped_at = utcnow()
            change.remember("tracking", number, shipment.id)
            await change.transition("shipment", shipment, "ship",
                                    data={"carrier": shipment.carrier,
                                          "tracking_number": number,
                                          "expected_delivery": (
                                              change.order.shipping.expected_delivery.isoformat()
                                              if change.order.shipping
                                              and change.order.shipping.expected_delivery
                                              else None)})
            all_shipped = all(ln.shipped >= ln.quantity - ln.cancelled for ln in change.order.lines)
            await change.transition("order", change.order,
                                    "ship_all" if all_shipped else "ship_partial")

        return await self._shipment_op(shipment_id, order_id, actor, op)

    async def deliver(self, order_id: str, shipment_id: str, *, actor: str = "system") -> Order:
        async def work(change: OrderChange) -> None:
            shipment = change.order.shipment(shipment_id)
            await self._deliver(change, shipment)

        return (await self.rt.change_order(order_id, actor, work))[1]

    async def _deliver(self, change: OrderChange, shipment: Shipment) -> None:
        lifecycle = self.rt.lifecycle
        if lifecycle.shipment_delivered(shipment):
            return
        await change.transition("shipment", shipment, "deliver")
        shipment.delivered_at = utcnow()
        live = [s for s in change.order.shipments if lifecycle.shipment_live(s)]
        if all(lifecycle.shipment_delivered(s) for s in live) and change.has_transition(
                "order", change.order, "deliver"):
            await change.transition("order", change.order, "deliver")

    async def cancel_shipment(self, order_id: str, shipment_id: str, *,
                              actor: str = "system") -> Order:
        async def work(change: OrderChange) -> None:
            await change.transition("shipment", change.order.shipment(shipment_id), "cancel")

        return (await self.rt.change_order(order_id, actor, work))[1]

    async def label(self, carrier: str, tracking_number: str) -> bytes | None:
        """The label document ``carrier`` keeps for ``tracking_number``; None when the
        carrier keeps none (or names no plugin that serves labels)."""
        document: bytes | None = await self.rt.plugins.call(
            "ordnung_label_document", to=carrier, tracking_number=tracking_number)
        return document

    async def tracking(self, carrier: str, payload: dict[str, Any], *,
                       actor: str = "system") -> list[str]:
        """Apply a carrier's tracking push; returns the shipment ids it touched."""
        if not self.rt.plugins.implements(carrier, "ordnung_parse_tracking"):
            raise NotFound("carrier tracking", carrier)
        try:
            updates: list[TrackingUpdate] = await self.rt.plugins.call(
                "ordnung_parse_tracking", to=carrier, payload=payload) or []
        except OrdnungError:
            raise
        except Exception as exc:  # the hook's contract: raising refuses the payload
            raise InvalidInput(f"{carrier} refused the tracking payload: "
                               f"{type(exc).__name__}: {exc}", field="payload") from exc
        touched: list[str] = []
        for update in updates:
            touched.extend(await self.track(update, actor=actor))
        return touched

    async def track(self, update: TrackingUpdate, *, actor: str = "system") -> list[str]:
        found = await self.rt.orders.find_reference("tracking", update.tracking_number)
        if found is None:
            raise NotFound("tracking number", update.tracking_number)
        touched: list[str] = []
        for order_id in [found[0]]:
            async def work(change: OrderChange) -> list[str]:
                hits = [s for s in change.order.shipments
                        if s.tracking_number == update.tracking_number]
                for shipment in hits:
                    if self.rt.lifecycle.shipment_delivered(shipment):
                        continue
                    shipment.tracking.append(TrackingEvent(status=update.status,
                                                           description=update.description,
                                                           at=update.at or utcnow()))
                    change.emit("shipment.tracking", machine="shipment", entity_id=shipment.id,
                                data={"status": update.status,
                                      "description": update.description})
                    if update.status == "delivered":
                        await self._deliver(change, shipment)
                return [s.id for s in hits]

            ids, _ = await self.rt.change_order(order_id, actor, work)
            touched.extend(ids)
        return touched


def _in_open_shipments(order: Order, lifecycle: Lifecycle) -> dict[str, int]:
    out: dict[str, int] = {}
    for s in order.shipments:
        if not lifecycle.shipment_holds_units(s):
            continue
        for sl in s.lines:
            out[sl.line_id] = out.get(sl.line_id, 0) + sl.quantity
    return out


def _held_by_open_shipments(order: Order,
                            lifecycle: Lifecycle) -> dict[tuple[str, str], int]:
    """Units per (line, location) already in shipments that have not shipped yet."""
    out: dict[tuple[str, str], int] = {}
    for s in order.shipments:
        if not lifecycle.shipment_holds_units(s):
            continue
        for sl in s.lines:
            key = (sl.line_id, s.location_id)
            out[key] = out.get(key, 0) + sl.quantity
    return out


def _consume_allocation(allocations: list[Any], location_id: str, quantity: int) -> None:
    from ordnung.core.domain.inventory import Allocation

    for i, alloc in enumerate(allocations):
        if alloc.location_id == location_id and quantity > 0:
            take = min(quantity, alloc.quantity)
            allocations[i] = Allocation(location_id=location_id, quantity=alloc.quantity - take)
            quantity -= take
    allocations[:] = [a for a in allocations if a.quantity > 0]
