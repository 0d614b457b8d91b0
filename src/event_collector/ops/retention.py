"""Retention: deleting old deliveries, their attempt logs and events, in bounded batches.

Applied periodically by :class:`RetentionTask` (a runtime component wherever the delivery
dispatcher runs: ``serve`` and each ``worker``) and on demand by ``event-collector purge``.
What is never deleted, whatever the settings:

* a delivery that is not final (``pending``: it is still to be sent), and a dead-lettered one
  unless ``EC_RETENTION_FAILED_DAYS`` is set (it can be replayed);
* an event the read model learns from (its rebuild replays every such event: deleting one would
  change what a rebuild produces). Only events without read-model effect are purged.

Each batch is one short write transaction of at most ``EC_RETENTION_BATCH_SIZE`` rows
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL, so concurrent purgers and the dispatcher never wait
on each other), so ingest is never held up for long. docs/retention.md has the partition path.

This module is the policy and the orchestration only (cutoffs, batches, progress, metrics): the
queries are the owning domains' (``delivery.service``, ``events.service``), and which events the
read model needs is the read model's to say (``read_model.rebuild.events_replayed``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncConnection

from event_collector.delivery import service as delivery_service
from event_collector.events import service as event_service
from event_collector.kit.db import Database, utcnow
from event_collector.kit.settings import Settings
from event_collector.read_model.rebuild import events_replayed

logger = logging.getLogger(__name__)

purged_rows = Counter(
    "ec_retention_purged_rows_total", "Rows deleted by retention, by table", ["table"]
)

# A purge step's report: (what, rows done so far, rows to do in all).
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """Ages in days after which rows go (0: kept forever), and the batch size."""

    delivered_days: float
    failed_days: float
    events_days: float
    batch_size: int

    @classmethod
    def from_settings(cls, settings: Settings) -> RetentionPolicy:
        return cls(
            delivered_days=settings.retention_delivered_days,
            failed_days=settings.retention_failed_days,
            events_days=settings.retention_events_days,
            batch_size=settings.retention_batch_size,
        )


@dataclass(frozen=True)
class _Target:
    """One kind of row retention deletes, through the service of the domain that owns it:
    ``count(conn, cutoff)`` counts them, ``lock(conn, cutoff, limit=n)`` locks the next batch's
    keys, ``delete(conn, keys)`` deletes it and answers the rows deleted by table (``table``'s
    are the batch's own rows; the others are dependents, such as attempt logs)."""

    name: str
    table: str
    days: float
    count: Callable[[AsyncConnection, datetime], Awaitable[int]]
    lock: Callable[..., Awaitable[Sequence[Any]]]
    delete: Callable[[AsyncConnection, Sequence[Any]], Awaitable[dict[str, int]]]


def _final_deliveries(name: str, status: delivery_service.FinalStatus, days: float) -> _Target:
    return _Target(
        name,
        "delivery",
        days,
        partial(delivery_service.count_purgeable, status=status),
        partial(delivery_service.lock_purgeable, status=status),
        delivery_service.purge,
    )


def _targets(policy: RetentionPolicy) -> list[_Target]:
    # The events the read model learns from are never purged: a rebuild replays each of them.
    keep = events_replayed()
    targets = [
        _final_deliveries("delivered deliveries", "delivered", policy.delivered_days),
        _final_deliveries("failed deliveries", "failed", policy.failed_days),
        _Target(
            "events",
            "event",
            policy.events_days,
            partial(event_service.count_purgeable, keep=keep),
            partial(event_service.lock_purgeable, keep=keep),
            event_service.purge,
        ),
    ]
    return [target for target in targets if target.days > 0]


async def _delete_batch(conn: AsyncConnection, target: _Target, keys: Sequence[Any]) -> int:
    """Delete the rows ``keys`` of ``target`` (locked by the caller) with their dependents;
    counted in the metrics per table."""
    deleted = await target.delete(conn, keys)
    for table, rows in deleted.items():
        purged_rows.labels(table).inc(rows)
    return deleted[target.table]


async def _count(db: Database, target: _Target, cutoff: datetime) -> int:
    async with db.read() as conn:
        return await target.count(conn, cutoff)


async def purge(
    db: Database,
    policy: RetentionPolicy,
    *,
    now: datetime | None = None,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> dict[str, int]:
    """Apply ``policy``: rows deleted per target (with ``dry_run``, the rows that would be)."""
    now = now or utcnow()
    done: dict[str, int] = {}
    for target in _targets(policy):
        cutoff = now - timedelta(days=target.days)
        total = await _count(db, target, cutoff)
        done[target.name] = 0
        if progress:
            progress(target.name, 0, total)
        if dry_run:
            done[target.name] = total
            continue
        while True:
            async with db.write() as conn:
                keys = await target.lock(conn, cutoff, limit=policy.batch_size)
                if keys:
                    done[target.name] += await _delete_batch(conn, target, keys)
            if progress:
                progress(target.name, done[target.name], max(total, done[target.name]))
            if len(keys) < policy.batch_size:
                break
            await asyncio.sleep(0)  # let ingest and the dispatcher in between batches
    return done


class RetentionTask:
    """Applies the retention policy every ``EC_RETENTION_INTERVAL_SECONDS`` (a runtime
    component). Several processes may run it at once: their batches skip each other's rows."""

    FIRST_RUN_AFTER_SECONDS = 60.0

    def __init__(self, db: Database, policy: RetentionPolicy, interval_seconds: float) -> None:
        self.db = db
        self.policy = policy
        self.interval_seconds = interval_seconds
        self.runs = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if _targets(self.policy):
            self._task = asyncio.create_task(self._run(), name="retention")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        delay = min(self.FIRST_RUN_AFTER_SECONDS, self.interval_seconds)
        while True:
            await asyncio.sleep(delay)
            delay = self.interval_seconds
            try:
                purged = await purge(self.db, self.policy)
            except Exception:
                logger.exception("retention run failed; retrying in %.0f s", delay)
                continue
            self.runs += 1
            if any(purged.values()):
                logger.info(
                    "retention purged %s",
                    ", ".join(f"{count} {name}" for name, count in purged.items()),
                )
