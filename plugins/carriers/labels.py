"""Shipping labels for the built-in carriers: a printable PDF, stored where it can be fetched.

``LabelCarrier`` is a mixin for carrier plugins. When a shipment ships it

* makes a tracking number (``<prefix><12 hex digits>``),
* draws a 4 × 6 inch label PDF with reportlab: carrier and service, the
  ship-to address, the order number, the expected delivery date, and the
  tracking number as a Code 128 barcode (with the number printed under it),
* stores the PDF in the carrier's own ``PluginStore`` (kind ``"label"``, key =
  tracking number; the bytes base64-encoded in the JSON record) and answers
  ``Label(tracking_number, label_url="/labels/<carrier>/<tracking number>")``.

``ordnung_label_document`` answers the stored PDF's bytes for a tracking number
(what ``GET /labels/<carrier>/<tracking>`` serves).

A label carries the customer's name and address, so the mixin also takes part
in data erasure: ``ordnung_erase_customer_data`` deletes the labels of the
customer's orders (the order keeps the tracking number and label URL).

Tracking pushes (``ordnung_parse_tracking``) take one event
``{"tracking_number", "status", "description"?, "at"?}`` or several under
``"events"``; ``status`` is one of ``in_transit``, ``out_for_delivery``,
``delivered``, ``exception`` (``picked_up`` is accepted as ``delivered``).
"""

from __future__ import annotations

import base64
import io
import secrets
from datetime import date, datetime
from functools import cache
from typing import Any

from reportlab.graphics import renderPDF
from reportlab.graphics.barcode import createBarcodeDrawing
from reportlab.graphics.shapes import Drawing
from reportlab.lib.units import inch
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFError, TTFont
from reportlab.pdfgen import canvas

from ordnung.plugin import (
    Address,
    Customer,
    InvalidInput,
    Label,
    Order,
    PluginContext,
    PluginError,
    Shipment,
    TrackingUpdate,
    hookimpl,
)

LABEL_KIND = "label"
#: index of an order's labels: key "<order id>:<tracking number>", no data
ORDER_INDEX_KIND = "order-label"
LABEL_SIZE = (4 * inch, 6 * inch)
TRACKING_STATUSES = {"in_transit", "out_for_delivery", "delivered", "exception"}
STATUS_ALIASES = {"picked_up": "delivered", "collected": "delivered"}


STANDARD_FONTS = ("Helvetica", "Helvetica-Bold")


@cache
def unicode_fonts() -> tuple[str, str] | None:
    """DejaVu Sans, when reportlab finds it on its font search path, else None."""
    try:
        pdfmetrics.registerFont(TTFont("OrdnungLabel", "DejaVuSans.ttf"))
        pdfmetrics.registerFont(TTFont("OrdnungLabel-Bold", "DejaVuSans-Bold.ttf"))
    except (TTFError, OSError):
        return None
    return "OrdnungLabel", "OrdnungLabel-Bold"


def label_fonts(texts: list[str]) -> tuple[str, str]:
    """(regular, bold) font names for a label showing ``texts``.

    Helvetica (built into every PDF reader, nothing embedded: a label of ~3 kB)
    when every character is in its Western European encoding; otherwise DejaVu
    Sans, embedded, which prints Central European and Greek or Cyrillic letters
    (Ł, ő, č, Ω, Ж). Without DejaVu Sans such letters print as blanks.
    """
    try:
        for text in texts:
            text.encode("cp1252")
    except UnicodeEncodeError:
        return unicode_fonts() or STANDARD_FONTS
    return STANDARD_FONTS


def new_tracking_number(prefix: str) -> str:
    """``prefix`` plus 12 random upper-case hex digits (48 bits: no practical collisions)."""
    return f"{prefix}{secrets.token_hex(6).upper()}"


def barcode_drawing(tracking_number: str) -> Drawing:
    """The tracking number as a Code 128 barcode drawing, number printed below."""
    drawing: Drawing = createBarcodeDrawing(
        "Code128", value=tracking_number, barHeight=0.9 * inch, barWidth=1.3,
        humanReadable=True, quiet=True)
    return drawing


