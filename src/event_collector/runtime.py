"""The runtime: every long-lived part of a process, built once from :class:`Settings`.

``serve`` (the app's lifespan), ``worker`` and the commands to come build one and start it; what
a process runs is chosen by the flags of :meth:`Runtime.build`. The HTTP layer reaches it as
``app.state.runtime`` through the typed dependencies (``kit.deps``, ``auth.dependencies``).

Adding a background component (anything with ``async start()`` / ``async stop()``): build it in
:meth:`Runtime.build`, keep it on an attribute if others need it (to wake it, say), and pass it
to :meth:`Runtime.add` so that :meth:`start` and :meth:`stop` run it. Components start in the
order they were added and stop in the reverse order, before the database closes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, TypeVar

from event_collector.auth.keys import load_signing_keys
from event_collector.auth.service import TokenService
from event_collector.delivery.dispatcher import Dispatcher
from event_collector.delivery.routing import routing_hook
from event_collector.events.writer import EventWriter
from event_collector.jobs.clock import load_clock
from event_collector.jobs.runner import JobRunner, NoRulesRunner, load_runner
from event_collector.jobs.scheduler import Scheduler
from event_collector.kit import migrate
from event_collector.kit.crypto import SecretBox
from event_collector.kit.db import Database
from event_collector.kit.settings import Settings
from event_collector.notifications.runner import create_runner as create_notification_runner
from event_collector.ops.retention import RetentionPolicy, RetentionTask
from event_collector.read_model.apply.hook import apply_events as apply_read_model


class Component(Protocol):
    async def start(self) -> None: ...

    async def stop(self) -> None: ...


C = TypeVar("C", bound=Component)


def build_job_runner(
    settings: Settings, db: Database, wake_delivery: Callable[[], None] | None = None
) -> JobRunner:
    """What job runs execute: the notification rules, unless ``EC_JOBS_RUNNER`` names another
    runner. NOTIFICATION messages a run enqueues wake ``wake_delivery`` (this process's
    dispatcher) at once."""
    return load_runner(settings, db) or create_notification_runner(
        settings, db, wake_delivery=wake_delivery
    )


class Runtime:
    """The database, the secrets and the components built on them, with one start and stop."""

    def __init__(self, settings: Settings, db: Database, secrets: SecretBox) -> None:
        self.settings = settings
        self.db = db
        self.secrets = secrets
        # The delivery dispatcher running in this process (None when it runs elsewhere).
        self.dispatcher: Dispatcher | None = None
        # What job runs execute (the scheduler's, the run endpoint's), and the job scheduler
        # running in this process (None when it runs elsewhere).
        self.job_runner: JobRunner = NoRulesRunner()
        self.scheduler: Scheduler | None = None
        self._tokens: TokenService | None = None
        self._writer: EventWriter | None = None
        self._components: list[Component] = []
        self._started: list[Component] = []

    @classmethod
    def build(
        cls, settings: Settings, *, api: bool, dispatcher: bool, scheduler: bool = False
    ) -> Runtime:
        """``api``: the token service and the event writer the HTTP API needs;
        ``dispatcher``: run the delivery dispatcher in this process; ``scheduler``: the job
        scheduler."""
        runtime = cls(
            settings, Database.from_settings(settings), SecretBox.from_key_dir(settings.key_dir)
        )
        if dispatcher:
            runtime.dispatcher = runtime.add(Dispatcher(settings, runtime.db, runtime.secrets))
            # Retention runs where deliveries are processed (serve, worker), not per API process.
            runtime.add(
                RetentionTask(
                    runtime.db,
                    RetentionPolicy.from_settings(settings),
                    settings.retention_interval_seconds,
                )
            )
        runtime.job_runner = build_job_runner(
            settings, runtime.db, runtime.dispatcher.wake if runtime.dispatcher else None
        )
        if scheduler:
            runtime.scheduler = runtime.add(
                Scheduler(settings, runtime.db, runtime.job_runner, clock=load_clock(settings))
            )
        if api:
            runtime._tokens = TokenService(
                runtime.db, settings, load_signing_keys(settings.key_dir)
            )
            runtime._writer = EventWriter(
                runtime.db,
                max_group_events=settings.ingest_group_max_events,
                max_inflight_groups=settings.inflight_ingest_groups,
            )
            wake = runtime.dispatcher.wake if runtime.dispatcher else None
            runtime._writer.add_hook(routing_hook(wake))
            # The commerce read model commits with the events it learns from.
            runtime._writer.add_hook(apply_read_model)
        return runtime

    def add(self, component: C) -> C:
        """Run ``component`` with the runtime (see the module's docstring)."""
        self._components.append(component)
        return component

    @property
    def tokens(self) -> TokenService:
        if self._tokens is None:
            raise RuntimeError("this runtime was built without the API (api=False)")
        return self._tokens

    @property
    def writer(self) -> EventWriter:
        if self._writer is None:
            raise RuntimeError("this runtime was built without the API (api=False)")
        return self._writer

    async def start(self) -> None:
        """Migrate the schema when configured to, then start the components in order."""
        if self.settings.should_auto_migrate:
            await migrate.upgrade(self.db, secrets=self.secrets)
        for component in self._components:
            await component.start()
            self._started.append(component)

    async def stop(self) -> None:
        """Finish the writes in flight, stop the components (last started first), close the
        database. Safe after a failed or partial start."""
        try:
            if self._writer is not None:
                await self._writer.drain()
            while self._started:
                await self._started.pop().stop()
        finally:
            await self.db.dispose()
