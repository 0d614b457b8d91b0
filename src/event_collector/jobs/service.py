"""The rules of notification jobs: validation beyond shape, state changes, runs on request.

A job's ``next_run_at`` is the scheduler's to-do list: the next occurrence (UTC) while the job
can run (active, scheduled, not deleted), else NULL. Writes that change when or whether a job
runs recompute it from now, so a changed schedule takes effect at once (occurrences the old
schedule had due are dropped); other writes leave it alone. Every write NOTIFYs the scheduler
channel in its transaction, so every scheduler process re-reads its next wake-up time.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from event_collector.events.service import decode_cursor, encode_cursor
from event_collector.jobs.repository import JobRepository
from event_collector.jobs.runner import JobRunner, RunOutcome, RunRequest
from event_collector.jobs.schedule import Schedule, ScheduleError, parse_schedule, parse_timezone
from event_collector.jobs.schemas import NOTIFICATIONS, JobIn, JobUpdate
from event_collector.kit.errors import BadRequest, Conflict, NotFound, ValidationFailed
from event_collector.kit.timefmt import isoformat_z
from event_collector.kit.waker import notify

JOBS_CHANNEL = "ec_jobs"
MESSAGE_OUTPUT = "message"  # job_parameters.output: the job only publishes NOTIFICATION messages

# Fields whose change moves the job's next occurrence.
_TIMING_FIELDS = (
    "schedule",
    "schedule_expression",
    "timezone",
    "is_active",
    "is_scheduled",
    "deleted",
)


def _problem(field: str, msg: str) -> ValidationFailed:
    return ValidationFailed([{"loc": [field], "msg": msg, "type": "value_error"}])


def effective_expression(job: dict[str, Any]) -> tuple[str, str] | None:
    """(field name, expression) of the schedule a job follows, if it has one."""
    if job.get("schedule_expression"):
        return "scheduleExpression", job["schedule_expression"]
    if job.get("schedule"):
        return "schedule", job["schedule"]
    return None


def job_schedule(job: dict[str, Any]) -> Schedule | None:
    chosen = effective_expression(job)
    return parse_schedule(chosen[1], job["timezone"]) if chosen else None


def can_run_on_schedule(job: dict[str, Any]) -> bool:
    return bool(job["is_active"] and job["is_scheduled"] and not job["deleted"])


def _validate(job: dict[str, Any]) -> Schedule | None:
    """Check a job as it would be stored; its schedule when it has one."""
    try:
        parse_timezone(job["timezone"])
    except ScheduleError as exc:
        raise _problem("timezone", str(exc)) from None
    schedule: Schedule | None = None
    # `schedule` is a 5-field cron; `scheduleExpression` also takes the AWS forms.
    if job.get("schedule"):
        if job["schedule"].strip().lower().startswith(("cron(", "rate(")):
            raise _problem(
                "schedule",
                "must be a 5-field cron expression (AWS cron(...) and rate(...) go in "
                "scheduleExpression)",
            )
        try:
            schedule = parse_schedule(job["schedule"], job["timezone"])
        except ScheduleError as exc:
            raise _problem("schedule", str(exc)) from None
    if job.get("schedule_expression"):
        try:
            schedule = parse_schedule(job["schedule_expression"], job["timezone"])
        except ScheduleError as exc:
            raise _problem("scheduleExpression", str(exc)) from None
    if schedule is None and job["is_scheduled"]:
        raise _problem("schedule", "is required when is_scheduled is true")
    parameters = job["job_parameters"]
    if not job.get("template_id") and parameters.get("output") != MESSAGE_OUTPUT:
        raise _problem(
            "template_id",
            'is required (unless job_parameters.output is "message": the job only publishes '
            "NOTIFICATION messages)",
        )
    return schedule


def _next_run_at(job: dict[str, Any], schedule: Schedule | None, now: datetime) -> datetime | None:
    if schedule is None or not can_run_on_schedule(job):
        return None
    return schedule.next_after(now)


async def _check_job_cap(repository: JobRepository, tenant: str, max_jobs: int | None) -> None:
    """A tenant keeps at most ``max_jobs`` jobs that are not deleted (None: no cap, for operator
    tools). Count, then write: concurrent creates can each pass the check (docs/limits.md)."""
    if max_jobs is not None and await repository.count_live_jobs(tenant) >= max_jobs:
        raise BadRequest(
            f"the tenant has {max_jobs} jobs, the most it may have (EC_MAX_JOBS_PER_TENANT): "
            "delete one first"
        )


async def create_job(
    conn: AsyncConnection, tenant: str, body: JobIn, now: datetime, *, max_jobs: int | None = None
) -> dict[str, Any]:
    job: dict[str, Any] = {
        "tenant": tenant,
        "id": body.id or str(uuid.uuid4()),
        "notification": body.notification,
        "is_active": body.is_active,
        "is_scheduled": body.is_scheduled,
        "deleted": body.deleted,
        "job_parameters": body.job_parameters,
        "number_of_items_in_email": body.number_of_items_in_email,
        "schedule": body.schedule,
        "schedule_expression": body.scheduleExpression,
        "timezone": body.timezone,
        "template_id": body.template_id,
        "created_at": now,
        "updated_at": now,
        "deleted_at": now if body.deleted else None,
    }
    job["next_run_at"] = _next_run_at(job, _validate(job), now)
    repository = JobRepository(conn)
    if not body.deleted:
        await _check_job_cap(repository, tenant, max_jobs)
    if not await repository.insert_job(job):
        raise Conflict(f"a job with id {job['id']!r} exists")
    await notify(conn, JOBS_CHANNEL)
    stored = await repository.get_job(tenant, job["id"])
    assert stored is not None
    return stored


async def update_job(
    conn: AsyncConnection,
    tenant: str,
    job_id: str,
    body: JobUpdate,
    now: datetime,
    *,
    max_jobs: int | None = None,
) -> dict[str, Any]:
    if body.id is not None and body.id != job_id:
        raise _problem("id", "a job's id cannot change (it differs from the id in the path)")
    repository = JobRepository(conn)
    stored = await repository.get_job(tenant, job_id, for_update=True)
    if stored is None:
        raise NotFound(f"no job {job_id!r}")
    sent = body.model_fields_set
    changes: dict[str, Any] = {}
    for name in (
        "deleted",
        "is_active",
        "is_scheduled",
        "notification",
        "number_of_items_in_email",
        "timezone",
    ):
        value = getattr(body, name)
        if name in sent and value is not None:
            changes[name] = value
    # Present, even as null or "", clears these optional fields.
    for name, column in (
        ("schedule", "schedule"),
        ("scheduleExpression", "schedule_expression"),
        ("template_id", "template_id"),
    ):
        if name in sent:
            changes[column] = getattr(body, name)
    if body.job_parameters is not None:
        changes["job_parameters"] = {**stored["job_parameters"], **body.job_parameters}
    job = {**stored, **changes}
    schedule = _validate(job)
    if "deleted" in changes and changes["deleted"] != stored["deleted"]:
        changes["deleted_at"] = now if changes["deleted"] else None
        if not changes["deleted"]:  # an undeleted job counts again
            await _check_job_cap(repository, tenant, max_jobs)
    if any(job[name] != stored[name] for name in _TIMING_FIELDS):
        changes["next_run_at"] = _next_run_at(job, schedule, now)
    changes["updated_at"] = now
    await repository.update_job(tenant, job_id, changes)
    await notify(conn, JOBS_CHANNEL)
    updated = await repository.get_job(tenant, job_id)
    assert updated is not None
    return updated


async def delete_job(conn: AsyncConnection, tenant: str, job_id: str, now: datetime) -> None:
    """Soft delete; deleting a deleted job is a no-op."""
    repository = JobRepository(conn)
    stored = await repository.get_job(tenant, job_id, for_update=True)
    if stored is None:
        raise NotFound(f"no job {job_id!r}")
    if stored["deleted"]:
        return
    await repository.update_job(
        tenant,
        job_id,
        {"deleted": True, "deleted_at": now, "updated_at": now, "next_run_at": None},
    )
    await notify(conn, JOBS_CHANNEL)


async def get_job(
    conn: AsyncConnection, tenant: str, job_id: str, *, include_deleted: bool = True
) -> dict[str, Any]:
    job = await JobRepository(conn).get_job(tenant, job_id)
    if job is None or (job["deleted"] and not include_deleted):
        raise NotFound(f"no job {job_id!r}")
    return job


async def job_with_last_run(
    conn: AsyncConnection, tenant: str, job_id: str, *, include_deleted: bool
) -> dict[str, Any]:
    job = await get_job(conn, tenant, job_id, include_deleted=include_deleted)
    last = await JobRepository(conn).last_runs(tenant, [job_id])
    return job_to_api(job, last.get(job_id))


async def last_run(conn: AsyncConnection, tenant: str, job_id: str) -> dict[str, Any] | None:
    return (await JobRepository(conn).last_runs(tenant, [job_id])).get(job_id)


def notification_filter(value: str | None) -> str | None:
    if value is None:
        return None
    if value.strip().upper() not in NOTIFICATIONS:
        raise _problem("notification", f"must be one of {', '.join(NOTIFICATIONS)}")
    return value.strip().upper()


async def list_jobs(
    conn: AsyncConnection,
    tenant: str,
    *,
    notification: str | None,
    active: bool | None,
    include_deleted: bool,
    cursor: str | None,
    limit: int,
) -> dict[str, Any]:
    repository = JobRepository(conn)
    rows = await repository.list_jobs(
        tenant,
        after_seq=decode_cursor(cursor) if cursor else None,
        limit=limit + 1,
        notification=notification,
        active=active,
        include_deleted=include_deleted,
    )
    page, more = rows[:limit], len(rows) > limit
    last = await repository.last_runs(tenant, [row["id"] for row in page])
    return {
        "items": [job_to_api(row, last.get(row["id"])) for row in page],
        "next_cursor": encode_cursor(page[-1]["seq"]) if more else None,
    }


# runs ---------------------------------------------------------------------------------------


async def request_run(
    conn: AsyncConnection, tenant: str, job_id: str, now: datetime
) -> dict[str, Any]:
    """Queue a manual run (outside the schedule) for the scheduler to execute."""
    job = await get_job(conn, tenant, job_id)
    if job["deleted"]:
        raise Conflict(f"job {job_id!r} is deleted; a deleted job never runs")
    run = new_run(tenant, job_id, trigger="manual", scheduled_for=None, now=now)
    await JobRepository(conn).insert_run(run)
    await notify(conn, JOBS_CHANNEL)
    return run


def new_run(
    tenant: str, job_id: str, *, trigger: str, scheduled_for: datetime | None, now: datetime
) -> dict[str, Any]:
    return {
        "id": str(uuid.uuid4()),
        "tenant": tenant,
        "job_id": job_id,
        "trigger": trigger,
        "scheduled_for": scheduled_for,
        "status": "queued",
        "created_at": now,
        "attempts": 0,
    }


async def job_for_dry_run(conn: AsyncConnection, tenant: str, job_id: str) -> dict[str, Any]:
    job = await get_job(conn, tenant, job_id)
    if job["deleted"]:
        raise Conflict(f"job {job_id!r} is deleted; a deleted job never runs")
    return job


async def dry_run(runner: JobRunner, job: dict[str, Any], now: datetime) -> dict[str, Any]:
    """What a run would send, rendered; sends and records nothing."""
    outcome: RunOutcome = await runner(
        RunRequest(tenant=job["tenant"], job=job, run_id=None, dry_run=True, now=now)
    )
    return {"messages": outcome.messages, "counts": outcome.counts}


async def get_run(
    conn: AsyncConnection, tenant: str, job_id: str, run_id: str, *, include_deleted: bool = True
) -> dict[str, Any]:
    await get_job(conn, tenant, job_id, include_deleted=include_deleted)
    run = await JobRepository(conn).get_run(tenant, job_id, run_id)
    if run is None:
        raise NotFound(f"no run {run_id!r} of job {job_id!r}")
    return run_to_api(run)


async def list_runs(
    conn: AsyncConnection,
    tenant: str,
    job_id: str,
    *,
    cursor: str | None,
    limit: int,
    include_deleted: bool = True,
) -> dict[str, Any]:
    await get_job(conn, tenant, job_id, include_deleted=include_deleted)
    rows = await JobRepository(conn).list_runs(
        tenant, job_id, before_seq=decode_cursor(cursor) if cursor else None, limit=limit + 1
    )
    page, more = rows[:limit], len(rows) > limit
    return {
        "items": [run_to_api(row) for row in page],
        "next_cursor": encode_cursor(page[-1]["seq"]) if more else None,
    }


# rendering ----------------------------------------------------------------------------------


def _stamp(value: datetime | None) -> str | None:
    return isoformat_z(value) if value is not None else None


def job_to_api(job: dict[str, Any], last_run: dict[str, Any] | None) -> dict[str, Any]:
    try:
        schedule = job_schedule(job)
    except ScheduleError:  # stored before a rule tightened: shown, never run
        schedule = None
    next_run_at = job["next_run_at"]
    return {
        "id": job["id"],
        "deleted": job["deleted"],
        "is_active": job["is_active"],
        "is_scheduled": job["is_scheduled"],
        "job_parameters": job["job_parameters"],
        "notification": job["notification"],
        "number_of_items_in_email": job["number_of_items_in_email"],
        "schedule": job["schedule"],
        "scheduleExpression": job["schedule_expression"],
        "timezone": job["timezone"],
        "template_id": job["template_id"],
        "schedule_description": schedule.describe() if schedule else None,
        "next_run_at": _stamp(next_run_at),
        "next_run_at_local": (
            next_run_at.astimezone(schedule.zone).isoformat() if next_run_at and schedule else None
        ),
        "last_run": run_to_api(last_run) if last_run else None,
        "created_at": isoformat_z(job["created_at"]),
        "updated_at": isoformat_z(job["updated_at"]),
    }


def run_to_api(run: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": run["id"],
        "job_id": run["job_id"],
        "status": run["status"],
        "trigger": run["trigger"],
        "scheduled_for": _stamp(run["scheduled_for"]),
        "created_at": isoformat_z(run["created_at"]),
        "started_at": _stamp(run["started_at"]),
        "finished_at": _stamp(run["finished_at"]),
        "attempts": run["attempts"],
        "counts": run["counts"],
        "error": run["error"],
    }
