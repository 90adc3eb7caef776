"""NATS JetStream broker: every committed timeline event, published for other systems.

For installations beyond one machine: instead of (or besides) webhooks, each event of
the outbox is published to JetStream on ``<subject_prefix>.<event kind>`` (e.g.
``ordnung.order.placed``) with ``Nats-Msg-Id`` set to the event's id, and every publish
acknowledgement is awaited. The plugin is an event publisher (``ordnung_event_publisher``):
the engine's broker worker hands it the outbox's events in batches, in the background of
every server process under a lease, never on a request's path, so a slow or unreachable
NATS never delays an order. A batch not confirmed is retried with backoff and jitter; a
batch published again after a crash or a retry carries the same ids, so JetStream drops
the repeats within the stream's duplicate window: consumers see each event once.

Another broker (RabbitMQ, Kafka) is a plugin of the same shape: a class with a
``Settings`` Struct, an ``ordnung_event_publisher`` hook returning an object whose
``async publish(events)`` sends each event with its id as the broker's deduplication key
(RabbitMQ: ``message_id`` plus a deduplication plugin or an idempotent consumer, with
publisher confirms; Kafka: an idempotent producer keyed by the event id, ``acks=all``) and
raises when the broker does not confirm, and an entry point in ``ordnung``'s group.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import msgspec
import nats
import structlog
from nats.js.api import StreamConfig
from nats.js.errors import NotFoundError

from ordnung.plugin import Event, encode, hookimpl

log = structlog.get_logger("ordnung.nats")


class NatsBroker:
    """Publishes every committed event to NATS JetStream, deduplicated by event id."""

    class Settings(msgspec.Struct, forbid_unknown_fields=True):
        servers: list[str] = msgspec.field(default_factory=lambda: ["nats://127.0.0.1:4222"])
        #: subjects are ``<subject_prefix>.<event kind>``
        subject_prefix: str = "ordnung"
        #: the stream to create if missing (subjects ``<subject_prefix>.>``); empty: the
        #: operator manages the stream
        stream: str = "ORDNUNG"
        #: seconds JetStream remembers message ids to drop duplicates
        duplicate_window_s: float = 600.0
        #: seconds to wait for connecting and for each publish acknowledgement
        timeout: float = 5.0

        def __post_init__(self) -> None:
            if not self.servers:
                raise ValueError("servers must name at least one NATS server")
            if not self.subject_prefix or any(c in self.subject_prefix for c in " *>"):
                raise ValueError("subject_prefix must be a plain subject token")
            if self.timeout <= 0 or self.duplicate_window_s <= 0:
                raise ValueError("timeout and duplicate_window_s must be positive")

    name: str

    def __init__(self, settings: NatsBroker.Settings) -> None:
        self.settings = settings
        self._client: Any = None
        self._js: Any = None
        self._lock = asyncio.Lock()

    async def _jetstream(self) -> Any:
        async with self._lock:
            if self._client is None or self._client.is_closed:
                s = self.settings
                # a server that cannot be reached fails this publish (retried later)
                self._client = await asyncio.wait_for(nats.connect(
                    servers=s.servers, connect_timeout=s.timeout, allow_reconnect=True,
                    max_reconnect_attempts=-1), 2 * s.timeout)
                self._js = self._client.jetstream(timeout=s.timeout)
                if s.stream:
                    await self._ensure_stream()
            return self._js

    async def _ensure_stream(self) -> None:
        s = self.settings
        try:
            await self._js.stream_info(s.stream)
        except NotFoundError:
            await self._js.add_stream(StreamConfig(
                name=s.stream, subjects=[f"{s.subject_prefix}.>"],
                duplicate_window=s.duplicate_window_s))

    def subject(self, event: Event) -> str:
        return f"{self.settings.subject_prefix}.{event.kind}"

    @hookimpl
    def ordnung_event_publisher(self) -> NatsBroker:
        return self

    async def publish(self, events: Sequence[Event]) -> None:
        """Publish ``events`` in order, each acknowledged by JetStream; raises otherwise."""
        js = await self._jetstream()
        for event in events:
            ack = await js.publish(self.subject(event), encode(event).encode(),
                                   headers={"Nats-Msg-Id": event.id})
            if ack.duplicate:
                log.debug("event already published", event_id=event.id)

    async def close(self) -> None:
        """Drain and close the connection (an embedding application stopping)."""
        if self._client is not None and not self._client.is_closed:
            await self._client.drain()
        self._client = self._js = None
