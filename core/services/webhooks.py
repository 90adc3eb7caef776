"""Webhook endpoints (staff register, change, rotate), and the delivery log.

Deliveries themselves are made by ``WebhookWorker`` (``webhook_worker.py``) in the
background, never on a request's path.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from ordnung.core.config import EngineConfig
from ordnung.core.domain.common import new_id
from ordnung.core.domain.webhooks import (
    SHAPES,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
    WebhookEndpointCreated,
    check_patterns,
    new_secret,
)
from ordnung.core.errors import InvalidInput, NotFound
from ordnung.core.persistence.leases import JobLeases
from ordnung.core.persistence.retrying import in_transaction
from ordnung.core.persistence.webhooks import WebhookStore
from ordnung.core.services.webhook_guard import check_url

_UNSET: Any = object()


def moment(value: Any) -> datetime | None:
    """A timestamp as either database driver returns it, in UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    result: datetime = value.astimezone(UTC)
    return result


def live_secrets(raw: str, now: datetime) -> list[str]:
    """The secrets that sign now: the current one, and rotated-out ones in their grace."""
    out = []
    for item in json.loads(raw):
        expires = moment(item.get("expires_at"))
        if expires is None or expires > now:
            out.append(str(item["secret"]))
    return out


def endpoint_of(row: dict[str, Any], now: datetime) -> WebhookEndpoint:
    return WebhookEndpoint(
        id=row["id"], url=row["url"], description=row["description"],
        event_types=json.loads(row["event_types"]), channels=json.loads(row["channels"]),
        shape=row["shape"],
        enabled=bool(row["enabled"]), disabled_reason=row["disabled_reason"],
        failing_since=moment(row["failing_since"]),
        signing_secrets=len(live_secrets(row["secrets"], now)),
        created_at=moment(row["created_at"]) or now,
        updated_at=moment(row["updated_at"]) or now)


def _shape(value: Any) -> str:
    if value not in SHAPES:
        raise InvalidInput(f"shape must be one of {', '.join(SHAPES)}", field="shape")
    return str(value)


def _check_description(value: Any) -> Any:
    if len(value) > 500:
        raise InvalidInput("description is longer than 500 characters", field="description")
    return value


def _text_list(value: Any, field: str, *, limit: int = 50) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and 0 < len(v) <= 64
                                              for v in value):
        raise InvalidInput(f"{field} must be a list of non-empty names", field=field)
    if len(value) > limit:
        raise InvalidInput(f"{field} holds more than {limit} entries", field=field)
    return sorted(set(value))


