"""The job scheduler: fires each due occurrence once, and executes runs under a lease.

Any number of schedulers (inside ``serve``, or ``event-collector scheduler``) share one
database. Each round:

1. **Fire.** Jobs whose ``next_run_at`` is due are locked (``SKIP LOCKED`` on PostgreSQL:
   schedulers take disjoint jobs). For each, the latest due occurrence gets a ``job_run`` row,
   inserted unless one exists for that (job, scheduled_for): however many schedulers race, one
   run per occurrence. Earlier occurrences missed while no scheduler ran are folded into that
   run (``EC_SCHEDULER_MISSED_RUNS=coalesce``, the default: each run evaluates the current state,
   so one late run covers them, and customers never get N emails for N missed ones); with
   ``skip`` an occurrence more than :data:`MISSED_AFTER` late is not run at all. The job's
   ``next_run_at`` moves to its next occurrence in the same transaction.
2. **Execute.** Unfinished runs nobody holds (queued ones, and running ones whose lease
   expired because their process died) are leased, marked running, and handed to the
   :class:`~event_collector.jobs.runner.JobRunner`, each in its own task (a long run delays no
   other job). A :class:`~event_collector.kit.leases.LeaseKeeper` renews the leases while they
   run. The end is recorded only while this scheduler still holds the lease, so a run finishes
   once; a runner that raises ends the run ``failed`` with the error.
3. **Sleep** until the next occurrence or lease expiry (:class:`~event_collector.kit.waker.Waker`),
   or until woken: in process by the API after a job write, across processes by the NOTIFY the
   API sends in the write transaction.

Occurrence times come from the injectable :class:`~event_collector.jobs.clock.Clock`; leases are
wall-clock times shared by every process.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from datetime import datetime, timedelta
from typing import Any

from event_collector.jobs import metrics, service
from event_collector.jobs.clock import Clock, SystemClock
from event_collector.jobs.repository import LEASED_RUNS, JobRepository
from event_collector.jobs.runner import JobRunner, ProgressCallback, RunRequest, no_progress
from event_collector.jobs.schedule import Schedule, ScheduleError
from event_collector.jobs.service import JOBS_CHANNEL, can_run_on_schedule, job_schedule, new_run
from event_collector.kit import leases
from event_collector.kit.backoff import OutageBackoff
from event_collector.kit.db import Database, utcnow
from event_collector.kit.errors import DatabaseUnavailable
from event_collector.kit.settings import Settings
from event_collector.kit.waker import Waker

logger = logging.getLogger(__name__)

MISSED_AFTER = timedelta(minutes=1)
"""With EC_SCHEDULER_MISSED_RUNS=skip: an occurrence this late was missed, and is not run."""
FIRE_BATCH = 100
MAX_CONCURRENT_RUNS = 8
ERROR_TEXT_LIMIT = 2000
RETRY_AFTER_ERROR_SECONDS = 1.0
LEASE_POLL_FLOOR = 0.1


class Scheduler:
    def __init__(
        self,
        settings: Settings,
        db: Database,
        runner: JobRunner,
        *,
        clock: Clock | None = None,
        owner: str | None = None,
    ) -> None:
        self.settings = settings
        self.db = db
        self.runner = runner
        self.clock = clock or SystemClock()
        self.owner = owner or leases.new_owner()
        self.waker = Waker(db, JOBS_CHANNEL)
        self._keeper = leases.LeaseKeeper(
            db,
            LEASED_RUNS,
            owner=self.owner,
            lease_seconds=settings.scheduler_lease_seconds,
            still=LEASED_RUNS.table.c.status == "running",
        )
        self._running: dict[str, asyncio.Task[None]] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._outage = OutageBackoff("job scheduling", logger)
        self.rounds = 0  # completed rounds (observability, tests)

    def wake(self) -> None:
        self.waker.wake()

    async def start(self) -> None:
        self._stopping = False
        await self.waker.start()
        await self._keeper.start()
        self._loop_task = asyncio.create_task(self._loop(), name="job-scheduler")
        logger.info("job scheduler %s started", self.owner)

    async def stop(self) -> None:
        """Stop firing; runs in progress are cancelled and their leases given back, so another
        scheduler takes them over at once."""
        self._stopping = True
        self.waker.wake()
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None
        held, tasks = list(self._running), list(self._running.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if held:
            with contextlib.suppress(Exception):
                async with self.db.write() as conn:
                    await leases.release(conn, LEASED_RUNS, owner=self.owner, ids=held)
        await self._keeper.stop()
        await self.waker.stop()
        logger.info("job scheduler %s stopped", self.owner)

    async def _loop(self) -> None:
        while not self._stopping:
            try:
                await self.run_once()
                timeout = await self._seconds_until_next_work()
                self._outage.succeeded()
            except asyncio.CancelledError:
                raise
            except DatabaseUnavailable:
                timeout = self._outage.failed()
            except Exception:
                logger.exception("job scheduler round failed; retrying shortly")
                timeout = RETRY_AFTER_ERROR_SECONDS
            await self.waker.wait(timeout)

    async def run_once(self) -> None:
        """One round: fire what is due, start what can be started."""
        while await self.fire_due() >= FIRE_BATCH:
            pass
        await self.start_claimable_runs()
        self.rounds += 1

    async def wait_for_runs(self) -> None:
        """Until the runs this scheduler started have ended (for tests driving `run_once`)."""
        while self._running:
            await asyncio.gather(*self._running.values(), return_exceptions=True)

    # 1. fire ----------------------------------------------------------------------------------

    async def fire_due(self) -> int:
        """Create the run of each due occurrence; how many jobs were due."""
        now = self.clock.now()
        async with self.db.write() as conn:
            repository = JobRepository(conn)
            due = await repository.due_jobs_of_all_tenants(now, FIRE_BATCH)
            for job in due:
                await self._fire(repository, job, now)
        return len(due)

    async def _fire(self, repository: JobRepository, job: dict[str, Any], now: datetime) -> None:
        due_at: datetime = job["next_run_at"]
        try:
            schedule = job_schedule(job) if can_run_on_schedule(job) else None
        except ScheduleError as exc:
            logger.error("job %s has an unusable schedule (%s); not scheduling it", job["id"], exc)
            schedule = None
        if schedule is None:
            await repository.advance_job(job["seq"], due_at, None)
            return
        latest = schedule.latest_at_or_before(now) or due_at
        latest = max(latest, due_at)
        following = schedule.next_after(now)
        folded = _occurrences_between(schedule, due_at, latest)
        if self.settings.scheduler_missed_runs == "skip" and now - latest > MISSED_AFTER:
            metrics.occurrences.labels("skipped").inc(folded + 1)
            logger.warning(
                "job %s of tenant %s: skipped the occurrence(s) due %s to %s (missed)",
                job["id"],
                job["tenant"],
                due_at.isoformat(),
                latest.isoformat(),
            )
        else:
            run = new_run(
                job["tenant"], job["id"], trigger="schedule", scheduled_for=latest, now=now
            )
            if await repository.insert_occurrence_run(run):
                metrics.occurrences.labels("fired").inc()
                if folded:
                    metrics.occurrences.labels("coalesced").inc(folded)
                    logger.info(
                        "job %s of tenant %s: %d missed occurrence(s) coalesced into the run "
                        "for %s",
                        job["id"],
                        job["tenant"],
                        folded,
                        latest.isoformat(),
                    )
        await repository.advance_job(job["seq"], due_at, following)

    # 2. execute -------------------------------------------------------------------------------

    async def start_claimable_runs(self) -> None:
        capacity = MAX_CONCURRENT_RUNS - len(self._running)
        if capacity <= 0:
            return
        now = utcnow()
        until = now + timedelta(seconds=self.settings.scheduler_lease_seconds)
        async with self.db.write() as conn:
            repository = JobRepository(conn)
            claimed = await repository.claim_runs_of_all_tenants(
                owner=self.owner, now=now, until=until, limit=capacity
            )
            # One run of a job at a time: the others of the same job wait for the next round.
            claimed, waiting = _first_run_of_each_job(claimed)
            await leases.release(conn, LEASED_RUNS, owner=self.owner, ids=waiting)
            for run in claimed:
                await repository.mark_started(run["id"], owner=self.owner, now=self.clock.now())
        for run in claimed:
            self._keeper.hold([run["id"]])
            task = asyncio.create_task(self._execute(run), name=f"job-run-{run['id']}")
            self._running[run["id"]] = task
            task.add_done_callback(functools.partial(self._finished, run["id"]))

    def _finished(self, run_id: str, _task: asyncio.Task[None]) -> None:
        self._running.pop(run_id, None)
        self._keeper.drop([run_id])
        if not self._stopping:
            self.waker.wake()  # a slot is free: claim what waits

    async def run_now(self, tenant: str, job_id: str, progress: ProgressCallback) -> dict[str, Any]:
        """Run a job in this process, now (`event-collector jobs run`): a manual run, leased
        from the moment it is recorded, so no other scheduler takes it. Returns the ended run."""
        now = utcnow()
        async with self.db.write() as conn:
            run = await service.request_run(conn, tenant, job_id, self.clock.now())
            repository = JobRepository(conn)
            (claimed,) = await repository.claim_runs_of_all_tenants(
                owner=self.owner,
                now=now,
                until=now + timedelta(seconds=self.settings.scheduler_lease_seconds),
                limit=1,
                run_id=run["id"],
            )
            await repository.mark_started(run["id"], owner=self.owner, now=self.clock.now())
        self._keeper.hold([run["id"]])
        await self._keeper.start()
        try:
            await self._execute_run(claimed, progress)
        finally:
            self._keeper.drop([run["id"]])
            await self._keeper.stop()
        async with self.db.read() as conn:
            ended = await JobRepository(conn).get_run(tenant, job_id, run["id"])
        assert ended is not None
        return ended

    async def _execute(self, run: dict[str, Any]) -> None:
        try:
            await self._execute_run(run)
        except asyncio.CancelledError:
            raise  # stopping: the lease is given back and another scheduler takes the run over
        except Exception:
            # The database failed us: the lease expires and the run is taken over.
            logger.exception("job run %s could not be executed or recorded", run["id"])

    async def _execute_run(
        self, run: dict[str, Any], progress: ProgressCallback = no_progress
    ) -> None:
        started = time.monotonic()
        async with self.db.read() as conn:
            job = await JobRepository(conn).get_job(run["tenant"], run["job_id"])
        notification = job["notification"] if job else "unknown"
        if run["trigger"] == "schedule" and run["attempts"] == 0:
            metrics.scheduler_lag.observe(
                max((self.clock.now() - run["scheduled_for"]).total_seconds(), 0.0)
            )
        status, counts, error = "failed", None, None
        if job is None or job["deleted"]:
            error = "the job was deleted before the run started"
        elif run["trigger"] == "schedule" and not can_run_on_schedule(job):
            error = "the job was deactivated or unscheduled before the run started"
        else:
            try:
                outcome = await self.runner(
                    RunRequest(
                        tenant=run["tenant"],
                        job=job,
                        run_id=run["id"],
                        dry_run=False,
                        now=self.clock.now(),
                        progress=progress,
                    )
                )
                status, counts = "succeeded", outcome.counts
            except Exception as exc:
                logger.exception("job run %s of job %s failed", run["id"], run["job_id"])
                error = f"{type(exc).__name__}: {exc}"[:ERROR_TEXT_LIMIT]
        async with self.db.write() as conn:
            recorded = await JobRepository(conn).finish(
                run["id"],
                owner=self.owner,
                status=status,
                now=self.clock.now(),
                counts=counts,
                error=error,
            )
        if not recorded:
            logger.warning(
                "job run %s: lost its lease before it finished; another scheduler took it over",
                run["id"],
            )
            return
        metrics.runs.labels(notification, status).inc()
        metrics.run_duration.labels(notification).observe(time.monotonic() - started)

    # 3. sleep ---------------------------------------------------------------------------------

    async def _seconds_until_next_work(self) -> float:
        async with self.db.read() as conn:
            repository = JobRepository(conn)
            next_occurrence = await repository.earliest_next_run_of_all_tenants()
            lease_expiry = await repository.earliest_lease_expiry_of_all_tenants(
                other_than=self.owner, now=utcnow()
            )
        waits = [self.settings.scheduler_idle_poll_seconds]
        if next_occurrence is not None:
            waits.append(self.clock.seconds_until(next_occurrence))
        if lease_expiry is not None and len(self._running) < MAX_CONCURRENT_RUNS:
            # Not below a floor: a lease that just expired may be being taken by another.
            waits.append(max((lease_expiry - utcnow()).total_seconds(), LEASE_POLL_FLOOR))
        return max(min(waits), 0.0)


def _occurrences_between(schedule: Schedule, first: datetime, latest: datetime) -> int:
    """How many occurrences from ``first`` up to (not including) ``latest``, counted up to a
    bound: the missed ones a run stands for (only metrics and logs read it)."""
    count, instant = 0, first
    while instant < latest and count < 10_000:
        count += 1
        following = schedule.next_after(instant)
        if following is None:
            break
        instant = following
    return count


def _first_run_of_each_job(
    runs: list[dict[str, Any]],
) -> tuple[list[dict[str, Any]], list[str]]:
    """(the first run of each job, oldest first, and the ids of the others)."""
    first: dict[tuple[str, str], dict[str, Any]] = {}
    others: list[str] = []
    for run in sorted(runs, key=lambda run: run["seq"]):  # RETURNING keeps no order
        key = (run["tenant"], run["job_id"])
        if key in first:
            others.append(run["id"])
        else:
            first[key] = run
    return list(first.values()), others
