"""The job scheduler process (`scheduler`) and the `jobs` group (list, run)."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.table import Table

from event_collector.cli.common import (
    JsonOption,
    app,
    cli_settings,
    console,
    print_json,
    require_current_schema,
    run_until_signalled,
    run_with_database,
)
from event_collector.jobs import service
from event_collector.jobs.clock import load_clock
from event_collector.jobs.repository import JobRepository
from event_collector.jobs.scheduler import Scheduler
from event_collector.kit.db import Database
from event_collector.runtime import Runtime, build_job_runner

jobs_app = typer.Typer(help="Inspect and run notification jobs.", no_args_is_help=True)
app.add_typer(jobs_app, name="jobs")


@app.command()
def scheduler() -> None:
    """Run only the job scheduler (scale-out: any number of them on one PostgreSQL)."""
    from event_collector.kit.logging import configure_logging

    settings = cli_settings()
    configure_logging(settings.log_format, settings.log_level)

    def running(runtime: Runtime) -> str:
        assert runtime.scheduler is not None
        return f"job scheduler {runtime.scheduler.owner} running (Ctrl-C to stop)"

    run_until_signalled(
        settings,
        lambda: Runtime.build(settings, api=False, dispatcher=False, scheduler=True),
        running,
    )


@jobs_app.command("list")
def list_jobs(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's jobs.")] = None,
    as_json: JsonOption = False,
) -> None:
    """List jobs (not deleted) with their next occurrence and last run."""

    async def work(db: Database) -> list[dict[str, Any]]:
        async with db.read() as conn:
            repository = JobRepository(conn)
            rows = await repository.all_tenants_jobs(tenant)
            last: dict[tuple[str, str], dict[str, Any]] = {}
            for owner in {row["tenant"] for row in rows}:
                ids = [row["id"] for row in rows if row["tenant"] == owner]
                for job_id, run in (await repository.last_runs(owner, ids)).items():
                    last[owner, job_id] = run
        return [
            {
                "tenant": row["tenant"],
                **service.job_to_api(row, last.get((row["tenant"], row["id"]))),
            }
            for row in rows
        ]

    jobs = run_with_database(cli_settings(), work)
    if as_json:
        print_json(jobs)
        return
    table = Table("tenant", "id", "notification", "active", "schedule", "next run", "last run")
    for job in jobs:
        last = job["last_run"]
        table.add_row(
            job["tenant"],
            job["id"],
            job["notification"],
            "yes" if job["is_active"] and job["is_scheduled"] else "no",
            job["schedule_description"] or "",
            f"{job['next_run_at']}\n{job['next_run_at_local']}" if job["next_run_at"] else "",
            f"{last['status']} {last['finished_at'] or last['created_at']}" if last else "",
        )
    console.print(table)


@jobs_app.command("run")
def run_job(tenant: str, job_id: str) -> None:
    """Run a job now, in this process (a manual run, recorded in its history)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    settings = cli_settings()

    async def work(db: Database) -> dict[str, Any]:
        await require_current_schema(db)  # as the long-running commands: "run migrate"
        job_scheduler = Scheduler(
            settings, db, build_job_runner(settings, db), clock=load_clock(settings)
        )
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
        ) as progress:
            task = progress.add_task(f"running {job_id}", total=None)

            def report(done: int, total: int | None) -> None:
                progress.update(task, completed=done, total=total)

            return await job_scheduler.run_now(tenant, job_id, report)

    run = run_with_database(settings, work)
    counts = ", ".join(f"{key} {value}" for key, value in (run["counts"] or {}).items())
    console.print(f"run {run['id']}: {run['status']}" + (f" ({counts})" if counts else ""))
    if run["status"] != "succeeded":
        console.print(f"[red]error:[/] {run['error']}", highlight=False)
        raise typer.Exit(1)
