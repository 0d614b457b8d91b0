"""Real `event-collector scheduler` processes on one PostgreSQL database (a fresh one, so no
other scheduler of the test session takes part).

Jobs fire every minute; the scheduler processes run a clock 6 times faster than real time
(EC_SCHEDULER_CLOCK, tests/jobs/process_plugins.py), so an occurrence falls every 10 s. Leases
stay in wall-clock time, shared by every process. The runner (EC_JOBS_RUNNER) records each run
it executes in files, and can hold a run until the test releases it.
"""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import select

from event_collector.app import create_app
from event_collector.models import job_run_table
from event_collector.runtime import Runtime
from tests.conftest import TenantFixture, make_settings, make_tenant, wait_until

ROOT = Path(__file__).resolve().parents[2]
SCALE = 6


@pytest.fixture(autouse=True)
def _postgres_only(backend: str) -> None:
    if backend != "postgres":
        pytest.skip("several scheduler processes share a PostgreSQL database")


@pytest_asyncio.fixture
async def fresh_app(
    empty_database_url: str, tmp_path: Path
) -> AsyncIterator[tuple[Runtime, httpx.AsyncClient, TenantFixture]]:
    app = create_app(make_settings(empty_database_url, tmp_path / "keys"))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            context: Runtime = app.state.runtime
            yield context, client, await make_tenant(context, client)


