"""HTTP for notification jobs: the seed's create/update/delete, reads, runs (DESIGN §3.3)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Request
from starlette.responses import Response

from event_collector.auth.dependencies import Authenticator
from event_collector.auth.service import Principal
from event_collector.jobs import service
from event_collector.jobs.runner import JobRunner
from event_collector.jobs.scheduler import Scheduler
from event_collector.jobs.schemas import (
    NOTIFICATIONS,
    DryRunOut,
    JobId,
    JobIn,
    JobOut,
    JobPage,
    JobUpdate,
    RunAccepted,
    RunOut,
    RunPage,
)
from event_collector.kit.db import utcnow
from event_collector.kit.dependencies import AppSettings, Db, ReadConnection
from event_collector.kit.http import error_responses, json_response
from event_collector.kit.validation import any_case_pattern

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"])

JobsRead = Annotated[Principal, Depends(Authenticator("jobs:read"))]
JobsWrite = Annotated[Principal, Depends(Authenticator("jobs:write"))]
IdPath = Annotated[JobId, Path(description="The job's id")]
RunIdPath = Annotated[str, Path(max_length=36, description="The run's id")]
Limit = Annotated[int, Query(ge=1, le=500, description="Page size")]
Cursor = Annotated[
    str | None, Query(max_length=200, description="`next_cursor` of the previous page")
]
# Like a deleted job itself, its runs answer 404 unless asked for.
IncludeDeleted = Annotated[bool, Query(description="Also answer for a deleted job")]


def _scheduler(request: Request) -> Scheduler | None:
    scheduler: Scheduler | None = request.app.state.runtime.scheduler
    return scheduler


def _job_runner(request: Request) -> JobRunner:
    runner: JobRunner = request.app.state.runtime.job_runner
    return runner


# The scheduler running in this process, if any: woken after a job write commits (the others
# get the NOTIFY sent in the write's transaction).
LocalScheduler = Annotated[Scheduler | None, Depends(_scheduler)]
Runner = Annotated[JobRunner, Depends(_job_runner)]


def _wake(scheduler: Scheduler | None) -> None:
    if scheduler is not None:
        scheduler.wake()


@router.post(
    "",
    summary="Create a notification job",
    description="An existing `id` answers 409; `id` is generated when absent.",
    status_code=201,
    response_model=JobOut,
    responses=error_responses(400, 401, 403, 409, 415),
)
async def create_job(
    body: JobIn, principal: JobsWrite, db: Db, scheduler: LocalScheduler, settings: AppSettings
) -> Response:
    async with db.write() as conn:
        job = await service.create_job(
            conn, principal.tenant, body, utcnow(), max_jobs=settings.max_jobs_per_tenant
        )
    _wake(scheduler)
    return json_response(service.job_to_api(job, None), 201)


@router.put(
    "/{job_id}",
    summary="Update a notification job",
    description=(
        "Fields present replace the stored ones; `job_parameters` merge key by key. The id "
        "cannot change: a different `id` in the body answers 400. A change of schedule, time "
        "zone or of whether the job runs takes effect at once."
    ),
    response_model=JobOut,
    responses=error_responses(400, 401, 403, 404, 415),
)
async def update_job(
    job_id: IdPath,
    body: JobUpdate,
    principal: JobsWrite,
    db: Db,
    scheduler: LocalScheduler,
    settings: AppSettings,
) -> Response:
    async with db.write() as conn:
        job = await service.update_job(
            conn, principal.tenant, job_id, body, utcnow(), max_jobs=settings.max_jobs_per_tenant
        )
        last = await service.last_run(conn, principal.tenant, job_id)
    _wake(scheduler)
    return json_response(service.job_to_api(job, last))


_DELETE_DESCRIPTION = (
    "Soft delete (`deleted: true`), idempotent; a deleted job never runs. "
    "The seed deletes with POST; DELETE does the same."
)


@router.post(
    "/{job_id}",
    summary="Delete a notification job (the seed's POST)",
    description=_DELETE_DESCRIPTION,
    status_code=204,
    responses=error_responses(400, 401, 403, 404),
)
async def delete_job_by_post(
    job_id: IdPath, principal: JobsWrite, db: Db, scheduler: LocalScheduler
) -> Response:
    return await _delete(db, scheduler, principal.tenant, job_id)


@router.delete(
    "/{job_id}",
    summary="Delete a notification job",
    description=_DELETE_DESCRIPTION,
    status_code=204,
    responses=error_responses(400, 401, 403, 404),
)
async def delete_job(
    job_id: IdPath, principal: JobsWrite, db: Db, scheduler: LocalScheduler
) -> Response:
    return await _delete(db, scheduler, principal.tenant, job_id)


async def _delete(db: Db, scheduler: Scheduler | None, tenant: str, job_id: str) -> Response:
    async with db.write() as conn:
        await service.delete_job(conn, tenant, job_id, utcnow())
    _wake(scheduler)
    return Response(status_code=204)


@router.get(
    "",
    summary="List notification jobs",
    description="Oldest first, in cursor pages. Deleted jobs only with `include_deleted=true`.",
    response_model=JobPage,
    responses=error_responses(400, 401, 403),
)
async def list_jobs(
    principal: JobsRead,
    conn: ReadConnection,
    notification: Annotated[
        str | None,
        Query(
            description=f"One of {', '.join(NOTIFICATIONS)} (any case)",
            json_schema_extra={"pattern": any_case_pattern(NOTIFICATIONS)},
        ),
    ] = None,
    active: Annotated[bool | None, Query(description="Only active (true) or inactive")] = None,
    include_deleted: Annotated[bool, Query(description="Also list deleted jobs")] = False,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> Response:
    page = await service.list_jobs(
        conn,
        principal.tenant,
        notification=service.notification_filter(notification),
        active=active,
        include_deleted=include_deleted,
        cursor=cursor,
        limit=limit,
    )
    return json_response(page)


@router.get(
    "/{job_id}",
    summary="Get a notification job",
    description="With its next occurrence, its schedule in words and its last run.",
    response_model=JobOut,
    responses=error_responses(400, 401, 403, 404),
)
async def get_job(
    job_id: IdPath,
    principal: JobsRead,
    conn: ReadConnection,
    include_deleted: IncludeDeleted = False,
) -> Response:
    job = await service.job_with_last_run(
        conn, principal.tenant, job_id, include_deleted=include_deleted
    )
    return json_response(job)


@router.post(
    "/{job_id}/run",
    summary="Run a job now",
    description=(
        "Queues a run outside the schedule (202 `{run_id, status}`); a scheduler executes it. "
        "`dry_run=true` answers 200 `{messages, counts}`: the messages the run would send, "
        "rendered; it sends and records nothing. A deleted job answers 409."
    ),
    status_code=202,
    response_model=RunAccepted | DryRunOut,
    responses={200: {"model": DryRunOut}, **error_responses(400, 401, 403, 404, 409)},
)
async def run_job(
    job_id: IdPath,
    principal: JobsWrite,
    db: Db,
    scheduler: LocalScheduler,
    runner: Runner,
    dry_run: Annotated[bool, Query(description="Render what it would send; send nothing")] = False,
) -> Response:
    if dry_run:
        async with db.read() as conn:
            job = await service.job_for_dry_run(conn, principal.tenant, job_id)
        return json_response(await service.dry_run(runner, job, utcnow()))
    async with db.write() as conn:
        run = await service.request_run(conn, principal.tenant, job_id, utcnow())
    _wake(scheduler)
    return json_response({"run_id": run["id"], "status": run["status"]}, 202)


@router.get(
    "/{job_id}/runs",
    summary="A job's run history",
    description="Newest first, in cursor pages, with each run's counts.",
    response_model=RunPage,
    responses=error_responses(400, 401, 403, 404),
)
async def list_runs(
    job_id: IdPath,
    principal: JobsRead,
    conn: ReadConnection,
    limit: Limit = 100,
    cursor: Cursor = None,
    include_deleted: IncludeDeleted = False,
) -> Response:
    page = await service.list_runs(
        conn,
        principal.tenant,
        job_id,
        cursor=cursor,
        limit=limit,
        include_deleted=include_deleted,
    )
    return json_response(page)


@router.get(
    "/{job_id}/runs/{run_id}",
    summary="One run of a job",
    response_model=RunOut,
    responses=error_responses(400, 401, 403, 404),
)
async def get_run(
    job_id: IdPath,
    run_id: RunIdPath,
    principal: JobsRead,
    conn: ReadConnection,
    include_deleted: IncludeDeleted = False,
) -> Response:
    run = await service.get_run(
        conn, principal.tenant, job_id, run_id, include_deleted=include_deleted
    )
    return json_response(run)
