"""The scheduler's clock: what time it is, and how long to sleep until a given time.

Production uses :class:`SystemClock`; tests inject their own (a manual clock, or one running
faster than real time, selected for a subprocess by ``EC_SCHEDULER_CLOCK``).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Protocol

from event_collector.jobs.runner import load_object
from event_collector.kit.db import utcnow
from event_collector.kit.settings import Settings


class Clock(Protocol):
    def now(self) -> datetime: ...

    def seconds_until(self, instant: datetime) -> float:
        """Real seconds to wait until ``now()`` reaches ``instant`` (<= 0: it has)."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return utcnow()

    def seconds_until(self, instant: datetime) -> float:
        return (instant - utcnow()).total_seconds()


def load_clock(settings: Settings) -> Clock:
    if not settings.scheduler_clock:
        return SystemClock()
    factory: Callable[[], Clock] = load_object(settings.scheduler_clock, "EC_SCHEDULER_CLOCK")
    return factory()
