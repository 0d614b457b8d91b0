"""The seam between a job run and the rules that decide what it sends.

The scheduler, ``POST /jobs/{id}/run`` (dry runs included) and ``event-collector jobs run`` all
call one :class:`JobRunner`, taken from the runtime. The notification rules plug in there; until
they do, :class:`NoRulesRunner` evaluates nothing and reports zero counts.

``counts`` keys: ``considered`` (customers), ``sent`` (messages), ``errors``, and one
``skipped_<reason>`` per skip reason.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from event_collector.kit.db import Database
from event_collector.kit.errors import ConfigurationError
from event_collector.kit.settings import Settings

ProgressCallback = Callable[[int, int | None], None]
"""(done, total or None): how far a run got, for progress bars."""


def no_progress(done: int, total: int | None) -> None:
    return None


@dataclass(frozen=True)
class RunRequest:
    tenant: str
    job: dict[str, Any]  # the job row (models.jobs.job_table)
    run_id: str | None  # None for a dry run
    dry_run: bool
    now: datetime
    progress: ProgressCallback = field(default=no_progress, compare=False)


@dataclass
class RunOutcome:
    counts: dict[str, int] = field(default_factory=dict)
    # Dry runs: the messages the run would send, rendered.
    messages: list[dict[str, Any]] = field(default_factory=list)


class JobRunner(Protocol):
    async def __call__(self, request: RunRequest) -> RunOutcome: ...


ZERO_COUNTS = {"considered": 0, "sent": 0, "errors": 0}


class NoRulesRunner:
    """Evaluates nothing (the notification rules are not plugged in)."""

    async def __call__(self, request: RunRequest) -> RunOutcome:
        request.progress(0, 0)
        return RunOutcome(counts=dict(ZERO_COUNTS))


RunnerFactory = Callable[[Settings, Database], JobRunner]


def load_runner(settings: Settings, db: Database) -> JobRunner | None:
    """The runner ``EC_JOBS_RUNNER`` (``module:factory``) names, if it names one."""
    if not settings.jobs_runner:
        return None
    factory: RunnerFactory = load_object(settings.jobs_runner, "EC_JOBS_RUNNER")
    return factory(settings, db)


def load_object(path: str, setting: str) -> Any:
    """The object a ``module:attribute`` path names; a clear error when it cannot be found."""
    module_name, _, attribute = path.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigurationError(
            f"{setting}={path!r} does not name an importable module:attribute ({exc})"
        ) from None