class WebhookService:
    def __init__(self, store: WebhookStore, config: EngineConfig) -> None:
        self.store = store
        self.db = store.db
        self.config = config
        self.clock = JobLeases(store.db)

    async def _row(self, endpoint_id: str) -> dict[str, Any]:
        row = await self.store.endpoint(endpoint_id)
        if row is None:
            raise NotFound("webhook endpoint", endpoint_id)
        return row

    async def _types(self, value: Any) -> list[str]:
        types = _text_list(value, "event_types")
        if not types:
            raise InvalidInput("event_types must name at least one type (or '*')",
                               field="event_types")
        try:
            return check_patterns(types)
        except ValueError as exc:
            raise InvalidInput(str(exc), field="event_types") from None

    async def create(self, *, url: str, event_types: list[str], channels: list[str] | None = None,
                     description: str = "", enabled: bool = True,
                     shape: str = "staff") -> WebhookEndpointCreated:
        """Register an endpoint; the answer carries its signing secret, shown only now."""
        await check_url(url, allow_private=self.config.webhooks_allow_private)
        types = await self._types(event_types)
        chans = _text_list(channels or [], "channels")
        shape = _shape(shape)
        _check_description(description)
        secret = new_secret()
        endpoint_id = new_id("whep")
        await self.store.insert(
            endpoint_id=endpoint_id, url=url, description=description,
            event_types=json.dumps(types), channels=json.dumps(chans), enabled=bool(enabled),
            secrets=json.dumps([{"secret": secret, "expires_at": None}]), shape=shape)
        shown = await self.get(endpoint_id)
        return WebhookEndpointCreated(**msgspec.structs.asdict(shown), secret=secret)

    async def get(self, endpoint_id: str) -> WebhookEndpoint:
        return endpoint_of(await self._row(endpoint_id), await self.clock.now())

    async def endpoints(self, *, after: str | None = None,
                        limit: int = 50) -> list[WebhookEndpoint]:
        now = await self.clock.now()
        return [endpoint_of(r, now) for r in await self.store.endpoints(after or "", limit)]

    async def update(self, endpoint_id: str, *, url: str = _UNSET, event_types: Any = _UNSET,
                     channels: Any = _UNSET, description: Any = _UNSET,
                     enabled: Any = _UNSET, shape: Any = _UNSET) -> WebhookEndpoint:
        """Change what is given. Enabling an endpoint clears the reason it was disabled
        for and its failure streak."""
        await self._row(endpoint_id)
        changes: dict[str, Any] = {}
        if url is not _UNSET:
            await check_url(url, allow_private=self.config.webhooks_allow_private)
            changes["url"] = url
        if event_types is not _UNSET:
            changes["event_types"] = json.dumps(await self._types(event_types))
        if channels is not _UNSET:
            changes["channels"] = json.dumps(_text_list(channels or [], "channels"))
        if description is not _UNSET:
            changes["description"] = _check_description(description)
        if shape is not _UNSET:
            changes["shape"] = _shape(shape)
        if enabled is not _UNSET:
            changes["enabled"] = bool(enabled)
        await self.store.update(endpoint_id, changes, clear_failure=bool(changes.get("enabled")))
        return await self.get(endpoint_id)

    async def delete(self, endpoint_id: str) -> None:
        """Remove the endpoint with its deliveries and their log."""
        await self._row(endpoint_id)
        await self.store.delete(endpoint_id)

    async def rotate(self, endpoint_id: str, grace_s: float | None = None
                     ) -> WebhookEndpointCreated:
        """A new signing secret; the previous one keeps signing beside it for the grace
        period (``webhooks_rotation_grace_s``), so receivers can switch without a gap."""
        grace = self.config.webhooks_rotation_grace_s if grace_s is None else grace_s
        if grace < 0 or grace > 30 * 86_400:
            raise InvalidInput("grace_s must be between 0 and 30 days", field="grace_s")
        async def unit() -> str:
            row = await self._row(endpoint_id)
            now = await self.clock.now()
            expires = (now + timedelta(seconds=grace)).isoformat()
            kept = [{"secret": s, "expires_at": expires}
                    for s in live_secrets(row["secrets"], now)[:1]] if grace > 0 else []
            secret = new_secret()
            await self.store.set_secrets(
                endpoint_id, json.dumps([{"secret": secret, "expires_at": None}, *kept]))
            return secret

        secret = await in_transaction(self.db, unit)
        shown = await self.get(endpoint_id)
        return WebhookEndpointCreated(**msgspec.structs.asdict(shown), secret=secret)

    # -- the delivery log -------------------------------------------------------------
    async def deliveries(self, endpoint_id: str, *, status: str | None = None,
                         after: str | None = None, limit: int = 50) -> list[WebhookDelivery]:
        await self._row(endpoint_id)
        rows = await self.store.deliveries(endpoint_id, status=status, after=after or "",
                                           limit=limit)
        return [delivery_of(r) for r in rows]

    async def delivery(self, endpoint_id: str, delivery_id: str) -> WebhookDelivery:
        row = await self.store.delivery(endpoint_id, delivery_id)
        if row is None:
            raise NotFound("webhook delivery", delivery_id)
        found = delivery_of(row, payload=True)
        found.attempt_log = [WebhookAttempt(
            id=a["id"], at=moment(a["at"]) or found.created_at, status_code=a["status_code"],
            latency_ms=int(a["latency_ms"]), answer=a["answer"], error=a["error"])
            for a in await self.store.attempts(delivery_id)]
        return found

    async def redeliver(self, endpoint_id: str, delivery_id: str | None = None) -> int:
        """Send failed deliveries again (one, or every failed one of the endpoint): they
        are pending again, due now, with a fresh retry period. Returns how many."""
        await self._row(endpoint_id)
        if delivery_id is not None:
            await self.delivery(endpoint_id, delivery_id)
        return await self.store.redeliver(endpoint_id, delivery_id)


def delivery_of(row: dict[str, Any], *, payload: bool = False) -> WebhookDelivery:
    created = moment(row["created_at"]) or datetime.now(UTC)
    return WebhookDelivery(
        id=row["id"], endpoint_id=row["endpoint_id"], event_id=row["event_id"],
        type=row["type"], status=row["status"], attempts=int(row["attempts"]),
        next_attempt_at=moment(row["next_attempt_at"]) if row["status"] == "pending" else None,
        last_status=row["last_status"], last_error=row["last_error"], created_at=created,
        delivered_at=moment(row["delivered_at"]),
        payload=json.loads(row["payload"]) if payload else {})
