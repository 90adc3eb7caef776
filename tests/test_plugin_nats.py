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
from ordnung.plugins.brokers.nats_broker import NatsBroker
from tests.api_support import ADMIN_KEY, Api, api_client, bearer, expect, order_body
from tests.serve_support import free_port, running_server
from tests.support import builtin_plugins
from tests.test_crash_recovery import GIFT_SETTINGS, PLUGINS, eventually, seed

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


async def test_every_event_arrives_once_also_when_the_publisher_restarts(
        database_url: str, stream: dict[str, str]) -> None:
    async with api_client(database_url, plugins=with_broker(
            {"servers": [NATS_URL], **stream})) as api:
        shop = await api.storefront()
        for _ in range(3):
            await api.place_order(shop, order_body(("MUG", 1)))
        events = await committed(api)
        first = await consumed(stream)
        assert sorted(first) == sorted(events)  # each committed event, exactly once
        # the publisher dies and a new one publishes the same events again (the sweeper
        # after a crash, a retried reaction): JetStream drops the duplicates
        await api.plugin("nats").close()
        restarted = NatsBroker(NatsBroker.Settings(servers=[NATS_URL], **stream))
        for ev in await api.engine.runtime.journal.events(limit=10_000):
            await restarted.ordnung_on_event(ev)
        await api.place_order(shop, order_body(("MUG", 1)))
        second = await consumed(stream)
        assert second and sorted(second) == sorted(await committed(api, after=max(events)))
        await restarted.close()
        await api.plugin("nats").close()


async def test_a_broker_that_is_down_is_retried_and_placement_goes_on(
        database_url: str, stream: dict[str, str]) -> None:
    async with api_client(database_url, plugins=with_broker(
            {"servers": [f"nats://127.0.0.1:{free_port()}"], "timeout": 0.5,
             **stream})) as api:
        shop = await api.storefront()
        await api.place_order(shop, order_body(("MUG", 1)))
        failures = expect(await api.client.get("/admin/reactions?limit=200", headers=ADMIN),
                          200)["items"]
        assert 0 < len(failures) < 200 and {f["plugin"] for f in failures} == {"nats"}
        # the broker is back: the retries publish every event, once
        broker = api.plugin("nats")
        broker.settings.servers, broker.settings.timeout = [NATS_URL], 5.0
        for failure in failures:
            retried = expect(await api.client.post(f"/admin/reactions/{failure['id']}/retry",
                                                   headers=ADMIN), 200)
            assert retried["resolved_at"] is not None
        await asyncio.sleep(0)
        assert sorted(await consumed(stream)) == sorted(await committed(api))
        await broker.close()


async def test_a_publisher_killed_mid_stream_loses_and_repeats_nothing(
        database_url: str, stream: dict[str, str], tmp_path: Path) -> None:
    """Real ``ordnung serve`` with two workers publishing while orders come in; one worker
    is SIGKILLed mid-stream. What it left unpublished the sweeper publishes (after the
    outbox lease); what it published twice JetStream drops: a durable consumer gets every
    committed event exactly once."""
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
        sub = await js.pull_subscribe(f"{names['subject_prefix']}.>", stream=names["stream"])
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