def address_lines(address: Address) -> list[str]:
    """An address as printed on a label, top to bottom."""
    lines = [address.name]
    if address.company:
        lines.append(address.company)
    lines.append(address.line1)
    if address.line2:
        lines.append(address.line2)
    lines.append(" ".join(p for p in (address.postal_code, address.city) if p))
    if address.region:
        lines.append(address.region)
    lines.append(address.country)
    if address.phone:
        lines.append(f"Tel. {address.phone}")
    return [line for line in lines if line.strip()]


def render_label_pdf(*, carrier: str, service: str, heading: str, recipient: list[str],
                     order_number: str, tracking_number: str, weight_grams: int = 0,
                     expected_delivery: date | None = None,
                     sender: list[str] | None = None) -> bytes:
    """Draw a one-page 4 × 6 inch label and return the PDF bytes."""
    regular, bold = label_fonts([carrier, service, heading, *recipient, order_number,
                                 *(sender or [])])
    buffer = io.BytesIO()
    width, height = LABEL_SIZE
    pdf = canvas.Canvas(buffer, pagesize=LABEL_SIZE, pageCompression=1)
    pdf.setTitle(f"Label {tracking_number}")
    pdf.setAuthor("ordnung")
    margin = 0.25 * inch
    y = height - margin - 12
    pdf.setFont(bold, 14)
    pdf.drawString(margin, y, carrier)
    pdf.setFont(regular, 10)
    pdf.drawRightString(width - margin, y, service)
    y -= 8
    pdf.line(margin, y, width - margin, y)
    if sender:
        y -= 12
        pdf.setFont(regular, 7)
        pdf.drawString(margin, y, "From: " + ", ".join(sender))
    y -= 20
    pdf.setFont(bold, 9)
    pdf.drawString(margin, y, heading)
    pdf.setFont(regular, 12)
    for line in recipient:
        y -= 15
        pdf.drawString(margin + 8, y, line)
    y -= 14
    pdf.line(margin, y, width - margin, y)
    pdf.setFont(regular, 10)
    y -= 16
    pdf.drawString(margin, y, f"Order: {order_number}")
    if weight_grams:
        pdf.drawRightString(width - margin, y, f"Weight: {weight_grams / 1000:.3f} kg")
    if expected_delivery:
        y -= 14
        pdf.drawString(margin, y, f"Expected delivery: {expected_delivery.isoformat()}")
    drawing = barcode_drawing(tracking_number)
    scale = min(1.0, (width - 2 * margin) / drawing.width)
    drawing.scale(scale, scale)
    drawing.width *= scale
    drawing.height *= scale
    renderPDF.draw(drawing, pdf, (width - drawing.width) / 2, margin + 14)
    pdf.setFont(regular, 8)
    pdf.drawCentredString(width / 2, margin, f"Tracking number: {tracking_number}")
    pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def label_url(carrier: str, tracking_number: str) -> str:
    return f"/labels/{carrier}/{tracking_number}"


def parse_tracking_payload(payload: dict[str, Any]) -> list[TrackingUpdate]:
    """One event, or several under ``"events"``; refuses unknown statuses."""
    raw = payload.get("events", [payload])
    if not isinstance(raw, list) or not raw:
        raise InvalidInput("a tracking payload needs events", field="events")
    updates = []
    for item in raw:
        if not isinstance(item, dict) or not item.get("tracking_number"):
            raise InvalidInput("a tracking event needs a tracking_number",
                               field="tracking_number")
        status = STATUS_ALIASES.get(str(item.get("status", "")), str(item.get("status", "")))
        if status not in TRACKING_STATUSES:
            raise InvalidInput(f"unknown tracking status {item.get('status')!r} (expected one "
                               f"of {', '.join(sorted(TRACKING_STATUSES | set(STATUS_ALIASES)))})",
                               field="status")
        at = item.get("at")
        try:
            when = datetime.fromisoformat(str(at)) if at else None
        except ValueError as exc:
            raise InvalidInput(f"tracking time {at!r} is not ISO 8601", field="at") from exc
        updates.append(TrackingUpdate(tracking_number=str(item["tracking_number"]),
                                      status=status,
                                      description=str(item.get("description", "")), at=when))
    return updates


