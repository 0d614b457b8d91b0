"""The jobs' runner for notification jobs.

Plugged in with ``EC_JOBS_RUNNER=event_collector.notifications.runner:create_runner``.

The jobs capability calls a runner with a run request (tenant, job row, run id, dry run, now);
this one evaluates the job's rule and sends through :func:`service.execute_run`.
"""

from __future__ import annotations

from collections.abc import Callable

from event_collector.delivery.service import enqueue_messages
from event_collector.kit.crypto import SecretBox
from event_collector.kit.db import Database
from event_collector.kit.settings import Settings
from event_collector.notifications.content import Renderer
from event_collector.notifications.service import (
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
    settings: Settings, db: Database, wake_delivery: Callable[[], None] | None = None
) -> NotificationRunner:
    """NOTIFICATION messages go through ``delivery.service.enqueue_messages``; pass the
    process's dispatcher ``wake`` to have them sent at once rather than at its next poll."""
    return NotificationRunner(
        NotifyDeps(
            db=db,
            settings=settings,
            secrets=SecretBox.from_key_dir(settings.key_dir),
            renderer=Renderer(settings.notify_templates_dir),
            enqueue_messages=enqueue_messages,
            wake_delivery=wake_delivery,
        )
    )