class SchedulerProcesses:
    def __init__(self, context: Runtime, directory: Path, **env: str) -> None:
        self.directory = directory
        self.base_env = {k: v for k, v in os.environ.items() if not k.startswith("EC_")}
        self.base_env.update(
            EC_DATABASE_URL=context.settings.database_url,
            EC_KEY_DIR=str(context.settings.key_dir),
            EC_AUTO_MIGRATE="false",
            EC_JOBS_RUNNER="tests.jobs.process_plugins:recording_runner",
            EC_TEST_RUNNER_DIR=str(directory),
            PYTHONPATH=str(ROOT),
            **env,
        )
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, count: int) -> None:
        for _ in range(count):
            log_path = self.directory / f"scheduler-{len(self.processes)}.log"
            # The child writes through its own copy of the descriptor.
            with log_path.open("wb") as log:
                self.processes.append(
                    subprocess.Popen(
                        [sys.executable, "-m", "event_collector", "scheduler"],
                        env=self.base_env,
                        cwd=ROOT,
                        stdout=log,
                        stderr=subprocess.STDOUT,
                    )
                )

    def wait_running(self, within: float = 120) -> None:
        deadline = time.monotonic() + within
        for index, process in enumerate(self.processes):
            log = self.directory / f"scheduler-{index}.log"
            while b"running" not in log.read_bytes():
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, f"scheduler {index} did not start"
                time.sleep(0.05)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)

    def lines(self, name: str) -> list[list[str]]:
        path = self.directory / name
        return [line.split() for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def processes_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "runs"
    directory.mkdir()
    return directory


async def _runs(context: Runtime) -> list[dict[str, Any]]:
    async with context.db.read() as conn:
        result = await conn.execute(select(job_run_table).order_by(job_run_table.c.seq))
        return [dict(row._mapping) for row in result]


async def test_three_schedulers_run_every_occurrence_exactly_once(
    fresh_app: tuple[Runtime, httpx.AsyncClient, TenantFixture], processes_dir: Path
) -> None:
    context, client, tenant = fresh_app
    schedulers = SchedulerProcesses(
        context,
        processes_dir,
        EC_SCHEDULER_CLOCK="tests.jobs.process_plugins:fast_clock",
        EC_TEST_CLOCK_ORIGIN=str(time.time()),
        EC_TEST_CLOCK_SCALE=str(SCALE),
    )
    schedulers.start(3)
    try:
        schedulers.wait_running()
        # Created after the schedulers went to sleep with nothing to do (for up to a minute,
        # EC_SCHEDULER_IDLE_POLL_SECONDS): the API's NOTIFY wakes every one of them.
        job_ids = []
        for _ in range(3):
            created = await client.post(
                "/api/v1/jobs",
                json={"notification": "LOW_STOCK", "template_id": "d", "schedule": "* * * * *"},
                headers=tenant.headers,
            )
            assert created.status_code == 201
            job_ids.append(created.json()["id"])

        async def first_runs() -> bool:
            return {run["job_id"] for run in await _runs(context)} == set(job_ids)

        await wait_until(first_runs, "each new job's first run (picked up at once)", within=40)

        async def three_each() -> bool:
            done = Counter(r["job_id"] for r in await _runs(context) if r["status"] == "succeeded")
            return all(done[job_id] >= 3 for job_id in job_ids)

        await wait_until(three_each, "three finished runs of each job", within=120)
    finally:
        schedulers.stop()

    runs = await _runs(context)
    started = Counter(line[0] for line in schedulers.lines("started.log"))
    finished = Counter(line[0] for line in schedulers.lines("finished.log"))
    assert started, "nothing ran"
    assert set(finished.values()) == {1}, "a run was executed twice"
    for job_id in job_ids:
        occurrences = sorted(r["scheduled_for"] for r in runs if r["job_id"] == job_id)
        # One run per occurrence, every minute of the schedulers' clock, none left out.
        assert len(set(occurrences)) == len(occurrences)
        gaps = {later - earlier for earlier, later in itertools.pairwise(occurrences)}
        assert gaps == {timedelta(minutes=1)}, occurrences
    succeeded = [run for run in runs if run["status"] == "succeeded"]
    assert len(succeeded) >= 9
    for run in succeeded:
        # (A run stopped by the final SIGTERM may have been started again by a scheduler
        # still running; runs that ended were started once.)
        assert started[run["id"]] == 1
        assert finished[run["id"]] == 1
        assert run["attempts"] == 1


async def test_sigkill_of_the_process_holding_a_run_is_taken_over_and_finishes_once(
    fresh_app: tuple[Runtime, httpx.AsyncClient, TenantFixture], processes_dir: Path
) -> None:
    context, client, tenant = fresh_app
    schedulers = SchedulerProcesses(
        context, processes_dir, EC_SCHEDULER_LEASE_SECONDS="2", EC_TEST_RUNNER_HOLD="1"
    )
    schedulers.start(2)
    try:
        schedulers.wait_running()
        created = await client.post(
            "/api/v1/jobs",
            json={"notification": "REMINDER", "template_id": "d", "schedule": "0 0 1 1 *"},
            headers=tenant.headers,
        )
        job_id = created.json()["id"]
        accepted = await client.post(f"/api/v1/jobs/{job_id}/run", headers=tenant.headers)
        assert accepted.status_code == 202
        run_id = accepted.json()["run_id"]

        async def held() -> bool:
            return len(schedulers.lines("started.log")) == 1

        await wait_until(held, "a scheduler to start the run", within=20)
        ((_, holder_pid),) = schedulers.lines("started.log")
        doomed = next(p for p in schedulers.processes if str(p.pid) == holder_pid)
        doomed.send_signal(signal.SIGKILL)
        doomed.wait(10)
        (run,) = await _runs(context)
        assert run["status"] == "running"
        assert run["lease_owner"].split(":")[1] == holder_pid

        async def taken_over() -> bool:
            return len(schedulers.lines("started.log")) == 2

        await wait_until(taken_over, "the survivor to take the run over after the lease", within=20)
        (processes_dir / "release").touch()

        async def finished() -> bool:
            (row,) = await _runs(context)
            return bool(row["status"] == "succeeded")

        await wait_until(finished, "the run to finish", within=20)
    finally:
        (processes_dir / "release").touch()
        schedulers.stop()

    starts = schedulers.lines("started.log")
    assert [line[0] for line in starts] == [run_id, run_id]
    assert starts[0][1] != starts[1][1]
    assert schedulers.lines("finished.log") == [[run_id, starts[1][1]]]
    (run,) = await _runs(context)
    assert run["attempts"] == 2
    assert run["finished_at"] is not None
    assert run["lease_owner"] is None
    assert run["counts"] == {"considered": 1, "sent": 0, "errors": 0}
