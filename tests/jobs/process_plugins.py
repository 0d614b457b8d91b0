"""What `event-collector scheduler` subprocesses of the tests load through EC_JOBS_RUNNER and
EC_SCHEDULER_CLOCK: a clock running faster than real time, and a runner that records each run
(and, when asked, holds it until the test releases it). Configured by EC_TEST_* variables."""

from __future__ import annotations

import asyncio
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from event_collector.jobs.runner import JobRunner, RunOutcome, RunRequest
from event_collector.kit.db import Database
from event_collector.kit.settings import Settings


class FastClock:
    """Real time from ORIGIN on, SCALE times faster; every process agrees (same origin)."""

    def __init__(self, origin: float, scale: float) -> None:
        self.origin = origin
        self.scale = scale

    def now(self) -> datetime:
        return datetime.fromtimestamp(
            self.origin + (time.time() - self.origin) * self.scale, tz=UTC
        )

    def seconds_until(self, instant: datetime) -> float:
        return (instant - self.now()) / timedelta(seconds=1) / self.scale


def fast_clock() -> FastClock:
    return FastClock(
        float(os.environ["EC_TEST_CLOCK_ORIGIN"]), float(os.environ["EC_TEST_CLOCK_SCALE"])
    )


def recording_runner(settings: Settings, db: Database) -> JobRunner:
    directory = Path(os.environ["EC_TEST_RUNNER_DIR"])
    hold = os.environ.get("EC_TEST_RUNNER_HOLD") == "1"

    async def run(request: RunRequest) -> RunOutcome:
        _append(directory / "started.log", f"{request.run_id} {os.getpid()}")
        # The test releases held runs from another process, by creating a file.
        while hold and not (directory / "release").exists():  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        _append(directory / "finished.log", f"{request.run_id} {os.getpid()}")
        return RunOutcome(counts={"considered": 1, "sent": 0, "errors": 0})

    return run


def _append(path: Path, line: str) -> None:
    # One write of a short line to a file opened for appending: whole, whatever the writers.
    with path.open("a") as file:
        file.write(line + "\n")


def failing_runner(settings: Settings, db: Database) -> JobRunner:
    async def run(request: RunRequest) -> RunOutcome:
        raise RuntimeError("the template is gone")

    return run
