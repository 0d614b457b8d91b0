"""Rebuilding the read model: clear it and replay the stored events through the apply hook."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from event_collector.events.model import EventKinds, StoredEvent
from event_collector.events.repository import EventRepository
from event_collector.kit.db import Database
from event_collector.read_model.apply.hook import (
    IGNORED_EVENT_TYPES,
    READ_MODEL_ENTITY_TYPES,
    WRITE_OPERATIONS,
    apply_events,
)
from event_collector.read_model.repository import ReadModelRepository

Progress = Callable[[int, int], None]


def events_replayed() -> EventKinds:
    """The events a rebuild replays (those the apply hook learns from): deleting one would
    change what a rebuild produces, so retention keeps them."""
    return EventKinds(READ_MODEL_ENTITY_TYPES, WRITE_OPERATIONS, IGNORED_EVENT_TYPES)


async def rebuild(
    db: Database,
    tenant: str | None,
    *,
    progress: Progress | None = None,
    page_size: int = 1000,
) -> int:
    """Clear the tenant's (or every) read-model rows and replay stored events in arrival order.

    Runs in one write transaction, so readers see the old model until the new one is complete
    and ingestion of the tenant waits meanwhile (on SQLite all ingestion waits).
    Returns the number of events replayed.
    """
    async with db.write() as conn:
        events_repo = EventRepository.from_connection(conn)
        total = await events_repo.count(tenant)
        await ReadModelRepository(conn).clear(tenant)
        after, done = 0, 0
        if progress:
            progress(0, total)
        while True:
            events: Sequence[StoredEvent] = await events_repo.iter_all(
                tenant, after_seq=after, limit=page_size
            )
            if not events:
                break
            await apply_events(conn, events)
            after = events[-1].seq
            done += len(events)
            if progress:
                progress(done, max(total, done))
        return done
