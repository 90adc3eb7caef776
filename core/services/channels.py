"""Sales channels: every order carries one; all share one stock record."""

from __future__ import annotations

from ordnung.core.domain.inventory import Channel
from ordnung.core.domain.money import is_valid_currency
from ordnung.core.errors import CurrencyNotSold, InvalidInput, NotFound
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
        for currency in channel.currencies:
            if not is_valid_currency(currency):
                raise InvalidInput(f"unknown currency {currency!r}", field="currencies")
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

    async def currency_for(self, channel_id: str, currency: str | None) -> tuple[Channel, str]:
        """The channel and the currency of a new cart or order on it: the one asked for,
        if the channel sells in it (422 ``currency-not-sold`` otherwise), else the
        channel's default."""
        channel = await self.get(channel_id)
        if currency is None:
            return channel, channel.currency
        if not channel.sells_in(currency):
            sold = sorted({channel.currency, *channel.currencies})
            raise CurrencyNotSold(
                f"channel {channel.id!r} does not sell in {currency!r} (it sells in "
                f"{', '.join(sold)})", field="currency", currencies=sold)
        return channel, currency