class LabelCarrier:
    """Mixin: PDF labels stored in the carrier's PluginStore, tracking pushes, erasure.

    A class using it sets ``tracking_prefix`` and may override ``label_heading``
    and ``label_recipient`` (store pickup prints the pick-up point).
    """

    name: str = ""
    context: PluginContext[Any] | None = None
    tracking_prefix: str = "OR"
    label_heading: str = "SHIP TO"

    @hookimpl
    def ordnung_plugin_started(self, context: PluginContext[Any]) -> None:
        self.context = context
        self.name = context.name

    def carrier_title(self) -> str:
        return self.name

    def service_title(self, shipment: Shipment, order: Order) -> str:
        if order.shipping and order.shipping.service == shipment.service:
            return order.shipping.name
        return shipment.service

    def label_recipient(self, order: Order, shipment: Shipment) -> list[str]:
        if order.shipping_address is None:
            raise InvalidInput(f"order {order.number} has no shipping address for the label",
                               field="shipping_address")
        return address_lines(order.shipping_address)

    def label_sender(self) -> list[str] | None:
        return None

    @hookimpl
    async def ordnung_create_label(self, order: Order, shipment: Shipment) -> Label:
        if self.context is None:
            raise PluginError(self.name, "the engine has not started this carrier")
        tracking = new_tracking_number(self.tracking_prefix)
        line_ids = {sl.line_id: sl.quantity for sl in shipment.lines}
        weight = sum(line.weight_grams * line_ids[line.id] // max(line.quantity, 1)
                     for line in order.lines if line.id in line_ids)
        pdf = render_label_pdf(
            carrier=self.carrier_title(), service=self.service_title(shipment, order),
            heading=self.label_heading, recipient=self.label_recipient(order, shipment),
            order_number=order.number, tracking_number=tracking, weight_grams=weight,
            expected_delivery=order.shipping.expected_delivery if order.shipping else None,
            sender=self.label_sender())
        store = self.context.store
        await store.put(LABEL_KIND, tracking, {
            "content_type": "application/pdf",
            "order_id": order.id,
            "order_number": order.number,
            "shipment_id": shipment.id,
            "pdf": base64.b64encode(pdf).decode("ascii"),
        })
        await store.put(ORDER_INDEX_KIND, f"{order.id}:{tracking}", {})
        return Label(tracking_number=tracking, label_url=label_url(self.name, tracking))

    @hookimpl
    async def ordnung_label_document(self, tracking_number: str) -> bytes | None:
        if self.context is None:
            return None
        record = await self.context.store.get(LABEL_KIND, tracking_number)
        return None if record is None else base64.b64decode(record["pdf"])

    @hookimpl
    def ordnung_parse_tracking(self, payload: dict[str, Any]) -> list[TrackingUpdate]:
        return parse_tracking_payload(payload)

    @hookimpl
    async def ordnung_erase_customer_data(self, customer: Customer) -> None:
        """Delete the label PDFs (they print the customer's name and address)."""
        if self.context is None:
            return
        store = self.context.store
        after: str | None = None
        while True:
            orders = await self.context.engine.customer_orders(customer.id, after=after,
                                                               limit=200)
            for order in orders:
                # every label made for the order, also one whose shipment was then refused
                prefix = f"{order.id}:"
                for key, _, _ in await store.records(ORDER_INDEX_KIND, prefix):
                    if not key.startswith(prefix):  # LIKE treats "_" as a wildcard
                        continue
                    await store.delete(LABEL_KIND, key.split(":", 1)[1])
                    await store.delete(ORDER_INDEX_KIND, key)
            if len(orders) < 200:
                return
            after = orders[-1].id
