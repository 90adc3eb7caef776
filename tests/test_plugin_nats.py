"""The ``nats`` broker plugin against the real NATS JetStream server on 127.0.0.1:4222."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest

from ordnung.core.persistence.database import Database
from ordnung.core.services.broker_worker import PublishFailed
from ordnung.plugins.brokers.nats_broker import NatsBroker
from tests.api_support import ADMIN_KEY, Api, api_client, bearer, order_body
from tests.serve_support import free_port, running_server
from tests.support import builtin_plugins
from tests.test_crash_recovery import GIFT_SETTINGS, PLUGINS, eventually, seed
from tests.test_statement_budget import placement_cost

NATS_URL = "nats://127.0.0.1:4222"
ADMIN = bearer(ADMIN_KEY)


def nats_up() -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex(("127.0.0.1", 4222)) == 0


#: ``.ci/run`` starts NATS and sets ``ORDNUNG_NATS_TESTS=required``: there a missing server
#: is a failure, elsewhere these tests are skipped without one
NATS_REQUIRED = os.environ.get("ORDNUNG_NATS_TESTS") == "required"

pytestmark = pytest.mark.skipif(not NATS_REQUIRED and not nats_up(),
                                reason="no NATS server on 127.0.0.1:4222")


@pytest.fixture
async def stream() -> AsyncIterator[dict[str, str]]:
    """A stream of its own per test (other tests may share the server)."""
    tag = secrets.token_hex(4)
    names = {"subject_prefix": f"ordnung_t{tag}", "stream": f"ORDNUNG_T{tag.upper()}"}
    yield names
    client = await nats.connect(NATS_URL)
    with contextlib.suppress(Exception):
        await client.jetstream().delete_stream(names["stream"])
    await client.close()


async def consumed(names: dict[str, str]) -> list[str]:
    """Every message a durable consumer gets now: their ``Nats-Msg-Id``s."""
    client = await nats.connect(NATS_URL)
    js = client.jetstream()
    sub = await js.pull_subscribe(f"{names['subject_prefix']}.>", durable="reader",
                                  stream=names["stream"])
    ids: list[str] = []
    while True:
        try:
            batch = await sub.fetch(100, timeout=1)
        except (TimeoutError, nats.errors.TimeoutError):
            break
        for msg in batch:
            assert msg.headers is not None
            ids.append(msg.headers["Nats-Msg-Id"])
            await msg.ack()
    await client.close()
    return ids


async def committed(api: Api, after: str | None = None) -> list[str]:
    """Every committed event's id (seeding the shop's stock writes events too)."""
    return [ev.id for ev in await api.engine.runtime.journal.events(after=after, limit=10_000)]


def with_broker(settings: dict[str, Any]) -> list[Any]:
    return [*builtin_plugins(), (NatsBroker, "nats", settings)]


async def publish_all(api: Api) -> None:
    """Rounds of the broker worker (the server's background loop, driven here) until the
    outbox holds nothing unpublished."""
    published = 1
    while published:
        published = await api.engine.broker_worker.run_once()


async def test_every_event_arrives_once_also_when_the_publisher_restarts(
        database_url: str, stream: dict[str, str]) -> None:
    async with api_client(database_url, plugins=with_broker(
            {"servers": [NATS_URL], **stream})) as api:
        shop = await api.storefront()
        for _ in range(3):
            await api.place_order(shop, order_body(("MUG", 1)))
        # nothing published on the requests' path: every event waits in the outbox
        waiting = await api.engine.db.run("SELECT id FROM outbox WHERE broker_at IS NULL")
        assert sorted(r["id"] for r in waiting) == sorted(await committed(api))
        await publish_all(api)
        events = await committed(api)
        first = await consumed(stream)
        assert sorted(first) == sorted(events)  # each committed event, exactly once
        # the publisher dies and a new one publishes the same events again (a worker
        # killed before it marked its batch, a retried batch): JetStream drops the repeats
        await api.plugin("nats").close()
        restarted = NatsBroker(NatsBroker.Settings(servers=[NATS_URL], **stream))
        await restarted.publish(await api.engine.runtime.journal.events(limit=10_000))
        await api.place_order(shop, order_body(("MUG", 1)))
        await publish_all(api)
        second = await consumed(stream)
        assert second and sorted(second) == sorted(await committed(api, after=max(events)))
        await restarted.close()
        await api.plugin("nats").close()


async def test_an_unreachable_broker_costs_placement_nothing_and_loses_nothing(
        database_url: str, stream: dict[str, str]) -> None:
    """NATS on a port nobody listens on: placing orders costs no more statements than
    without the plugin beyond the outbox rows of the same insert, never waits on the
    broker, and once NATS is reachable every event arrives, once."""
    async with api_client(database_url, plugins=with_broker(
            {"servers": [f"nats://127.0.0.1:{free_port()}"], "timeout": 0.5,
             **stream})) as api:
        journal = api.engine.runtime.journal
        await placement_cost(api.engine, ("MUG", 1))  # warm caches
        journal.tells_brokers = False  # as if the plugin were not installed
        before = set(await committed(api))
        without = await placement_cost(api.engine, ("MUG", 1))
        unannounced = set(await committed(api)) - before  # never handed to the broker
        journal.tells_brokers = True
        with_nats = await placement_cost(api.engine, ("MUG", 1))
        assert with_nats - without <= 1, (without, with_nats)  # at most the outbox insert
        shop = await api.storefront()
        await api.place_order(shop, order_body(("MUG", 1)))
        with pytest.raises(PublishFailed):
            await api.engine.broker_worker.run_once()
        worker = api.engine.broker_worker
        worker.failures = 3
        delays = [worker.backoff_s() for _ in range(20)]
        ceiling = api.engine.config.broker_backoff_base_s * 8
        assert all(ceiling / 2 <= d <= ceiling for d in delays) and len(set(delays)) > 1
        # the broker is back: the next rounds publish every event, once
        broker = api.plugin("nats")
        broker.settings.servers, broker.settings.timeout = [NATS_URL], 5.0
        await publish_all(api)
        await publish_all(api)
        received = await consumed(stream)
        assert len(received) == len(set(received))
        assert unannounced and set(received) == set(await committed(api)) - unannounced
        await broker.close()


async def test_a_publisher_killed_mid_stream_loses_and_repeats_nothing(
        database_url: str, stream: dict[str, str], tmp_path: Path) -> None:
    """Real ``ordnung serve`` with two workers publishing while orders come in; one worker
    is SIGKILLed mid-stream. What it left unpublished the broker worker of another process
    publishes (after the worker's lease); what it published twice JetStream drops: a
    durable consumer gets every committed event exactly once."""
    env = {"ORDNUNG_PLUGINS": PLUGINS + ",nats", "ORDNUNG_PLUGIN_SETTINGS": json.dumps(
        {**GIFT_SETTINGS, "nats": {"servers": [NATS_URL], **stream}})}
    with running_server(database_url, tmp_path, env=env) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30.0) as client:
            shop = await seed(client)
            await eventually("two workers", lambda: len(server.workers()) == 2)

            async def place(n: int) -> None:
                with contextlib.suppress(httpx.HTTPError):
                    await client.post("/orders", headers=shop, json=order_body(
                        ("CRASH-MUG", 1), token="tok_success", email=f"n{n}@example.com"))

            placing = [asyncio.create_task(place(n)) for n in range(40)]
            await asyncio.sleep(0.3)
            os.kill(server.workers()[0], signal.SIGKILL)
            await asyncio.gather(*placing)
            for n in range(40, 50):  # the surviving (and the respawned) workers go on
                await place(n)

            async def all_published() -> bool:
                ids = await consumed_peek(stream)
                return set(ids) >= set(await committed_ids(database_url))

            await eventually("every event published", all_published, within=90)
    received = await consumed(stream)
    events = await committed_ids(database_url)
    assert len(received) == len(set(received)), "an event was delivered twice"
    assert set(received) == set(events)


async def committed_ids(database_url: str) -> list[str]:
    async with Database(database_url).session() as db:
        return [r["id"] for r in await db.fetch("SELECT id FROM events")]


async def consumed_peek(names: dict[str, str]) -> list[str]:
    """The ids in the stream now, read by an ephemeral consumer (the durable one is
    left for the final count)."""
    client = await nats.connect(NATS_URL)
    try:
        js = client.jetstream()
        try:
            sub = await js.pull_subscribe(f"{names['subject_prefix']}.>",
                                          stream=names["stream"])
        except nats.js.errors.NotFoundError:  # nothing published yet
            return []
        ids: list[str] = []
        while True:
            try:
                batch = await sub.fetch(200, timeout=0.5)
            except (TimeoutError, nats.errors.TimeoutError):
                break
            ids += [m.headers["Nats-Msg-Id"] for m in batch if m.headers]
        return ids
    finally:
        await client.close()
