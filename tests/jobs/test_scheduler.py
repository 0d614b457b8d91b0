"""The scheduler in process with an injectable clock, on both databases (a fresh database per
test, so no other test's jobs fall due): DST days, coalescing or skipping after downtime, a
changed schedule taking effect at once, failures recorded, takeover of a dead owner's run."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import pytest_asyncio
from prometheus_client import REGISTRY
from sqlalchemy import select

from event_collector.app import create_app
from event_collector.jobs import service
from event_collector.jobs.repository import JobRepository
from event_collector.jobs.runner import NoRulesRunner, RunOutcome, RunRequest
from event_collector.jobs.scheduler import Scheduler
from event_collector.jobs.schemas import JobIn, JobUpdate
from event_collector.kit import leases, migrate
from event_collector.kit.db import Database, utcnow
from event_collector.kit.settings import Settings
from event_collector.models import job_run_table, job_table
from event_collector.runtime import Runtime
from tests.conftest import make_settings, make_tenant, wait_until

TENANT = "acme"


class ManualClock:
    """Time stands still until the test moves it."""

    def __init__(self, now: datetime) -> None:
        self.current = now

    def now(self) -> datetime:
        return self.current

    def seconds_until(self, instant: datetime) -> float:
        return (instant - self.current).total_seconds()

    def set(self, instant: datetime) -> None:
        self.current = instant


class RecordingRunner:
    def __init__(self, fail_with: Exception | None = None) -> None:
        self.requests: list[RunRequest] = []
        self.fail_with = fail_with

    async def __call__(self, request: RunRequest) -> RunOutcome:
        self.requests.append(request)
        if self.fail_with is not None:
            raise self.fail_with
        return RunOutcome(counts={"considered": 3, "sent": 2, "errors": 0, "skipped_cooldown": 1})


@pytest.fixture
def job_settings(empty_database_url: str, tmp_path: Path) -> Settings:
    return make_settings(empty_database_url, tmp_path / "keys", scheduler_lease_seconds=30)


@pytest_asyncio.fixture
async def db(job_settings: Settings) -> AsyncIterator[Database]:
    database = Database.from_settings(job_settings)
    await migrate.upgrade(database)
    yield database
    await database.dispose()


async def _create_job(db: Database, now: datetime, **fields: Any) -> dict[str, Any]:
    body = JobIn(notification="REMINDER", template_id="d-1", **fields)
    async with db.write() as conn:
        return await service.create_job(conn, TENANT, body, now)


async def _runs(db: Database, job_id: str | None = None) -> list[dict[str, Any]]:
    statement = select(job_run_table).order_by(job_run_table.c.seq)
    if job_id is not None:
        statement = statement.where(job_run_table.c.job_id == job_id)
    async with db.read() as conn:
        return [dict(row._mapping) for row in await conn.execute(statement)]


async def _next_run_at(db: Database, job_id: str) -> datetime | None:
    async with db.read() as conn:
        value: datetime | None = await conn.scalar(
            select(job_table.c.next_run_at).where(job_table.c.id == job_id)
        )
        return value


def _metric_samples() -> dict[str, float]:
    def sample(name: str, labels: dict[str, str] | None = None) -> float:
        return REGISTRY.get_sample_value(name, labels or {}) or 0.0

    return {
        "coalesced": sample("ec_job_occurrences_total", {"action": "coalesced"}),
        "fired": sample("ec_job_occurrences_total", {"action": "fired"}),
        "succeeded": sample(
            "ec_job_runs_total", {"notification": "REMINDER", "outcome": "succeeded"}
        ),
        "lag_count": sample("ec_job_scheduler_lag_seconds_count"),
        "lag_sum": sample("ec_job_scheduler_lag_seconds_sum"),
    }


async def _step_through(
    scheduler: Scheduler, clock: ManualClock, start: datetime, end: datetime, step: timedelta
) -> None:
    instant = start
    while instant <= end:
        clock.set(instant)
        await scheduler.run_once()
        await scheduler.wait_for_runs()
        instant += step


@pytest.mark.parametrize(
    ("zone", "day", "schedule", "expected"),
    [
        ("America/New_York", date(2026, 11, 1), "30 1 * * *", 1),
        ("America/New_York", date(2026, 3, 8), "30 1 * * *", 1),
        ("America/New_York", date(2026, 3, 8), "30 2 * * *", 1),
        ("Australia/Sydney", date(2026, 4, 5), "30 1 * * *", 1),
        ("Australia/Sydney", date(2026, 10, 4), "30 1 * * *", 1),
        ("America/New_York", date(2026, 11, 1), "0 * * * *", 25),
        ("America/New_York", date(2026, 3, 8), "0 * * * *", 23),
        ("Australia/Sydney", date(2026, 4, 5), "0 * * * *", 25),
        ("Australia/Sydney", date(2026, 10, 4), "0 * * * *", 23),
    ],
)
async def test_dst_days(
    db: Database, job_settings: Settings, zone: str, day: date, schedule: str, expected: int
) -> None:
    tz = ZoneInfo(zone)
    start = datetime.combine(day, datetime.min.time(), tz).astimezone(UTC)
    end = datetime.combine(day + timedelta(days=1), datetime.min.time(), tz).astimezone(UTC)
    clock = ManualClock(start - timedelta(minutes=1))
    job = await _create_job(db, clock.now(), schedule=schedule, timezone=zone)
    runner = RecordingRunner()
    scheduler = Scheduler(job_settings, db, runner, clock=clock)
    await _step_through(scheduler, clock, start, end - timedelta(seconds=1), timedelta(minutes=20))
    runs = await _runs(db, job["id"])
    assert len(runs) == expected
    assert len(runner.requests) == expected
    assert all(run["status"] == "succeeded" and run["attempts"] == 1 for run in runs)
    assert all(run["trigger"] == "schedule" for run in runs)
    occurrences = [run["scheduled_for"] for run in runs]
    assert len(set(occurrences)) == expected
    if expected == 1:
        local = occurrences[0].astimezone(tz)
        assert local.date() == day
        assert (local.hour, local.minute) in ((1, 30), (3, 0))  # 02:30 skipped → 03:00


async def test_missed_occurrences_coalesce_into_one_run(
    db: Database, job_settings: Settings
) -> None:
    start = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    clock = ManualClock(start)
    job = await _create_job(db, start, schedule="*/5 * * * *")
    assert await _next_run_at(db, job["id"]) == start + timedelta(minutes=5)
    scheduler = Scheduler(job_settings, db, RecordingRunner(), clock=clock)
    before = _metric_samples()
    # Down for an hour: twelve occurrences missed, one run for the latest of them.
    clock.set(start + timedelta(hours=1, minutes=2))
    await scheduler.run_once()
    await scheduler.wait_for_runs()
    after = _metric_samples()
    assert after["coalesced"] - before["coalesced"] == 11
    assert after["fired"] - before["fired"] == 1
    assert after["succeeded"] - before["succeeded"] == 1
    assert after["lag_count"] - before["lag_count"] == 1
    assert after["lag_sum"] - before["lag_sum"] == 120.0  # started 2 minutes after 13:00
    runs = await _runs(db, job["id"])
    assert [run["scheduled_for"] for run in runs] == [start + timedelta(hours=1)]
    assert runs[0]["status"] == "succeeded"
    assert runs[0]["counts"] == {"considered": 3, "sent": 2, "errors": 0, "skipped_cooldown": 1}
    assert await _next_run_at(db, job["id"]) == start + timedelta(hours=1, minutes=5)
    # Back to normal: the next occurrence fires on its own.
    clock.set(start + timedelta(hours=1, minutes=5))
    await scheduler.run_once()
    await scheduler.wait_for_runs()
    assert len(await _runs(db, job["id"])) == 2


async def test_missed_occurrences_skipped_when_configured(
    db: Database, job_settings: Settings
) -> None:
    settings = job_settings.model_copy(update={"scheduler_missed_runs": "skip"})
    start = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    clock = ManualClock(start)
    job = await _create_job(db, start, schedule="*/5 * * * *")
    scheduler = Scheduler(settings, db, RecordingRunner(), clock=clock)
    clock.set(start + timedelta(hours=1, minutes=2))
    await scheduler.run_once()
    assert await _runs(db, job["id"]) == []
    assert await _next_run_at(db, job["id"]) == start + timedelta(hours=1, minutes=5)
    # An occurrence a few seconds late is not missed.
    clock.set(start + timedelta(hours=1, minutes=5, seconds=3))
    await scheduler.run_once()
    await scheduler.wait_for_runs()
    runs = await _runs(db, job["id"])
    assert [run["scheduled_for"] for run in runs] == [start + timedelta(hours=1, minutes=5)]


async def test_racing_schedulers_make_one_run_per_occurrence(
    db: Database, job_settings: Settings
) -> None:
    start = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    clock = ManualClock(start)
    jobs = [await _create_job(db, start, schedule="* * * * *") for _ in range(5)]
    runner = RecordingRunner()
    schedulers = [Scheduler(job_settings, db, runner, clock=clock) for _ in range(3)]
    for minute in range(1, 4):
        clock.set(start + timedelta(minutes=minute))
        for scheduler in schedulers:
            await scheduler.run_once()
        for scheduler in schedulers:
            await scheduler.wait_for_runs()
    runs = await _runs(db)
    assert len(runs) == 15
    assert {(run["job_id"], run["scheduled_for"]) for run in runs} == {
        (job["id"], start + timedelta(minutes=minute)) for job in jobs for minute in range(1, 4)
    }
    assert sorted(request.run_id or "" for request in runner.requests) == sorted(
        run["id"] for run in runs
    )


async def test_a_raising_run_ends_failed_with_the_error(
    db: Database, job_settings: Settings
) -> None:
    start = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    clock = ManualClock(start)
    job = await _create_job(db, start, schedule="* * * * *")
    scheduler = Scheduler(
        job_settings, db, RecordingRunner(fail_with=RuntimeError("template missing")), clock=clock
    )
    clock.set(start + timedelta(minutes=1))
    await scheduler.run_once()
    await scheduler.wait_for_runs()
    (run,) = await _runs(db, job["id"])
    assert run["status"] == "failed"
    assert run["error"] == "RuntimeError: template missing"
    assert run["finished_at"] == start + timedelta(minutes=1)
    assert run["lease_owner"] is None


async def test_deleted_or_inactive_jobs_never_run(db: Database, job_settings: Settings) -> None:
    start = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    clock = ManualClock(start)
    deleted = await _create_job(db, start, schedule="* * * * *")
    inactive = await _create_job(db, start, schedule="* * * * *", is_active=False)
    queued_then_deleted = await _create_job(db, start, schedule="0 0 1 1 *")
    async with db.write() as conn:
        await service.delete_job(conn, TENANT, deleted["id"], start)
        run = await service.request_run(conn, TENANT, queued_then_deleted["id"], start)
        await service.delete_job(conn, TENANT, queued_then_deleted["id"], start)
    runner = RecordingRunner()
    scheduler = Scheduler(job_settings, db, runner, clock=clock)
    clock.set(start + timedelta(minutes=5))
    await scheduler.run_once()
    await scheduler.wait_for_runs()
    assert await _runs(db, deleted["id"]) == []
    assert await _runs(db, inactive["id"]) == []
    (failed,) = await _runs(db, queued_then_deleted["id"])
    assert failed["id"] == run["id"]
    assert failed["status"] == "failed"
    assert "deleted" in failed["error"]
    assert runner.requests == []


async def test_a_dead_owners_run_is_taken_over_after_its_lease_and_finishes_once(
    db: Database, job_settings: Settings
) -> None:
    start = utcnow()
    job = await _create_job(db, start, schedule="0 0 1 1 *")
    async with db.write() as conn:
        run = await service.request_run(conn, TENANT, job["id"], start)
        repository = JobRepository(conn)
        claimed = await repository.claim_runs_of_all_tenants(
            owner="dead", now=start, until=start + timedelta(seconds=1), limit=10
        )
        assert [row["id"] for row in claimed] == [run["id"]]
        assert await repository.mark_started(run["id"], owner="dead", now=start)
    runner = RecordingRunner()
    scheduler = Scheduler(job_settings, db, runner)
    await scheduler.start()
    try:

        async def finished() -> bool:
            (row,) = await _runs(db, job["id"])
            return bool(row["status"] == "succeeded")

        await wait_until(finished, "the run to be taken over and finish", within=15)
    finally:
        await scheduler.stop()
    (row,) = await _runs(db, job["id"])
    assert row["attempts"] == 2
    assert len(runner.requests) == 1
    # The dead owner, back from the grave, cannot record a second end.
    async with db.write() as conn:
        assert not await JobRepository(conn).finish(
            run["id"], owner="dead", status="failed", now=utcnow(), counts=None, error="late"
        )
    (row,) = await _runs(db, job["id"])
    assert row["status"] == "succeeded"
    assert row["error"] is None


async def test_a_changed_schedule_wakes_the_scheduler_at_once(job_settings: Settings) -> None:
    app = create_app(job_settings.model_copy(update={"scheduler_enabled": False}))
    async with app.router.lifespan_context(app):
        context: Runtime = app.state.runtime
        clock = ManualClock(utcnow())
        scheduler = Scheduler(job_settings, context.db, NoRulesRunner(), clock=clock)
        context.scheduler = scheduler
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            tenant = await make_tenant(context, client)
            await scheduler.start()
            try:
                created = await client.post(
                    "/api/v1/jobs",
                    json={"notification": "REMINDER", "template_id": "d", "schedule": "0 0 1 1 *"},
                    headers=tenant.headers,
                )
                assert created.status_code == 201
                job_id = created.json()["id"]
                rounds = scheduler.rounds
                notifications = scheduler.waker.notifications
                updated = await client.put(
                    f"/api/v1/jobs/{job_id}",
                    json={"schedule": "* * * * *"},
                    headers=tenant.headers,
                )
                assert updated.status_code == 200
                next_run = datetime.fromisoformat(
                    updated.json()["next_run_at"].replace("Z", "+00:00")
                )
                # The API schedules from the real time (the manual clock is the scheduler's).
                assert next_run - utcnow() <= timedelta(minutes=1)

                # Nothing else would wake it for a minute (idle poll, the yearly occurrence).
                async def woke() -> bool:
                    return scheduler.rounds > rounds

                await wait_until(woke, "the scheduler to be woken by the update", within=5)
                if not context.db.is_sqlite:

                    async def notified() -> bool:
                        return scheduler.waker.notifications > notifications

                    await wait_until(notified, "the NOTIFY of the update's transaction", within=5)
                clock.set(next_run)
                scheduler.wake()

                async def ran() -> bool:
                    runs = await client.get(f"/api/v1/jobs/{job_id}/runs", headers=tenant.headers)
                    items = runs.json()["items"]
                    return bool(items) and items[0]["status"] == "succeeded"

                await wait_until(ran, "the new schedule's first run", within=5)
                runs = (
                    await client.get(f"/api/v1/jobs/{job_id}/runs", headers=tenant.headers)
                ).json()["items"]
                assert [run["scheduled_for"] for run in runs] == [updated.json()["next_run_at"]]
                assert runs[0]["counts"] == {"considered": 0, "sent": 0, "errors": 0}
            finally:
                await scheduler.stop()


async def test_leases_are_renewed_while_a_run_lasts(db: Database, job_settings: Settings) -> None:
    """A run longer than its lease keeps it (the keeper renews), so nobody takes it over."""
    settings = job_settings.model_copy(update={"scheduler_lease_seconds": 0.6})
    release = asyncio.Event()

    async def slow(request: RunRequest) -> RunOutcome:
        await release.wait()
        return RunOutcome(counts={"considered": 0})

    job = await _create_job(db, utcnow(), schedule="0 0 1 1 *")
    async with db.write() as conn:
        await service.request_run(conn, TENANT, job["id"], utcnow())
    holder = Scheduler(settings, db, slow)
    rival = Scheduler(settings, db, RecordingRunner())
    await holder.start()
    try:

        async def running() -> bool:
            runs = await _runs(db, job["id"])
            return runs[0]["status"] == "running"

        await wait_until(running, "the run to start", within=10)

        async def renewed_twice() -> bool:
            return holder._keeper.renewals >= 3

        await wait_until(renewed_twice, "the lease to be renewed past its first expiry", within=10)
        await rival.run_once()
        assert rival._running == {}
        release.set()
        await holder.wait_for_runs()
    finally:
        await holder.stop()
    (run,) = await _runs(db, job["id"])
    assert run["status"] == "succeeded"
    assert run["attempts"] == 1


async def test_claims_skip_runs_held_by_a_live_lease(db: Database) -> None:
    now = utcnow()
    job = await _create_job(db, now, schedule="0 0 1 1 *")
    async with db.write() as conn:
        await service.request_run(conn, TENANT, job["id"], now)
        mine = await JobRepository(conn).claim_runs_of_all_tenants(
            owner="a", now=now, until=now + timedelta(minutes=1), limit=5
        )
        theirs = await JobRepository(conn).claim_runs_of_all_tenants(
            owner="b", now=now, until=now + timedelta(minutes=1), limit=5
        )
    assert len(mine) == 1
    assert theirs == []
    assert leases.new_owner() != leases.new_owner()


async def test_update_keeps_a_due_occurrence_unless_timing_changes(
    db: Database, job_settings: Settings
) -> None:
    start = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    job = await _create_job(db, start, schedule="*/5 * * * *")
    later = start + timedelta(minutes=7)
    async with db.write() as conn:
        await service.update_job(
            conn, TENANT, job["id"], JobUpdate(job_parameters={"utm_medium": "x"}), later
        )
    assert await _next_run_at(db, job["id"]) == start + timedelta(minutes=5)  # still due
    async with db.write() as conn:
        await service.update_job(conn, TENANT, job["id"], JobUpdate(schedule="0 * * * *"), later)
    assert await _next_run_at(db, job["id"]) == start + timedelta(hours=1)


async def test_the_scheduler_inside_serve_executes_a_requested_run(job_settings: Settings) -> None:
    app = create_app(job_settings.model_copy(update={"scheduler_enabled": True}))
    async with app.router.lifespan_context(app):
        context: Runtime = app.state.runtime
        assert context.scheduler is not None
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            tenant = await make_tenant(context, client)
            created = await client.post(
                "/api/v1/jobs",
                json={"notification": "LOW_STOCK", "template_id": "d", "schedule": "0 0 1 1 *"},
                headers=tenant.headers,
            )
            job_id = created.json()["id"]
            accepted = await client.post(f"/api/v1/jobs/{job_id}/run", headers=tenant.headers)
            assert accepted.status_code == 202
            run_url = f"/api/v1/jobs/{job_id}/runs/{accepted.json()['run_id']}"

            async def succeeded() -> bool:
                run = await client.get(run_url, headers=tenant.headers)
                return bool(run.json()["status"] == "succeeded")

            # Woken by the request: well before its idle poll (60 s).
            await wait_until(succeeded, "the requested run to be executed", within=10)
            run = (await client.get(run_url, headers=tenant.headers)).json()
            assert run["trigger"] == "manual"
            assert run["started_at"] is not None
            assert run["finished_at"] is not None


async def test_a_job_runs_once_at_a_time(db: Database, job_settings: Settings) -> None:
    release = asyncio.Event()
    executed: list[str] = []

    async def held(request: RunRequest) -> RunOutcome:
        executed.append(request.run_id or "")
        await release.wait()
        return RunOutcome(counts={"considered": 0})

    now = utcnow()
    job = await _create_job(db, now, schedule="0 0 1 1 *")
    async with db.write() as conn:
        first = await service.request_run(conn, TENANT, job["id"], now)
        second = await service.request_run(conn, TENANT, job["id"], now)
    scheduler = Scheduler(job_settings, db, held)
    rival = Scheduler(job_settings, db, RecordingRunner())
    await scheduler.run_once()
    await rival.run_once()
    statuses = {run["id"]: run["status"] for run in await _runs(db, job["id"])}
    assert statuses == {first["id"]: "running", second["id"]: "queued"}
    # Waiting for its sibling, the queued run is nobody's to poll for.
    assert await rival._seconds_until_next_work() > 10
    release.set()
    await scheduler.wait_for_runs()
    await scheduler.run_once()
    await scheduler.wait_for_runs()
    runs = await _runs(db, job["id"])
    assert [run["status"] for run in runs] == ["succeeded", "succeeded"]
    assert executed == [first["id"], second["id"]]
    assert runs[1]["started_at"] >= runs[0]["finished_at"]
