"""The resources the app builds in its lifespan, reachable from every request."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from event_collector.auth.service import TokenService
from event_collector.events.writer import EventWriter
from event_collector.jobs.runner import JobRunner, NoRulesRunner
from event_collector.kit.crypto import SecretBox
from event_collector.kit.db import Database
from event_collector.kit.settings import Settings

if TYPE_CHECKING:
    from event_collector.delivery.dispatcher import Dispatcher
    from event_collector.jobs.scheduler import Scheduler


@dataclass
class AppContext:
    settings: Settings
    db: Database
    tokens: TokenService
    writer: EventWriter
    secrets: SecretBox
    # The delivery dispatcher running in this process (None when EC_DISPATCHER_ENABLED=false).
    dispatcher: Dispatcher | None = None
    # What job runs execute (the scheduler's, the run endpoint's); the job scheduler running in
    # this process (None when EC_SCHEDULER_ENABLED=false).
    job_runner: JobRunner = field(default_factory=NoRulesRunner)
    scheduler: Scheduler | None = None
    extras: dict[str, Any] = field(default_factory=dict)


def get_context(request: Request) -> AppContext:
    context: AppContext = request.app.state.context
    return context
