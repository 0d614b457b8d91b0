"""Every query on the job and job_run tables. Tenant scoping is applied here and nowhere else
(the scheduler's cross-tenant queries say so in their names)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Table,
    and_,
    exists,
    false,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Row

from event_collector.kit import leases
from event_collector.kit.db import AnyConnection, backend_of
from event_collector.models import job_run_table, job_table

_job = job_table
_run = job_run_table

LEASED_RUNS = leases.LeasedTable(_run)
UNFINISHED = ("queued", "running")


async def _insert_unless_duplicate(
    conn: AnyConnection, table: Table, values: dict[str, Any]
) -> bool:
    """INSERT … ON CONFLICT DO NOTHING; whether the row was inserted."""
    return await backend_of(conn).insert_unless_exists(conn, table, values)


def _no_live_sibling(now: datetime) -> ColumnElement[bool]:
    """No other run of the same job is running under a live lease: a job runs once at a time
    (two runs evaluating the same customers at once would race to send them the same items)."""
    sibling = _run.alias("sibling")
    return ~exists().where(
        sibling.c.tenant == _run.c.tenant,
        sibling.c.job_id == _run.c.job_id,
        sibling.c.id != _run.c.id,
        sibling.c.status == "running",
        sibling.c.lease_until >= now,
    )


def _as_dict(row: Row[Any] | None) -> dict[str, Any] | None:
    return dict(row._mapping) if row is not None else None


class JobRepository:
    def __init__(self, conn: AnyConnection) -> None:
        self.conn = conn

    # jobs ----------------------------------------------------------------------------------

    async def get_job(
        self, tenant: str, job_id: str, *, for_update: bool = False
    ) -> dict[str, Any] | None:
        statement = select(_job).where(_job.c.tenant == tenant, _job.c.id == job_id)
        if for_update:
            # Serialises concurrent read-modify-write on PostgreSQL (SQLite writes are serial).
            statement = backend_of(self.conn).for_update(statement)
        return _as_dict((await self.conn.execute(statement)).first())

    async def count_live_jobs(self, tenant: str) -> int:
        """The tenant's jobs that are not deleted (what its cap counts)."""
        statement = (
            select(func.count())
            .select_from(_job)
            .where(_job.c.tenant == tenant, _job.c.deleted == false())
        )
        return int((await self.conn.execute(statement)).scalar_one())

    async def insert_job(self, values: dict[str, Any]) -> bool:
        """Insert a job unless its (tenant, id) exists; whether it was inserted."""
        return await _insert_unless_duplicate(self.conn, _job, values)

    async def update_job(self, tenant: str, job_id: str, values: dict[str, Any]) -> None:
        await self.conn.execute(
            update(_job).where(_job.c.tenant == tenant, _job.c.id == job_id).values(**values)
        )

    async def list_jobs(
        self,
        tenant: str,
        *,
        after_seq: int | None,
        limit: int,
        notification: str | None,
        active: bool | None,
        include_deleted: bool,
    ) -> list[dict[str, Any]]:
        statement = select(_job).where(_job.c.tenant == tenant)
        if after_seq is not None:
            statement = statement.where(_job.c.seq > after_seq)
        if notification is not None:
            statement = statement.where(_job.c.notification == notification)
        if active is not None:
            statement = statement.where(_job.c.is_active == active)
        if not include_deleted:
            statement = statement.where(_job.c.deleted == false())
        result = await self.conn.execute(statement.order_by(_job.c.seq).limit(limit))
        return [dict(row._mapping) for row in result]

    async def all_tenants_jobs(self, tenant: str | None) -> list[dict[str, Any]]:
        """Operators (CLI): every non-deleted job, of one tenant or of all."""
        statement = select(_job).where(_job.c.deleted == false())
        if tenant is not None:
            statement = statement.where(_job.c.tenant == tenant)
        result = await self.conn.execute(statement.order_by(_job.c.tenant, _job.c.seq))
        return [dict(row._mapping) for row in result]

    # runs ----------------------------------------------------------------------------------

    async def insert_run(self, values: dict[str, Any]) -> None:
        await self.conn.execute(insert(_run).values(**values))

    async def insert_occurrence_run(self, values: dict[str, Any]) -> bool:
        """The run of one scheduled occurrence, unless it exists (unique per job and
        scheduled_for); whether this call made it."""
        return await _insert_unless_duplicate(self.conn, _run, values)

    async def get_run(self, tenant: str, job_id: str, run_id: str) -> dict[str, Any] | None:
        statement = select(_run).where(
            _run.c.tenant == tenant, _run.c.job_id == job_id, _run.c.id == run_id
        )
        return _as_dict((await self.conn.execute(statement)).first())

    async def list_runs(
        self, tenant: str, job_id: str, *, before_seq: int | None, limit: int
    ) -> list[dict[str, Any]]:
        """Newest first."""
        statement = select(_run).where(_run.c.tenant == tenant, _run.c.job_id == job_id)
        if before_seq is not None:
            statement = statement.where(_run.c.seq < before_seq)
        result = await self.conn.execute(statement.order_by(_run.c.seq.desc()).limit(limit))
        return [dict(row._mapping) for row in result]

    async def last_runs(self, tenant: str, job_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The newest run of each of these jobs."""
        if not job_ids:
            return {}
        newest = (
            select(func.max(_run.c.seq))
            .where(_run.c.tenant == tenant, _run.c.job_id.in_(job_ids))
            .group_by(_run.c.job_id)
        )
        result = await self.conn.execute(select(_run).where(_run.c.seq.in_(newest)))
        return {row.job_id: dict(row._mapping) for row in result}

    # the scheduler (across tenants) --------------------------------------------------------

    async def due_jobs_of_all_tenants(self, now: datetime, limit: int) -> list[dict[str, Any]]:
        """Jobs whose next occurrence is due, locked (others' locked ones skipped)."""
        statement = backend_of(self.conn).skip_locked(
            select(_job).where(_job.c.next_run_at <= now).order_by(_job.c.next_run_at).limit(limit)
        )
        return [dict(row._mapping) for row in await self.conn.execute(statement)]

    async def advance_job(self, seq: int, due: datetime, next_run_at: datetime | None) -> bool:
        """Move a job past the occurrence(s) due at ``due`` (unless someone else already did)."""
        result = await self.conn.execute(
            update(_job)
            .where(_job.c.seq == seq, _job.c.next_run_at == due)
            .values(next_run_at=next_run_at)
        )
        return bool(result.rowcount)

    async def earliest_next_run_of_all_tenants(self) -> datetime | None:
        value: datetime | None = await self.conn.scalar(select(func.min(_job.c.next_run_at)))
        return value

    async def earliest_lease_expiry_of_all_tenants(
        self, *, other_than: str, now: datetime
    ) -> datetime | None:
        """When the first unfinished run another owner holds becomes claimable again (``now``
        for one nobody holds: another scheduler may have claimed it since we looked)."""
        value: datetime | None = await self.conn.scalar(
            select(func.min(func.coalesce(_run.c.lease_until, now))).where(
                _run.c.status.in_(UNFINISHED),
                or_(_run.c.lease_owner.is_(None), _run.c.lease_owner != other_than),
                # A run waiting for its job's running one: whoever finishes that takes it.
                _no_live_sibling(now),
            )
        )
        return value

    async def claim_runs_of_all_tenants(
        self,
        *,
        owner: str,
        now: datetime,
        until: datetime,
        limit: int,
        run_id: str | None = None,
    ) -> list[dict[str, Any]]:
        """Lease unfinished runs nobody holds (queued, or running under an expired lease) of
        jobs with no run in progress; only ``run_id`` (whatever else runs) when given."""
        where: ColumnElement[bool] = _run.c.status.in_(UNFINISHED)
        if run_id is not None:
            where = and_(where, _run.c.id == run_id)
        else:
            where = and_(where, _no_live_sibling(now))
        rows = await leases.claim(
            self.conn,
            LEASED_RUNS,
            owner=owner,
            until=until,
            now=now,
            where=where,
            order_by=(_run.c.seq,),
            limit=limit,
        )
        return [dict(row._mapping) for row in rows]

    async def mark_started(self, run_id: str, *, owner: str, now: datetime) -> bool:
        result = await self.conn.execute(
            update(_run)
            .where(_run.c.id == run_id, _run.c.lease_owner == owner)
            .values(
                status="running",
                started_at=func.coalesce(_run.c.started_at, now),
                attempts=_run.c.attempts + 1,
            )
        )
        return bool(result.rowcount)

    async def finish(
        self,
        run_id: str,
        *,
        owner: str,
        status: str,
        now: datetime,
        counts: dict[str, int] | None,
        error: str | None,
    ) -> bool:
        """Record a run's end, if ``owner`` still holds it: a run finishes once."""
        result = await self.conn.execute(
            update(_run)
            .where(_run.c.id == run_id, _run.c.lease_owner == owner, _run.c.status == "running")
            .values(
                status=status,
                finished_at=now,
                counts=counts,
                error=error,
                lease_owner=None,
                lease_until=None,
            )
        )
        return bool(result.rowcount)
