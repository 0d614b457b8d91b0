"""The event writer: concurrent ingest requests share one database transaction.

A request hands its validated events to :meth:`EventWriter.submit` and waits; the requests are
group-committed (``kit/group_commit.py``), up to ``max_inflight_groups`` groups at a time (one
on SQLite, whose writes are serial anyway; several on PostgreSQL, which overlaps their
commits). A group is written in one transaction together with whatever the ingest hooks add
(delivery rows, read-model changes), so an event and its consequences commit together (the
transactional outbox) and the commit cost is shared. A request that cannot be stored fails
alone (the group is retried request by request).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum

from event_collector.events.model import NewEvent, StoredEvent
from event_collector.events.repository import EventRepository
from event_collector.kit.db import AnyConnection, Database
from event_collector.kit.errors import ServiceUnavailable
from event_collector.kit.group_commit import GroupCommit
from event_collector.kit.metrics import ingest_group_seconds, ingest_group_size

logger = logging.getLogger(__name__)

AfterCommit = Callable[[], None]
"""Run once a group's transaction committed (e.g. to wake the dispatcher); must not raise."""

IngestHook = Callable[[AnyConnection, Sequence[StoredEvent]], Awaitable[AfterCommit | None]]
"""Called inside the ingest transaction with the events that were newly stored; may return
something to run after the commit.

On SQLite the connection is an :class:`InlineConnection` whose awaits never suspend: a hook
should only run queries on it, not wait for anything else."""


class Outcome(StrEnum):
    CREATED = "created"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"


@dataclass(slots=True)
class IngestResult:
    outcome: Outcome
    event: StoredEvent


class EventWriter:
    def __init__(
        self,
        db: Database,
        *,
        hooks: Sequence[IngestHook] = (),
        max_group_events: int = 2000,
        max_inflight_groups: int = 1,
    ) -> None:
        self._db = db
        self._hooks = list(hooks)
        # The flusher yields once before taking a group, so that the requests already parsed
        # and ready to run join it (groups of ~42 instead of ~31 under 64 connections).
        self._groups: GroupCommit[Sequence[NewEvent], list[IngestResult]] = GroupCommit(
            self._write,
            what="ingest transaction",
            max_concurrent=max_inflight_groups,
            max_group_weight=max_group_events,
            weight=len,
            # The cause is logged; the client learns only that nothing was stored.
            failure=lambda _exc: IngestFailed(),
        )

    def add_hook(self, hook: IngestHook) -> None:
        self._hooks.append(hook)

    async def submit(self, events: Sequence[NewEvent]) -> list[IngestResult]:
        """Store events (idempotently) and return one result per event, in order."""
        return await self._groups.submit(events)

    async def drain(self) -> None:
        """Wait until everything submitted so far is written (used at shutdown)."""
        await self._groups.drain()

    async def _write(self, group: Sequence[Sequence[NewEvent]]) -> list[list[IngestResult]]:
        first_by_key: dict[tuple[str, str], NewEvent] = {}
        for events in group:
            for event in events:
                first_by_key.setdefault((event.tenant, event.id), event)
        to_insert = list(first_by_key.values())
        ingest_group_size.observe(len(to_insert))

        started = time.perf_counter()
        async with self._db.write_inline() as conn:
            repository = EventRepository.from_connection(conn)
            inserted = await repository.insert_new(to_insert)
            created = [
                StoredEvent.from_new(event, inserted[(event.tenant, event.id)])
                for event in to_insert
                if (event.tenant, event.id) in inserted
            ]
            existing_keys = [key for key in first_by_key if key not in inserted]
            existing = {
                (stored.tenant, stored.id): stored
                for stored in await repository.get_many_by_key(existing_keys)
            }
            after_commit = [
                after for hook in self._hooks if (after := await hook(conn, created)) is not None
            ]
        ingest_group_seconds.observe(time.perf_counter() - started)

        created_by_key = {(event.tenant, event.id): event for event in created}
        claimed: set[tuple[str, str]] = set()
        results: list[list[IngestResult]] = []
        for events in group:
            per_request: list[IngestResult] = []
            for event in events:
                key = (event.tenant, event.id)
                if key in created_by_key and key not in claimed:
                    claimed.add(key)
                    per_request.append(IngestResult(Outcome.CREATED, created_by_key[key]))
                    continue
                stored = created_by_key.get(key) or existing[key]
                outcome = (
                    Outcome.DUPLICATE
                    if stored.content_hash == event.content_hash
                    else Outcome.CONFLICT
                )
                per_request.append(IngestResult(outcome, stored))
            results.append(per_request)

        for after in after_commit:
            try:
                after()
            except Exception:
                logger.exception("after-commit hook failed")
        return results


class IngestFailed(ServiceUnavailable):
    """The events could not be stored; nothing was acknowledged, so the client may retry."""
