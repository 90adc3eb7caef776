"""Sales channels: every order carries one; all share one stock record."""

from __future__ import annotations

from ordnung.core.domain.inventory import Channel
from ordnung.core.domain.money import is_valid_currency
from ordnung.core.errors import InvalidInput, NotFound
from ordnung.core.runtime import Runtime


class ChannelService:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._cache: dict[str, Channel] | None = None

    async def upsert(self, channel: Channel) -> Channel:
        if not channel.id.strip():
            raise InvalidInput("a channel needs an id", field="id")
        if not is_valid_currency(channel.currency):
            raise InvalidInput(f"unknown currency {channel.currency!r}", field="currency")
        await self.rt.catalog.upsert_channel(channel)
        self._cache = None
        return channel

    async def list(self) -> list[Channel]:
        return await self.rt.catalog.channels()

    async def get(self, channel_id: str) -> Channel:
        if self._cache is None or channel_id not in self._cache:
            self._cache = {c.id: c for c in await self.rt.catalog.channels()}
        channel = self._cache.get(channel_id)
        if channel is None or not channel.active:
            raise NotFound("channel", channel_id)
        return channel
