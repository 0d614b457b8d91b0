"""`event-collector jobs list|run`, in process, on both databases."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from typer.testing import CliRunner

from event_collector.cli import app
from event_collector.jobs import service
from event_collector.jobs.schemas import JobIn
from event_collector.kit.db import Database, utcnow
from tests.conftest import make_settings

runner = CliRunner()


def _invoke(env: dict[str, str], *args: str, exit_code: int = 0) -> str:
    result = runner.invoke(app, list(args), env=env)
    assert result.exit_code == exit_code, result.output
    return result.output


def _create_job(database_url: str, key_dir: Path, job_id: str) -> None:
    async def create() -> None:
        db = Database.from_settings(make_settings(database_url, key_dir))
        try:
            async with db.write() as conn:
                body = JobIn(
                    id=job_id, notification="PRICE_DROP", template_id="d", schedule="0 9 * * *"
                )
                await service.create_job(conn, "acme", body, utcnow())
        finally:
            await db.dispose()

    asyncio.run(create())


def test_jobs_list_and_run(empty_database_url: str, tmp_path: Path) -> None:
    env = {"EC_DATABASE_URL": empty_database_url, "EC_KEY_DIR": str(tmp_path / "keys")}
    _invoke(env, "migrate")
    _create_job(empty_database_url, tmp_path / "keys", "daily-drop")

    (listed,) = json.loads(_invoke(env, "jobs", "list", "--json"))
    assert listed["tenant"] == "acme"
    assert listed["id"] == "daily-drop"
    assert listed["schedule_description"] == "At 09:00 every day"
    assert listed["last_run"] is None
    assert json.loads(_invoke(env, "jobs", "list", "--tenant", "other", "--json")) == []
    assert "daily-drop" in _invoke(env, "jobs", "list")

    output = _invoke(env, "jobs", "run", "acme", "daily-drop")
    assert "succeeded" in output
    (listed,) = json.loads(_invoke(env, "jobs", "list", "--json"))
    assert listed["last_run"]["status"] == "succeeded"
    assert listed["last_run"]["trigger"] == "manual"
    # The notification rules ran over a tenant with no wishlists: every count is zero.
    counts = listed["last_run"]["counts"]
    assert {"considered", "sent", "errors"} <= counts.keys()
    assert set(counts.values()) == {0}

    assert "no job" in _invoke(env, "jobs", "run", "acme", "nope", exit_code=1)
    failing = {**env, "EC_JOBS_RUNNER": "tests.jobs.process_plugins:failing_runner"}
    output = _invoke(failing, "jobs", "run", "acme", "daily-drop", exit_code=1)
    assert "failed" in output
    assert "the template is gone" in output
    broken = {**env, "EC_JOBS_RUNNER": "tests.jobs.nowhere:runner"}
    assert "EC_JOBS_RUNNER" in _invoke(broken, "jobs", "run", "acme", "daily-drop", exit_code=1)
