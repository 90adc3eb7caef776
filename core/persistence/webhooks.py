"""Webhook endpoints and their delivery log, as staff register, change and read them.

The worker's side (fan-out, claiming due deliveries, recording attempts) is
``webhook_deliveries.py``.
"""

from __future__ import annotations

from typing import Any

from ordnung.core.persistence.database import Database, where
from ordnung.core.persistence.retrying import in_transaction

_ENDPOINT = "SELECT * FROM webhook_endpoints WHERE id = {}"
_ENDPOINTS = "SELECT * FROM webhook_endpoints WHERE id > {} ORDER BY id LIMIT {}"
_INSERT = (
    "INSERT INTO webhook_endpoints (id, url, description, event_types, channels, "
    "enabled, disabled_reason, secrets, failing_since, created_at, updated_at, shape) "
    "VALUES ({}, {}, {}, {}, {}, {}, NULL, {}, NULL, <now>, <now>, {})")
#: the columns staff may change, each a constant clause of ``_UPDATE``
_SETS = {column: f"{column} = {{}}"
         for column in ("url", "event_types", "channels", "description", "shape", "enabled")}
#: enabling an endpoint again forgets why it was disabled and its failure streak
_CLEAR_FAILURE = "disabled_reason = NULL, failing_since = NULL"
_UPDATE = "UPDATE webhook_endpoints SET <sets>, updated_at = <now> WHERE id = {}"
_SET_SECRETS = "UPDATE webhook_endpoints SET secrets = {}, updated_at = <now> WHERE id = {}"
_DELETE = ("DELETE FROM webhook_attempts WHERE endpoint_id = {}",
           "DELETE FROM webhook_deliveries WHERE endpoint_id = {}",
           "DELETE FROM webhook_endpoints WHERE id = {}")

#: the delivery log: filters are added to ``_DELIVERIES``, then ``_DELIVERIES_PAGE``
_DELIVERIES = "SELECT * FROM webhook_deliveries"
_DELIVERIES_PAGE = " ORDER BY id LIMIT {}"
_DELIVERY = "SELECT * FROM webhook_deliveries WHERE id = {} AND endpoint_id = {}"
_ATTEMPTS = "SELECT * FROM webhook_attempts WHERE delivery_id = {} ORDER BY id"
_REDELIVER = ("UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = <now>, "
              "retry_from = <now> WHERE <which> RETURNING id")
_FAILED_OF_ENDPOINT = "endpoint_id = {} AND status = 'failed'"
_ONE_NOT_PENDING = "endpoint_id = {} AND id = {} AND status <> 'pending'"


class WebhookStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        now = db.sql_now()
        self._insert = _INSERT.replace("<now>", now)
        self._update = _UPDATE.replace("<now>", now)
        self._set_secrets = _SET_SECRETS.replace("<now>", now)
        redeliver = _REDELIVER.replace("<now>", now)
        self._redeliver_failed = redeliver.replace("<which>", _FAILED_OF_ENDPOINT)
        self._redeliver_one = redeliver.replace("<which>", _ONE_NOT_PENDING)

    # -- endpoints --------------------------------------------------------------------
    async def endpoint(self, endpoint_id: str) -> dict[str, Any] | None:
        return await self.db.fetch_one(_ENDPOINT, endpoint_id)

    async def endpoints(self, after: str, limit: int) -> list[dict[str, Any]]:
        return await self.db.fetch(_ENDPOINTS, after, int(limit))

    async def insert(self, *, endpoint_id: str, url: str, description: str, event_types: str,
                     channels: str, enabled: bool, secrets: str, shape: str) -> None:
        await self.db.run(self._insert, endpoint_id, url, description, event_types, channels,
                          enabled, secrets, shape)

    async def update(self, endpoint_id: str, changes: dict[str, Any], *,
                     clear_failure: bool = False) -> None:
        """Set the given columns (those of ``_SETS``; anything else is a bug) and the
        time of the change."""
        if not changes:
            return
        sets = [_SETS[column] for column in changes]
        if clear_failure:
            sets.append(_CLEAR_FAILURE)
        await self.db.run(self._update.replace("<sets>", ", ".join(sets)),
                          *changes.values(), endpoint_id)

    async def set_secrets(self, endpoint_id: str, secrets: str) -> None:
        await self.db.run(self._set_secrets, secrets, endpoint_id)

    async def delete(self, endpoint_id: str) -> None:
        """The endpoint with its deliveries and their log, in one transaction."""
        async def unit() -> None:
            for statement in _DELETE:
                await self.db.run(statement, endpoint_id)

        await in_transaction(self.db, unit)

    # -- the delivery log -------------------------------------------------------------
    async def deliveries(self, endpoint_id: str, *, status: str | None, after: str,
                         limit: int) -> list[dict[str, Any]]:
        clause, args = where(("endpoint_id = {}", endpoint_id), ("id > {}", after),
                             ("status = {}", status))
        return await self.db.fetch(_DELIVERIES + clause + _DELIVERIES_PAGE, *args, int(limit))

    async def delivery(self, endpoint_id: str, delivery_id: str) -> dict[str, Any] | None:
        return await self.db.fetch_one(_DELIVERY, delivery_id, endpoint_id)

    async def attempts(self, delivery_id: str) -> list[dict[str, Any]]:
        return await self.db.fetch(_ATTEMPTS, delivery_id)

    async def redeliver(self, endpoint_id: str, delivery_id: str | None) -> int:
        """Make failed deliveries (one, when named: any that is not pending) pending
        again, due now, with a fresh retry period; how many."""
        if delivery_id is None:
            rows = await self.db.run(self._redeliver_failed, endpoint_id)
        else:
            rows = await self.db.run(self._redeliver_one, endpoint_id, delivery_id)
        return len(rows)
