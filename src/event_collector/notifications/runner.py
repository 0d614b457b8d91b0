"""The jobs' runner for notification jobs.

Plugged in with ``EC_JOBS_RUNNER=event_collector.notifications.runner:create_runner``.

The jobs capability calls a runner with a run request (tenant, job row, run id, dry run, now);
this one evaluates the job's rule and sends through :func:`service.execute_run`.
"""

from __future__ import annotations

from event_collector.kit.crypto import SecretBox
from event_collector.kit.db import Database
from event_collector.kit.settings import Settings
from event_collector.notifications.content import Renderer
from event_collector.notifications.service import (
    EnqueueMessages,
    NotifyDeps,
    RunOutcome,
    RunRequest,
    execute_run,
)


class NotificationRunner:
    def __init__(self, deps: NotifyDeps) -> None:
        self.deps = deps

    async def __call__(self, request: RunRequest) -> RunOutcome:
        return await execute_run(self.deps, request)


def create_runner(
    settings: Settings, db: Database, enqueue_messages: EnqueueMessages | None = None
) -> NotificationRunner:
    return NotificationRunner(
        NotifyDeps(
            db=db,
            settings=settings,
            secrets=SecretBox.from_key_dir(settings.key_dir),
            renderer=Renderer(settings.notify_templates_dir),
            enqueue_messages=enqueue_messages,
        )
    )
