"""The broker worker with an event-publisher plugin of the test's own (any broker's
shape): publishing is off the request's path, failures keep the events and back off,
and every event is published once confirmed (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec
import pytest

from ordnung.core import hookimpl
from ordnung.core.config import EngineConfig
from ordnung.core.domain.events import Event
from ordnung.core.services.broker_worker import PublishFailed
from tests.api_support import api_client, order_body
from tests.support import builtin_plugins


class Collecting:
    """Keeps what it was given; ``down`` makes it refuse like an unreachable broker."""

    class Settings(msgspec.Struct, forbid_unknown_fields=True):
        """It takes no settings (and refuses any)."""

    def __init__(self, settings: Collecting.Settings) -> None:
        self.down = False
        self.published: list[str] = []

    @hookimpl
    def ordnung_event_publisher(self) -> Collecting:
        return self

    async def publish(self, events: Sequence[Event]) -> None:
        if self.down:
            raise ConnectionError("broker unreachable")
        self.published += [e.id for e in events]


async def test_events_wait_in_the_outbox_while_the_broker_is_down_then_all_arrive_in_order(
        database_url: str) -> None:
    async with api_client(database_url, plugins=[*builtin_plugins(),
                                                 (Collecting, "collect", {})]) as api:
        broker: Any = api.plugin("collect")
        broker.down = True
        shop = await api.storefront()
        for _ in range(3):  # placement does not wait on the broker
            await api.place_order(shop, order_body(("MUG", 1)))
        worker = api.engine.broker_worker
        with pytest.raises(PublishFailed, match="collect"):
            await worker.run_once()
        assert broker.published == []
        # the loop's wait after consecutive failures: doubling, jittered, capped
        base, ceiling_max = worker.backoff_base_s, worker.backoff_max_s
        for failures in (1, 4, 40):
            worker.failures = failures
            ceiling = min(ceiling_max, base * 2 ** failures)
            delays = {worker.backoff_s() for _ in range(50)}
            assert all(ceiling / 2 <= d <= ceiling for d in delays) and len(delays) > 1
        broker.down = False
        rounds = 0
        while await worker.run_once():  # until nothing is left unpublished
            rounds += 1
        assert rounds >= 1
        events = [e.id for e in await api.engine.runtime.journal.events(limit=10_000)]
        assert broker.published == events  # each once, in outbox order
        assert await worker.run_once() == 0


def test_the_backoff_settings_are_read_from_the_environment(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORDNUNG_BROKER_BACKOFF_BASE_S", "0.5")
    monkeypatch.setenv("ORDNUNG_BROKER_BACKOFF_MAX_S", "60")
    config = EngineConfig.from_env(database_url="sqlite:///unused.db")
    assert (config.broker_backoff_base_s, config.broker_backoff_max_s) == (0.5, 60.0)
    monkeypatch.delenv("ORDNUNG_BROKER_BACKOFF_BASE_S")
    monkeypatch.delenv("ORDNUNG_BROKER_BACKOFF_MAX_S")
    default = EngineConfig.from_env(database_url="sqlite:///unused.db")
    assert (default.broker_backoff_base_s, default.broker_backoff_max_s) == (1.0, 300.0)
