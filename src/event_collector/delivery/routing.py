"""Routing: the ingest hook that turns new events into delivery rows, in the event's transaction.

One delivery row per (newly stored event, matching active subscription of the same tenant):

* the event's entity type (None → never routed) equals the subscription's ``entityType``, or the
  subscription is WISHLIST and the event is WISHLIST_ITEM;
* CREATE / BULK_CREATE need ``subscribeCreate``, UPDATE / BULK_UPDATE ``subscribeChange``,
  DELETE ``subscribeDelete``; READ is never forwarded.

It runs on the hot ingest path, once per group commit: events nothing could match cost no query.
On PostgreSQL the rest cost one statement: the subscriptions are joined in SQL into the delivery
insert, which also wakes the dispatchers of every process (``pg_notify``, delivered at commit)
when it made rows. Routing reads the subscription table in the event's own statement, so a
subscription committed (by any process) before an event is ingested routes that event; a cache
would need invalidation across processes and leave a window, and saves no round trip here. On
SQLite (writes run inline, a query costs no round trip) it is one lookup and one insert.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from event_collector.delivery import repository
from event_collector.delivery.service import NOTIFY_CHANNEL
from event_collector.events.model import StoredEvent
from event_collector.events.writer import AfterCommit, IngestHook
from event_collector.kit.db import AnyConnection, utcnow
from event_collector.subscriptions.repository import SubscriptionRepository

# operation → the subscription flag (column) that lets it through (READ and anything else: never)
_FLAG_BY_OPERATION: dict[str, str] = {
    "CREATE": "subscribe_create",
    "BULK_CREATE": "subscribe_create",
    "UPDATE": "subscribe_change",
    "BULK_UPDATE": "subscribe_change",
    "DELETE": "subscribe_delete",
}

# An event of the key type is also delivered to subscriptions of the value types.
_ALSO_ROUTED_TO: dict[str, tuple[str, ...]] = {"WISHLIST_ITEM": ("WISHLIST",)}


def subscription_types_for(entity_type: str) -> tuple[str, ...]:
    return (entity_type, *_ALSO_ROUTED_TO.get(entity_type, ()))


def is_routable(event: StoredEvent) -> bool:
    return event.entity_type is not None and event.operation in _FLAG_BY_OPERATION


def routing_hook(wake_dispatcher: AfterCommit | None) -> IngestHook:
    """The ingest hook of delivery: route the new events and, only when that made delivery
    rows, wake this process's dispatcher once the group committed (other processes' are woken
    by the NOTIFY the routing statement sends on PostgreSQL)."""

    async def route(conn: AnyConnection, created: Sequence[StoredEvent]) -> AfterCommit | None:
        return wake_dispatcher if await route_events(conn, created) else None

    return route


async def route_events(conn: AnyConnection, created: Sequence[StoredEvent]) -> bool:
    """Insert a pending delivery row per matching active subscription; return whether it made
    any."""
    routable = [event for event in created if is_routable(event)]
    if not routable:
        return False
    if conn.dialect.name == "postgresql":
        targets = [
            (event.tenant, event.seq, wanted, _FLAG_BY_OPERATION[event.operation])
            for event in routable
            for wanted in subscription_types_for(event.entity_type)  # type: ignore[arg-type]
        ]
        return await SubscriptionRepository.from_connection(conn).insert_matching_deliveries(
            targets, utcnow(), notify_channel=NOTIFY_CHANNEL
        )
    tenants = {event.tenant for event in routable}
    entity_types = {
        wanted
        for event in routable
        for wanted in subscription_types_for(event.entity_type)  # type: ignore[arg-type]
    }
    subscriptions = await SubscriptionRepository.from_connection(conn).active_for_routing(
        tenants, entity_types
    )
    if not subscriptions:
        return False

    by_key: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for subscription in subscriptions:
        by_key[(subscription.tenant, subscription.entity_type)].append(subscription)

    rows = [
        (str(uuid.uuid4()), event.tenant, subscription.id, event.seq)
        for event in routable
        for wanted in subscription_types_for(event.entity_type)  # type: ignore[arg-type]
        for subscription in by_key.get((event.tenant, wanted), ())
        if getattr(subscription, _FLAG_BY_OPERATION[event.operation])
    ]
    if rows:
        await repository.insert_deliveries(conn, rows, utcnow())
    return bool(rows)
