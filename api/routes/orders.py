"""Orders: one-shot placement, look-up, lists, timeline, live status, holds, cancellation."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, Response
from litestar.exceptions import PermissionDeniedException
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import FromPath, FromQuery, HeaderParameter, JSONBody, QueryParameter
from litestar.response import ServerSentEvent, ServerSentEventMessage

from ordnung.api.auth import (
    admin,
    customer_or_admin,
    ensure_owner,
    order_for_caller,
    order_reader,
    shopper_or_admin,
)
from ordnung.api.client_ip import client_facts
from ordnung.api.problems import problems
from ordnung.api.routes.common import (
    LOCATION,
    OrderView,
    caller,
    check_cursor,
    check_limit,
    created,
    engine_of,
    idempotency_key,
    order_view,
    timeline_view,
)
from ordnung.api.routes.handlers import get, post
from ordnung.api.schemas import (
    CustomerOrderPage,
    EventList,
    NoteIn,
    OrderPage,
    ReasonIn,
    ReleaseIn,
    StreamedEvent,
    TransitionIn,
)
from ordnung.core.domain.access import StreamToken
from ordnung.core.domain.events import Event
from ordnung.core.domain.orders import Order
from ordnung.core.domain.views import customer_event, customer_order
from ordnung.core.errors import InvalidInput
from ordnung.core.requests import PlaceOrder

#: how long one live-status stream stays open at most, and how often it looks
STREAM_SECONDS = 300.0
POLL_SECONDS = 0.5
STREAM_DONE = ResponseSpec(data_container=None, description=(
    "The order is finished and the caller has seen all of it (Last-Event-ID): nothing "
    "more will come, and a browser's EventSource stops reconnecting"))
EVENT_STREAM = ResponseSpec(data_container=StreamedEvent, media_type="text/event-stream",
                            description="Server-sent events, one per timeline event")


def _last_event_id(raw: str | None) -> int:
    """The sequence number a reconnecting ``EventSource`` last received (0: none)."""
    if raw is None or not raw.strip():
        return 0
    if not raw.strip().isdigit():
        raise InvalidInput("Last-Event-ID must be the id of an event of this stream "
                           "(a sequence number)", field="Last-Event-ID")
    return int(raw.strip())


async def load_order(request: Request[Any, Any, Any], order_id: str) -> Order:
    """The order, if the caller may see it; 404 otherwise (never 403)."""
    order = await engine_of(request).orders.get(order_id)
    ensure_owner(caller(request), "order", order_id, order.customer_id)
    return order


class OrderController(Controller):
    path = "/orders"
    tags = ["orders"]

    @post("/", guards=[shopper_or_admin("orders")], status_code=201,
          responses=problems(402, 404), response_headers=LOCATION)
    async def place(self, request: Request[Any, Any, Any], data: JSONBody[PlaceOrder]
                    ) -> Response[OrderView]:
        """Place an order in one request: lines, addresses, shipping choice and payment."""
        principal = caller(request)
        data = order_for_caller(principal, data)
        data = msgspec.structs.replace(
            data, client=client_facts(request, principal, data.client))
        order = await engine_of(request).orders.place(
            data, idempotency_key=idempotency_key(request),
            actor=principal.actor)
        return created(order_view(request, order), f"/orders/{order.id}")

    @get("/", guards=[customer_or_admin("orders")])
    async def list_orders(self, request: Request[Any, Any, Any],
                          status: FromQuery[list[str] | None] = None,
                          channel: FromQuery[str | None] = None,
                          customer_id: FromQuery[str | None] = None,
                          after: FromQuery[str | None] = None,
                          limit: FromQuery[int] = 50) -> OrderPage | CustomerOrderPage:
        """Newest first. Pass ``next`` from a page as ``after`` for the following page."""
        principal = caller(request)
        if principal.kind == "customer":
            customer_id = principal.customer_id
        items = await engine_of(request).orders.list(
            customer_id=customer_id, status=status, channel=channel,
            after=check_cursor(after, "ord"),
            limit=check_limit(limit))
        after_id = items[-1].id if len(items) == limit else None
        if principal.staff:
            return OrderPage(items=items, next=after_id)
        return CustomerOrderPage(items=[customer_order(o) for o in items], next=after_id)

    @get("/{order_id:str}", guards=[customer_or_admin("orders")], responses=problems(404))
    async def get_order(self, request: Request[Any, Any, Any], order_id: FromPath[str]
                        ) -> OrderView:
        """One order (staff read it whole, everyone else the customer's view)."""
        return order_view(request, await load_order(request, order_id))

    @get("/by-number/{number:str}", guards=[customer_or_admin("orders")],
         responses=problems(404))
    async def by_number(self, request: Request[Any, Any, Any], number: FromPath[str]
                        ) -> OrderView:
        """An order by its human-readable number."""
        order = await engine_of(request).orders.by_number(number)
        ensure_owner(caller(request), "order", number, order.customer_id)
        return order_view(request, order)

    @get("/{order_id:str}/timeline", guards=[customer_or_admin("orders")],
         responses=problems(404))
    async def timeline(self, request: Request[Any, Any, Any], order_id: FromPath[str]) -> EventList:
        """The order's timeline: every event in order (customers get their view of it)."""
        order = await load_order(request, order_id)
        return EventList(items=timeline_view(
            request, order, await engine_of(request).orders.timeline(order_id)))

    @get("/{order_id:str}/events", guards=[order_reader("orders")],
         responses={200: EVENT_STREAM, 204: STREAM_DONE, **problems(404)})
    async def live(self, request: Request[Any, Any, Any], order_id: FromPath[str],
                   after_seq: FromQuery[int] = 0,
                   last_event_id: Annotated[str | None, HeaderParameter(
                       name="Last-Event-ID", required=False,
                       description="the id (sequence number) of the last event received; "
                                   "the stream resumes after it")] = None,
                   stream_token: Annotated[str | None, QueryParameter(
                       name="stream_token", required=False,
                       description="instead of an Authorization header: a token from "
                                   "POST /orders/{order_id}/stream-tokens")] = None,
                   ) -> Response[Any]:
        """Follow an order live (server-sent events): each timeline event as it happens.

        Works across API workers (it reads the committed timeline). The stream ends when
        the order reaches a terminal state (at once if it is there already) or after five
        minutes. A browser reconnecting sends ``Last-Event-ID`` and gets only what it has
        not seen yet; 204 when that is nothing and the order is finished.
        """
        principal = caller(request)
        if principal.kind == "stream":
            if principal.order_id != order_id:
                raise PermissionDeniedException("this stream token is for another order")
            order = await engine_of(request).orders.get(order_id)
        else:
            order = await load_order(request, order_id)
        seen_from = max(after_seq, _last_event_id(last_event_id))
        engine = engine_of(request)
        terminal = {s for s, spec in engine.machines["order"].states.items() if spec.terminal}
        staff = principal.staff

        def shown(ev: Event) -> Event | None:
            return ev if staff else customer_event(ev, order.customer_id)

        #: an order already at its end: send what is left and close
        finished = order.status in terminal
        if finished and not any(e.seq > seen_from and shown(e) is not None
                                for e in await engine.orders.timeline(order_id)):
            # nothing more this caller may see will ever come: 204 tells an EventSource to
            # stop reconnecting (events hidden from it do not count, or it would reconnect
            # for ever: its Last-Event-ID is the last one it was shown)
            return Response(content=None, status_code=204)

        async def stream() -> AsyncIterator[ServerSentEventMessage]:
            seen = seen_from
            deadline = time.monotonic() + STREAM_SECONDS
            while time.monotonic() < deadline:
                events = [e for e in await engine.orders.timeline(order_id) if e.seq > seen]
                for ev in events:
                    seen = ev.seq
                    view = shown(ev)
                    if view is None:
                        continue
                    yield ServerSentEventMessage(
                        data=msgspec.json.encode(view).decode(), event=view.kind,
                        id=str(view.seq))
                if finished or any(e.to_state in terminal and e.machine == "order"
                                   for e in events):
                    return
                await asyncio.sleep(POLL_SECONDS)

        return ServerSentEvent(stream())

    @post("/{order_id:str}/stream-tokens", guards=[customer_or_admin("orders")],
          status_code=201, responses=problems(404), response_headers=LOCATION)
    async def stream_token(self, request: Request[Any, Any, Any], order_id: FromPath[str]
                           ) -> Response[StreamToken]:
        """Mint a short-lived token for this order's live status that a page may put in
        the URL of an ``EventSource`` (which cannot send an Authorization header);
        ``Location`` is that URL."""
        order = await load_order(request, order_id)
        token = await engine_of(request).stream_tokens.mint(order)
        return created(token, token.url)

    @post("/{order_id:str}/cancel", guards=[customer_or_admin("orders")], status_code=200,
          responses=problems(404))
    async def cancel(self, request: Request[Any, Any, Any], order_id: FromPath[str],
                     data: JSONBody[ReasonIn]) -> OrderView:
        """Cancel the order: reservations are released and open payments voided."""
        await load_order(request, order_id)
        return order_view(request, await engine_of(request).orders.cancel(
            order_id, reason=data.reason, actor=caller(request).actor))

    @post("/{order_id:str}/hold", guards=[admin("orders")], status_code=200,
          responses=problems(404))
    async def hold(self, request: Request[Any, Any, Any], order_id: FromPath[str],
                   data: JSONBody[ReasonIn]) -> Order:
        """Put the order on hold for review: nothing is captured or shipped until released."""
        if not data.reason:
            raise InvalidInput("a hold needs a reason", field="reason")
        return await engine_of(request).orders.hold(order_id, data.reason,
                                                    actor=caller(request).actor)

    @post("/{order_id:str}/release", guards=[admin("orders")], status_code=200,
          responses=problems(404))
    async def release(self, request: Request[Any, Any, Any], order_id: FromPath[str],
                      data: JSONBody[ReleaseIn]) -> Order:
        """Release a fraud/review hold; the order continues."""
        return await engine_of(request).orders.release(order_id, note=data.note,
                                                       actor=caller(request).actor)

    @post("/{order_id:str}/transitions", guards=[admin("orders")], status_code=200,
          responses=problems(404))
    async def transition(self, request: Request[Any, Any, Any], order_id: FromPath[str],
                         data: JSONBody[TransitionIn]) -> Order:
        """Fire a plugin-defined order event (e.g. ``age_verified``)."""
        return await engine_of(request).orders.transition(order_id, data.event, data=data.data,
                                                          actor=caller(request).actor)

    @post("/{order_id:str}/notes", guards=[admin("orders")], status_code=200,
          responses=problems(404))
    async def note(self, request: Request[Any, Any, Any], order_id: FromPath[str],
                   data: JSONBody[NoteIn]) -> Order:
        """Add a staff note to the order's timeline (never shown to customers)."""
        return await engine_of(request).orders.add_note(order_id, data.note,
                                                        actor=caller(request).actor)
