"""The webhook worker: from the outbox to signed HTTP requests, at least once.

Every state change writes its events and their outbox rows in its own transaction;
events webhooks are told of keep ``webhooks_at`` NULL. Each round of the worker (in
every server process; a lease on the database's clock lets one work at a time):

1. fan-out: turns each untold outbox event into one delivery per matching enabled
   endpoint (payload built now: ``{id, type, created_at, version, data}`` with ``data``
   the staff or the customer-safe shape, as the endpoint chose), and marks the event
   told, in one transaction;
2. sends the due deliveries, each claimed first for longer than a request may take
   (a worker killed mid-request leaves a claim that runs out, and the delivery is sent
   again), signed per Standard Webhooks with every live secret of the endpoint;
3. records every attempt (status, latency, the start of the answer). A failure is
   retried with exponential backoff and jitter until ``webhooks_retry_for_s`` has
   passed, then the delivery is marked failed and kept. An endpoint whose attempts
   all failed for ``webhooks_disable_after_s`` is disabled, with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import msgspec
import structlog
from standardwebhooks import Webhook

from ordnung.core.config import EngineConfig
from ordnung.core.domain.common import new_id
from ordnung.core.domain.events import Event
from ordnung.core.domain.orders import Order
from ordnung.core.domain.views import CustomerOrder, customer_order
from ordnung.core.domain.webhooks import PAYLOAD_VERSION, matches, webhook_type
from ordnung.core.errors import NotFound
from ordnung.core.persistence.codec import decode
from ordnung.core.persistence.leases import JobLeases
from ordnung.core.runtime import Runtime
from ordnung.core.services.webhook_guard import UnsafeUrl, pin_url
from ordnung.core.services.webhooks import live_secrets

log = structlog.get_logger("ordnung.webhooks")

JOB = "webhooks"
#: outbox events turned into deliveries per round
FANOUT_BATCH = 200
#: deliveries sent at once per round
SEND_BATCH = 50
#: characters of a receiver's answer kept in the log
ANSWER_CHARS = 1000


@dataclass(frozen=True)
class Outcome:
    """One attempt's result, recorded with the others of its round."""

    row: dict[str, Any]
    endpoint_id: str
    ok: bool
    status: int | None
    latency_ms: int
    answer: str
    error: str | None


