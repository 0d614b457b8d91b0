"""Routing: the ingest hook that turns new events into delivery rows, in the event's transaction.

One delivery row per (newly stored event, matching active subscription of the same tenant):

* the event's entity type (None → never routed) equals the subscription's ``entityType``, or the
  subscription is WISHLIST and the event is WISHLIST_ITEM;
* CREATE / BULK_CREATE need ``subscribeCreate``, UPDATE / BULK_UPDATE ``subscribeChange``,
  DELETE ``subscribeDelete``; READ is never forwarded.

It runs on the hot ingest path, once per group commit: events nothing could match cost no query;
the rest cost one query for the group's tenants and one multi-row insert.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from event_collector.delivery import repository
from event_collector.events.model import StoredEvent
from event_collector.kit.db import AnyConnection, utcnow
from event_collector.subscriptions.repository import SubscriptionRepository

# operation → the subscription flag that lets it through (READ and anything else: never)
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


async def route_events(conn: AnyConnection, created: Sequence[StoredEvent]) -> None:
    """The ingest hook: insert a pending delivery row per matching active subscription."""
    routable = [event for event in created if is_routable(event)]
    if not routable:
        return
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
        return

    by_key: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for subscription in subscriptions:
        by_key[(subscription.tenant, subscription.entity_type)].append(subscription)

    await repository.insert_deliveries(
        conn,
        [
            (str(uuid.uuid4()), event.tenant, subscription.id, event.seq)
            for event in routable
            for wanted in subscription_types_for(event.entity_type)  # type: ignore[arg-type]
            for subscription in by_key.get((event.tenant, wanted), ())
            if getattr(subscription, _FLAG_BY_OPERATION[event.operation])
        ],
        utcnow(),
    )
