"""The webhook worker's queue: deliveries made from the outbox, claimed when due, and
the record of every attempt with its consequences for the delivery and its endpoint.

Times that lie some seconds before or after now are taken from the database's clock
(the processes' clocks differ); the seconds are a parameter, so each statement's text
stays the same from call to call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ordnung.core.persistence.database import Database

#: the database's clock plus ``{}`` seconds (the argument of ``_shift``), per dialect
_SHIFTED = {
    "postgres": "(now() + make_interval(secs => {}))",
    # text in piccolo's own Timestamptz format, so that it compares with stored times
    "sqlite": "strftime('%Y-%m-%d %H:%M:%f+00:00', 'now', {})",
}
#: rows of one multi-row INSERT of deliveries
INSERT_CHUNK = 100

_ENABLED = "SELECT id, event_types, channels, shape FROM webhook_endpoints WHERE enabled = {}"
_DELIVERY_COLUMNS = ("id", "endpoint_id", "event_id", "type", "payload")
_ATTEMPT_COLUMNS = ("id", "delivery_id", "endpoint_id", "status_code", "latency_ms", "answer",
                    "error")
_CLAIM = (
    "UPDATE webhook_deliveries SET next_attempt_at = <later> "
    "WHERE id IN (SELECT d.id FROM webhook_deliveries d JOIN webhook_endpoints e "
    "ON e.id = d.endpoint_id WHERE d.status = 'pending' AND e.enabled = {} AND "
    "d.next_attempt_at <= <now> ORDER BY d.next_attempt_at LIMIT {}<lock>) "
    "RETURNING id, endpoint_id, payload, attempts")
_SIGNING = "SELECT id, url, secrets FROM webhook_endpoints WHERE id IN (<ids>)"
_DELIVERED = (
    "UPDATE webhook_deliveries SET status = 'delivered', delivered_at = <now>, "
    "attempts = attempts + 1, last_status = {}, last_error = NULL WHERE id IN (<ids>)")
_RECOVERED = ("UPDATE webhook_endpoints SET failing_since = NULL WHERE id IN (<ids>) "
              "AND failing_since IS NOT NULL")
_RETRY_OR_FAIL = (
    "UPDATE webhook_deliveries SET attempts = {}, last_status = {}, last_error = {}, "
    "next_attempt_at = <later>, status = CASE WHEN retry_from < <earlier> "
    "THEN 'failed' ELSE 'pending' END WHERE id = {}")
_FAILING = ("UPDATE webhook_endpoints SET failing_since = COALESCE(failing_since, <now>) "
            "WHERE id = {}")
_DISABLE = (
    "UPDATE webhook_endpoints SET enabled = {}, disabled_reason = {}, updated_at = <now> "
    "WHERE id = {} AND enabled = {} AND failing_since < <earlier> RETURNING id")


def _ids(statement: str, ids: Sequence[Any]) -> str:
    return statement.replace("<ids>", ", ".join("{}" for _ in ids))


class DeliveryStore:
    def __init__(self, db: Database) -> None:
        self.db = db
        now, shifted = db.sql_now(), _SHIFTED[db.kind]
        lock = " FOR UPDATE SKIP LOCKED" if db.is_postgres else ""
        self._computed = {"status": "'pending'", "attempts": "0", "next_attempt_at": now,
                          "retry_from": now, "created_at": now}
        self._claim = (_CLAIM.replace("<later>", shifted).replace("<now>", now)
                       .replace("<lock>", lock))
        self._delivered = _DELIVERED.replace("<now>", now)
        self._retry_or_fail = (_RETRY_OR_FAIL.replace("<later>", shifted)
                               .replace("<earlier>", shifted))
        self._failing = _FAILING.replace("<now>", now)
        self._disable = _DISABLE.replace("<now>", now).replace("<earlier>", shifted)

    def _shift(self, seconds: float) -> Any:
        """The argument of a ``_SHIFTED`` clock: seconds, or SQLite's date modifier."""
        return float(seconds) if self.db.is_postgres else f"{float(seconds):+} seconds"

    # -- fan-out ----------------------------------------------------------------------
    async def enabled_endpoints(self) -> list[dict[str, Any]]:
        return await self.db.fetch(_ENABLED, True)

    async def add(self, deliveries: Sequence[tuple[Any, ...]]) -> None:
        """New pending deliveries, due now: (id, endpoint_id, event_id, type, payload)."""
        for start in range(0, len(deliveries), INSERT_CHUNK):
            await self.db.insert_rows("webhook_deliveries", _DELIVERY_COLUMNS,
                                      deliveries[start:start + INSERT_CHUNK],
                                      computed=self._computed)

    # -- sending ----------------------------------------------------------------------
    async def claim_due(self, claim_s: float, limit: int) -> list[dict[str, Any]]:
        """Up to ``limit`` due deliveries of enabled endpoints, not due again for
        ``claim_s`` seconds (a worker that dies mid-request leaves a claim that runs out)."""
        return await self.db.fetch(self._claim, self._shift(claim_s), True, int(limit))

    async def signing(self, endpoint_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The url and secrets of each endpoint, by id."""
        rows = await self.db.fetch(_ids(_SIGNING, endpoint_ids), *endpoint_ids)
        return {row["id"]: row for row in rows}

    # -- recording --------------------------------------------------------------------
    async def add_attempts(self, attempts: Sequence[tuple[Any, ...]]) -> None:
        """(id, delivery_id, endpoint_id, status_code, latency_ms, answer, error), at now."""
        await self.db.insert_rows("webhook_attempts", _ATTEMPT_COLUMNS, attempts,
                                  computed={"at": self.db.sql_now()})

    async def delivered(self, status: int, delivery_ids: Sequence[str]) -> None:
        await self.db.run(_ids(self._delivered, delivery_ids), status, *delivery_ids)

    async def recovered(self, endpoint_ids: Sequence[str]) -> None:
        """The endpoints answered: their failure streaks end."""
        await self.db.run(_ids(_RECOVERED, endpoint_ids), *endpoint_ids)

    async def retry_or_fail(self, delivery_id: str, *, attempts: int, status: int | None,
                            error: str | None, retry_in_s: float, retry_for_s: float) -> None:
        """Due again in ``retry_in_s``; failed for good once it has been retried for
        ``retry_for_s``."""
        await self.db.run(self._retry_or_fail, attempts, status, error,
                          self._shift(retry_in_s), self._shift(-retry_for_s), delivery_id)

    async def failing(self, endpoint_id: str) -> None:
        """Start the endpoint's failure streak, unless it has one."""
        await self.db.run(self._failing, endpoint_id)

    async def disable_if_failing(self, endpoint_id: str, *, for_s: float,
                                 reason: str) -> bool:
        """Disable the endpoint if its failure streak is longer than ``for_s``; whether
        this call disabled it."""
        rows = await self.db.run(self._disable, False, reason, endpoint_id, True,
                                 self._shift(-for_s))
        return bool(rows)