class WebhookWorker:
    def __init__(self, rt: Runtime, config: EngineConfig) -> None:
        self.rt = rt
        self.db = rt.db
        self.outbox = rt.outbox
        self.queue = rt.webhook_deliveries
        self.config = config
        self.leases = JobLeases(rt.db)
        self.owner = new_id("job")
        #: one round at a time in this process (see ``run_once``)
        self._round = asyncio.Lock()

    @property
    def lease_s(self) -> float:
        """Outlives a round (one wave of requests, each at most the timeout)."""
        return 3 * self.config.webhooks_interval_s + self.config.webhooks_timeout_s + 5

    async def run_once(self) -> dict[str, int]:
        """One round if this process holds the job's lease: fan out, send what is due.

        A round asked for while another runs in this process (the background loop's and
        a caller's) waits for it: the lease is this process's either way, so the two
        would otherwise overlap, and a round that returned could leave the other's
        requests still in flight."""
        async with self._round:
            with self.db.outside_transaction():
                if not await self.leases.take(JOB, self.owner, self.lease_s):
                    return {}
                fanned = await self.fan_out()
                sent, failed = await self.send_due()
        return {"fanned_out": fanned, "sent": sent, "failed": failed}

    async def loop(self) -> None:
        while True:
            busy = False
            try:
                done = await self.run_once()
                busy = done.get("sent", 0) + done.get("failed", 0) >= SEND_BATCH or \
                    done.get("fanned_out", 0) >= FANOUT_BATCH
            except Exception as exc:  # keep the loop alive; the next round retries
                log.warning("webhook round failed", error=repr(exc))
            if not busy:
                await asyncio.sleep(self.config.webhooks_interval_s)

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.leases.release(JOB, self.owner)

    # -- fan-out ----------------------------------------------------------------------
    async def fan_out(self) -> int:
        return await self.rt.transactionally(self._fan_out)

    async def _fan_out(self) -> int:
        rows = await self.outbox.untold(FANOUT_BATCH)
        if not rows:
            return 0
        endpoints = [Target.of(row) for row in await self.queue.enabled_endpoints()]
        deliveries: list[tuple[Any, ...]] = []
        if endpoints:
            for row in rows:
                deliveries += await self._deliveries(decode(row["payload"], Event), endpoints)
        await self.queue.add(deliveries)
        await self.outbox.mark_told([r["id"] for r in rows])
        return len(deliveries)

    async def _deliveries(self, ev: Event, endpoints: list[Target]) -> list[tuple[Any, ...]]:
        """One event's deliveries: (id, endpoint, event, type, body) for every message
        each endpoint wants, its order read once per shape."""
        shaped: dict[str, list[tuple[dict[str, Any], str | None]]] = {}
        out: list[tuple[Any, ...]] = []
        for ep in endpoints:
            if ep.shape not in shaped:
                shaped[ep.shape] = await self._messages(ev, ep.shape)
            for message, channel in shaped[ep.shape]:
                if ep.wants(message["type"], channel):
                    delivery_id = new_id("msg")
                    body = json.dumps({"id": delivery_id, **message}, separators=(",", ":"))
                    out.append((delivery_id, ep.id, ev.id, message["type"], body))
        return out

    async def _messages(self, ev: Event, shape: str
                        ) -> list[tuple[dict[str, Any], str | None]]:
        """The webhook messages of one event (without ``id``) with their channel, in the
        endpoint's ``shape``: the staff view, or the customer-safe view of
        ``ordnung.core.domain.views`` (no risk, fraud or gateway details)."""
        kind = webhook_type(ev)
        if kind is None:
            return []
        base = {"type": kind, "created_at": ev.at.isoformat(), "version": PAYLOAD_VERSION}
        if kind == "availability.changed":
            return [({**base, "data": data}, channel)
                    for data, channel in await self._availability(ev)]
        order: Order | None = None
        if ev.order_id:
            with contextlib.suppress(NotFound):
                order = await self.rt.orders.get(ev.order_id)
        if order is None:
            return [({**base, "data": {"event_id": ev.id, "entity_id": ev.entity_id}}, None)]
        return [({**base, "data": order_data(ev, kind, order, shape)}, order.channel)]

    async def _availability(self, ev: Event) -> list[tuple[dict[str, Any], str]]:
        """What is available now of each SKU the event names, once per active channel."""
        skus = [str(s) for s in ev.data.get("skus", [])]
        available = await self.rt.stock.available(skus)
        channels = await self.rt.catalog.active_channel_ids()
        return [({"sku": sku, "channel": channel, "available": int(available[sku]),
                  "order_id": ev.order_id}, channel)
                for sku in skus for channel in channels]

    # -- sending ----------------------------------------------------------------------
    async def send_due(self) -> tuple[int, int]:
        # longer than the request may take, and the recording after it
        timeout = self.config.webhooks_timeout_s
        rows = await self.rt.transactionally(
            lambda: self.queue.claim_due(timeout + max(5.0, timeout), SEND_BATCH))
        if not rows:
            return 0, 0
        endpoints = await self.queue.signing([r["endpoint_id"] for r in rows])
        now = await self.leases.now()
        async with httpx.AsyncClient(timeout=self.config.webhooks_timeout_s,
                                     follow_redirects=False) as client:
            results = await asyncio.gather(*[
                self._send(client, r, endpoints.get(r["endpoint_id"]), now) for r in rows])
        outcomes = [o for o in results if o is not None]
        await self._record(outcomes)
        sent = sum(o.ok for o in outcomes)
        return sent, len(outcomes) - sent

    async def _send(self, client: httpx.AsyncClient, row: dict[str, Any],
                    endpoint: dict[str, Any] | None, now: datetime) -> Outcome | None:
        if endpoint is None:
            return None
        status: int | None = None
        answer, error = "", None
        started = time.perf_counter()
        try:
            target = await pin_url(endpoint["url"],
                                   allow_private=self.config.webhooks_allow_private)
            body = row["payload"]
            headers = {"content-type": "application/json", "user-agent": "ordnung-webhooks/1",
                       "webhook-id": row["id"],
                       "webhook-timestamp": str(int(now.timestamp()))}
            headers["webhook-signature"] = " ".join(
                Webhook(secret).sign(row["id"], now, body)
                for secret in live_secrets(endpoint["secrets"], now))
            response = await client.post(target.url, content=body.encode(),
                                         headers={**headers, **target.headers},
                                         extensions=target.extensions)
            status = response.status_code
            answer = response.text[:ANSWER_CHARS]
        except UnsafeUrl as exc:
            error = str(exc)
        except httpx.TimeoutException:
            error = f"no answer within {self.config.webhooks_timeout_s:g} s"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:ANSWER_CHARS]
        latency = int((time.perf_counter() - started) * 1000)
        ok = status is not None and 200 <= status < 300
        if error is None and not ok:
            error = f"HTTP {status}"
        return Outcome(row=row, endpoint_id=endpoint["id"], ok=ok, status=status,
                       latency_ms=latency, answer=answer, error=error)

    def backoff_s(self, attempts: int) -> float:
        """Exponential in the attempts made, with jitter (up to a quarter on top), so
        that receivers coming back are not hit by every sender at once."""
        c = self.config
        delay = min(c.webhooks_backoff_max_s, c.webhooks_backoff_base_s * 2 ** (attempts - 1))
        return delay * random.uniform(1.0, 1.25)

    async def _record(self, outcomes: list[Outcome]) -> None:
        """Write one round's attempts and their consequences in one transaction: the
        successes with a statement each for all, the failures one by one (each has its
        own backed-off next attempt)."""
        done = [o for o in outcomes if o.ok]
        failed = [o for o in outcomes if not o.ok]
        async def unit() -> list[str]:
            await self.queue.add_attempts([
                (new_id("wha"), o.row["id"], o.endpoint_id, o.status, o.latency_ms, o.answer,
                 o.error) for o in outcomes])
            await self._record_done(done)
            return await self._record_failed(failed)

        disabled = await self.rt.transactionally(unit)
        for endpoint_id in disabled:
            log.warning("webhook endpoint disabled", endpoint_id=endpoint_id)

    async def _record_done(self, done: list[Outcome]) -> None:
        """Delivered, one statement per status code; their endpoints' failure streaks end."""
        for code in sorted({o.status for o in done if o.status is not None}):
            await self.queue.delivered(code, [o.row["id"] for o in done if o.status == code])
        if done:
            await self.queue.recovered(sorted({o.endpoint_id for o in done}))

    async def _record_failed(self, failed: list[Outcome]) -> list[str]:
        """Each failure backs off (or gives up); each failing endpoint starts or keeps
        its streak, and is disabled when it has lasted too long. The ids disabled."""
        for o in failed:
            attempts = int(o.row["attempts"]) + 1
            await self.queue.retry_or_fail(
                o.row["id"], attempts=attempts, status=o.status, error=o.error,
                retry_in_s=self.backoff_s(attempts),
                retry_for_s=self.config.webhooks_retry_for_s)
        last = {o.endpoint_id: o for o in failed}  # each endpoint's last failure
        disabled = []
        for endpoint_id in sorted(last):
            await self.queue.failing(endpoint_id)
            if await self.queue.disable_if_failing(
                    endpoint_id, for_s=self.config.webhooks_disable_after_s,
                    reason=self._disabled_reason(last[endpoint_id])):
                disabled.append(endpoint_id)
        return disabled

    def _disabled_reason(self, last: Outcome) -> str:
        return (f"every attempt failed for more than "
                f"{self.config.webhooks_disable_after_s:g} s; last: {last.error}")[:1000]


