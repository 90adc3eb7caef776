"""Job leases: which process runs a background job, decided on the database's clock.

A job that must run in one process at a time (every server process starts it)
takes its lease before each round: a free lease, one that has run out, or its
own. The holder's lease lasts a few rounds, so the same process keeps the job
while it lives; when it dies, another process takes the job over once the lease
has run out. Every decision is an SQL statement that compares with the
database's clock (``now()`` on PostgreSQL, SQLite's own clock), never with a
process's own: servers' clocks drift apart, the database is the clock they share.
"""

from __future__ import annotations

from datetime import UTC, datetime

from ordnung.core.persistence.database import Database

#: the database's clock in SQL, per dialect: ``now`` and ``later`` (``{}`` seconds on)
_CLOCK = {
    "postgres": {"now": "now()", "later": "now() + make_interval(secs => {})"},
    # text in piccolo's own Timestamptz format, so that it compares with stored times
    "sqlite": {"now": "strftime('%Y-%m-%d %H:%M:%f+00:00', 'now')",
               "later": "strftime('%Y-%m-%d %H:%M:%f+00:00', 'now', '+' || {} || ' seconds')"},
}
_NOW = {"postgres": "SELECT now() AS now",
        "sqlite": "SELECT strftime('%Y-%m-%d %H:%M:%f', 'now') AS now"}
_TAKE = ("INSERT INTO job_leases (name, owner, lease_until) VALUES ({}, {}, <later>) "
         "ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, "
         "lease_until = excluded.lease_until "
         "WHERE job_leases.owner = excluded.owner OR job_leases.lease_until < <now> "
         "RETURNING owner")
_RELEASE = "DELETE FROM job_leases WHERE name = {} AND owner = {}"


class JobLeases:
    def __init__(self, db: Database) -> None:
        self.db = db
        clock = _CLOCK[db.kind]
        self._take = _TAKE.replace("<later>", clock["later"]).replace("<now>", clock["now"])

    async def now(self) -> datetime:
        """The database's clock."""
        rows = await self.db.run(_NOW[self.db.kind])
        value = rows[0]["now"]
        if isinstance(value, datetime):  # PostgreSQL
            return value.astimezone(UTC)
        return datetime.fromisoformat(str(value)).replace(tzinfo=UTC)

    async def take(self, name: str, owner: str, lease_s: float) -> bool:
        """Take or renew the lease on job ``name`` for ``lease_s`` seconds: True if
        ``owner`` holds it now (it was free, ran out, or was ``owner``'s already)."""
        rows = await self.db.run(self._take, name, owner, float(lease_s))
        return bool(rows) and str(rows[0]["owner"]) == owner

    async def release(self, name: str, owner: str) -> None:
        """Give the lease up (a process that stops): another takes the job at once."""
        await self.db.run(_RELEASE, name, owner)
