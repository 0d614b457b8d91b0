"""Jobs: the list with the schedule in words, next runs and last run counts; create/edit;
run now; a dry run that shows the rendered emails."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter
from starlette.responses import Response

from event_collector.console.web import (
    Console,
    ConsoleRoute,
    Form,
    Session,
    parse_body,
    quoted,
    redirect,
)
from event_collector.jobs import service
from event_collector.jobs.schemas import NOTIFICATIONS, JobIn, JobUpdate
from event_collector.kit.db import utcnow
from event_collector.kit.errors import ValidationFailed

router = APIRouter(prefix="/console/jobs", route_class=ConsoleRoute)


def _body(form: Form) -> dict[str, Any]:
    try:
        parameters = json.loads(form.get("job_parameters") or "{}")
    except json.JSONDecodeError as exc:
        raise ValidationFailed(
            [{"loc": ["job_parameters"], "msg": f"not valid JSON ({exc.msg})"}]
        ) from None
    body: dict[str, Any] = {
        "notification": form.get("notification"),
        "schedule": form.get("schedule"),
        "scheduleExpression": form.get("scheduleExpression"),
        "timezone": form.get("timezone") or "UTC",
        "template_id": form.optional("template_id"),
        "number_of_items_in_email": form.get("number_of_items_in_email") or "-1",
        "is_active": form.checked("is_active"),
        "is_scheduled": form.checked("is_scheduled"),
        "job_parameters": parameters,
    }
    if form.optional("id"):
        body["id"] = form.get("id")
    return body


def _wake(console: Console) -> None:
    """As the API does: the scheduler in this process looks again after a job write."""
    scheduler = console.runtime.scheduler
    if scheduler is not None:
        scheduler.wake()


def _form_page(console: Console, job: dict[str, Any] | None, **extra: Any) -> Response:
    return console.render(
        "job_form.html",
        job=job,
        notifications=NOTIFICATIONS,
        parameters=json.dumps(job["job_parameters"] if job else {}, indent=2),
        **extra,
    )


@router.get("")
async def list_page(console: Session) -> Response:
    console.require("jobs:read")
    async with console.runtime.db.read() as conn:
        page = await service.list_jobs(
            conn,
            console.tenant,
            notification=None,
            active=None,
            include_deleted=False,
            cursor=None,
            limit=500,
        )
    return console.render("jobs.html", jobs=page["items"])


@router.get("/new")
async def new_form(console: Session) -> Response:
    console.require("jobs:write")
    return _form_page(console, None)


@router.post("/new")
async def create(console: Session) -> Response:
    console.require("jobs:write")
    body = parse_body(JobIn, _body(await Form.of(console)))
    async with console.runtime.db.write() as conn:
        job = await service.create_job(
            conn,
            console.tenant,
            body,
            utcnow(),
            max_jobs=console.runtime.settings.max_jobs_per_tenant,
        )
    _wake(console)
    return redirect(f"/console/jobs/{quoted(job['id'])}", "Job created.")


@router.get("/{job_id}")
async def edit_form(console: Session, job_id: str) -> Response:
    console.require("jobs:read")
    async with console.runtime.db.read() as conn:
        job = await service.job_with_last_run(conn, console.tenant, job_id, include_deleted=False)
        runs = await service.list_runs(conn, console.tenant, job_id, cursor=None, limit=20)
    return _form_page(console, job, runs=runs["items"])


@router.post("/{job_id}")
async def update(console: Session, job_id: str) -> Response:
    console.require("jobs:write")
    body = parse_body(JobUpdate, _body(await Form.of(console)) | {"id": job_id})
    async with console.runtime.db.write() as conn:
        await service.update_job(
            conn,
            console.tenant,
            job_id,
            body,
            utcnow(),
            max_jobs=console.runtime.settings.max_jobs_per_tenant,
        )
    _wake(console)
    return redirect(f"/console/jobs/{quoted(job_id)}", "Job saved.")


@router.post("/{job_id}/delete")
async def delete(console: Session, job_id: str) -> Response:
    console.require("jobs:write")
    await Form.of(console)
    async with console.runtime.db.write() as conn:
        await service.delete_job(conn, console.tenant, job_id, utcnow())
    _wake(console)
    return redirect("/console/jobs", f"Job {job_id} deleted.")


@router.post("/{job_id}/run")
async def run_now(console: Session, job_id: str) -> Response:
    console.require("jobs:write")
    await Form.of(console)
    async with console.runtime.db.write() as conn:
        run = await service.request_run(conn, console.tenant, job_id, utcnow())
    _wake(console)
    return redirect(f"/console/jobs/{quoted(job_id)}", f"Run {run['id']} queued.")


@router.post("/{job_id}/dry-run")
async def dry_run(console: Session, job_id: str) -> Response:
    """Renders what a run would send; sends and records nothing (a POST, as in the API, since
    it runs the job's rules)."""
    console.require("jobs:write")
    await Form.of(console)
    async with console.runtime.db.read() as conn:
        job = await service.job_for_dry_run(conn, console.tenant, job_id)
    preview = await service.dry_run(console.runtime.job_runner, job, utcnow())
    return console.render("dry_run.html", job_id=job_id, preview=preview)
