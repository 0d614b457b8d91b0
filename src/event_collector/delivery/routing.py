"""Routing: the ingest hook that turns new events into deliveries, in the event's transaction.

One delivery per (newly stored event, matching active subscription of the same tenant):

* the event's entity type (None → never routed) equals the subscription's ``entityType``, or the
  subscription is WISHLIST and the event is WISHLIST_ITEM;
* CREATE / BULK_CREATE need ``subscribeCreate``, UPDATE / BULK_UPDATE ``subscribeChange``,
  DELETE ``subscribeDelete``; READ is never forwarded.

Each delivery carries the event's message (:func:`messages.event_message`); events take the same
path as every other message (:func:`service.route`, :func:`service.enqueue_messages`).

It runs on the hot ingest path, once per group commit: events nothing could match cost no query.
The rest cost one lookup of the matching (tenant, entity type, flag) combinations, and, only when
something matched, the messages of the matched events are rendered and inserted with one more
statement, which joins the subscriptions again in SQL and, on PostgreSQL, wakes the dispatchers
of every process (``pg_notify``, delivered at commit) when it made rows. Routing reads the
subscription table in the event's own transaction, so a subscription committed (by any process)
before an event is ingested routes that event; a cache would need invalidation across processes
and leave a window.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

from event_collector.delivery import service
from event_collector.delivery.messages import event_message
from event_collector.events.model import StoredEvent
from event_collector.events.writer import AfterCommit, IngestHook
from event_collector.kit.db import AnyConnection


def routing_hook(wake_dispatcher: AfterCommit | None) -> IngestHook:
    """The ingest hook of delivery: route the new events and, only when that made delivery
    rows, wake this process's dispatcher once the group committed (other processes' are woken
    by the NOTIFY the routing statement sends on PostgreSQL)."""

    async def route(conn: AnyConnection, created: Sequence[StoredEvent]) -> AfterCommit | None:
        return wake_dispatcher if await route_events(conn, created) else None

    return route


async def route_events(conn: AnyConnection, created: Sequence[StoredEvent]) -> bool:
    """A pending delivery per matching active subscription; whether it made any."""
    return await service.route(
        conn,
        [
            service.Routable(
                event.tenant, event.entity_type, event.operation, partial(event_message, event)
            )
            for event in created
            if event.entity_type is not None and event.operation in service.FLAG_BY_OPERATION
        ],
    )