@dataclass(frozen=True)
class Target:
    """An enabled endpoint as fan-out matches events against it."""

    id: str
    event_types: list[str]
    channels: frozenset[str]
    shape: str

    @classmethod
    def of(cls, row: dict[str, Any]) -> Target:
        return cls(id=row["id"], event_types=json.loads(row["event_types"]),
                   channels=frozenset(json.loads(row["channels"])), shape=row["shape"])

    def wants(self, kind: str, channel: str | None) -> bool:
        """Its types match, and it listens to every channel or to this one."""
        return matches(self.event_types, kind) and (not self.channels
                                                     or channel in self.channels)


def order_data(ev: Event, kind: str, order: Order, shape: str) -> Any:
    """The ``data`` of an order's event: a notification's own data, the payment,
    shipment or return the event is about, or else the whole order, in ``shape``."""
    if kind == "notification.sent":
        return {**ev.data, "order_id": order.id, "order_number": order.number}
    view: Order | CustomerOrder = customer_order(order) if shape == "customer" else order
    parts: dict[str, list[Any]] = {"payment": list(view.payments),
                                   "shipment": list(view.shipments),
                                   "return": list(view.returns)}
    part = parts.get(ev.machine or "")
    if part is None:
        return msgspec.to_builtins(view)
    found = next((p for p in part if p.id == ev.entity_id), None)
    if found is None:
        return {"id": ev.entity_id, "order_id": order.id}
    return {**msgspec.to_builtins(found), "order_id": order.id}
