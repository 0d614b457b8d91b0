"""Delivery rules: what an attempt's result does to its delivery, and the API operations."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from pydantic_core import to_json
from sqlalchemy.ext.asyncio import AsyncConnection

from event_collector.delivery import metrics, repository
from event_collector.delivery.messages import Message, OutgoingMessage, outgoing, test_message
from event_collector.delivery.repository import (
    AttemptRecord,
    DestinationKey,
    FinalStatus,
    LeasedDelivery,
    RoutingTarget,
)
from event_collector.delivery.senders import Destination, Senders, SendResult
from event_collector.kit.crypto import SecretBox, SecretDecryptionError
from event_collector.kit.cursors import decode_cursor, encode_cursor, invalid_cursor
from event_collector.kit.db import AnyConnection, Database, backend_of, utcnow
from event_collector.kit.errors import BadRequest, NotFound
from event_collector.kit.settings import Settings
from event_collector.kit.timefmt import isoformat_z, parse_timestamp
from event_collector.subscriptions.repository import SubscriptionRepository
from event_collector.subscriptions.service import open_headers, secret_associated_data

logger = logging.getLogger(__name__)

NOTIFY_CHANNEL = "ec_delivery"

# operation → the subscription flag (column) that lets it through (READ and anything else: never)
FLAG_BY_OPERATION: dict[str, str] = {
    "CREATE": "subscribe_create",
    "BULK_CREATE": "subscribe_create",
    "UPDATE": "subscribe_change",
    "BULK_UPDATE": "subscribe_change",
    "DELETE": "subscribe_delete",
}

# A message of the key type is also delivered to subscriptions of the value types.
_ALSO_ROUTED_TO: dict[str, tuple[str, ...]] = {"WISHLIST_ITEM": ("WISHLIST",)}


def subscription_types_for(entity_type: str) -> tuple[str, ...]:
    return (entity_type, *_ALSO_ROUTED_TO.get(entity_type, ()))


# Enqueueing -------------------------------------------------------------------------------------


@dataclass(slots=True)
class Routable:
    """A message on its way to the subscriptions of its tenant, entity type and operation;
    ``render`` makes it, only once it is known to be needed where that is cheap to know."""

    tenant: str
    entity_type: str
    operation: str
    render: Callable[[], Message]


async def enqueue_messages(
    conn: AnyConnection,
    tenant: str,
    entity_type: str,
    operation: str,
    messages: Sequence[Message],
) -> bool:
    """Route messages to the tenant's active subscriptions for ``entity_type`` (NOTIFICATION
    included) that take ``operation``: one pending delivery per (message, subscription), in the
    caller's transaction. Whether any was made: then wake the dispatcher after the commit
    (other processes' dispatchers are NOTIFYed at commit)."""
    return await route(
        conn,
        [Routable(tenant, entity_type, operation, partial(_as_is, m)) for m in messages],
    )


def _as_is(message: Message) -> Message:
    return message


async def route(conn: AnyConnection, items: Sequence[Routable]) -> bool:
    """Create the deliveries of ``items`` (see :func:`enqueue_messages`); whether any was made.

    The subscriptions are looked up first (one statement), and only the messages something
    matches are rendered and inserted (a second statement, which also NOTIFYs the dispatchers
    of other processes). Rendering every message before knowing whether anything matches, to
    make it one statement on PostgreSQL, cost ingest without subscriptions ~10 % more CPU per
    request (bench/inprocess_ingest.py); a group nothing matches costs one statement, as
    before, and one that matches one more."""
    keyed = [
        ((item.tenant, wanted, FLAG_BY_OPERATION[item.operation]), item)
        for item in items
        if item.operation in FLAG_BY_OPERATION
        for wanted in subscription_types_for(item.entity_type)
    ]
    if not keyed:
        return False
    routable = await SubscriptionRepository(conn).routable({key for key, _ in keyed})
    keyed = [(key, item) for key, item in keyed if key in routable]
    if not keyed:
        return False
    rendered: dict[int, tuple[Message, str]] = {}  # an item can go to two subscription types
    targets = []
    for (tenant, wanted, flag), item in keyed:
        done = rendered.get(id(item))
        if done is None:
            message = item.render()
            done = rendered[id(item)] = (message, to_json(message.attributes).decode())
        message, attributes = done
        targets.append(
            RoutingTarget(
                tenant,
                wanted,
                flag,
                item.entity_type,
                message.body,
                attributes,
                message.ordering_key,
                message.deduplication_id,
            )
        )
    return await repository.insert_routed(conn, targets, utcnow(), NOTIFY_CHANNEL)


# Sending ----------------------------------------------------------------------------------------


@dataclass(slots=True)
class ClaimedDelivery:
    """A leased delivery with what sending it needs: its message and its destination."""

    id: str
    tenant: str
    subscription_id: str
    attempts: int
    message: OutgoingMessage
    destination_type: str
    destination: dict[str, Any]
    secret_sealed: str | None
    headers_sealed: str | None

    @property
    def key(self) -> DestinationKey:
        return (self.tenant, self.subscription_id)


async def claim(
    conn: AnyConnection,
    *,
    owner: str,
    now: datetime,
    lease_until: datetime,
    limit: int,
    excluded: Iterable[DestinationKey] = (),
) -> list[ClaimedDelivery]:
    """Lease up to ``limit`` due deliveries of active subscriptions (oldest due first) and read
    their destinations, once per subscription (one has hundreds of the rows)."""
    leased = await repository.lease_due(
        conn, owner=owner, now=now, lease_until=lease_until, limit=limit, excluded=excluded
    )
    if not leased:
        return []
    destinations = await SubscriptionRepository(conn).destinations_of({d.key for d in leased})
    return [_claimed(delivery, destinations[delivery.key]) for delivery in leased]


def _claimed(delivery: LeasedDelivery, subscription: Any) -> ClaimedDelivery:
    return ClaimedDelivery(
        id=delivery.id,
        tenant=delivery.tenant,
        subscription_id=delivery.subscription_id,
        attempts=delivery.attempts,
        message=OutgoingMessage(
            delivery.id,
            delivery.body,
            delivery.attributes,
            delivery.ordering_key,
            delivery.deduplication_id,
        ),
        destination_type=subscription.destination_type,
        destination=subscription.destination or {},
        secret_sealed=subscription.secret_sealed,
        headers_sealed=subscription.headers_sealed,
    )


def destination_of(
    secrets: SecretBox,
    tenant: str,
    subscription_id: str,
    destination_type: str,
    destination: dict[str, Any],
    secret_sealed: str | None,
    headers_sealed: str | None,
) -> Destination:
    """Raises ``kit.crypto.SecretDecryptionError`` when the secret or the custom headers cannot
    be opened."""
    secret = (
        secrets.open(secret_sealed, associated_data=secret_associated_data(tenant, subscription_id))
        if secret_sealed
        else None
    )
    config = dict(destination)
    if headers_sealed:
        config["headers"] = open_headers(secrets, tenant, subscription_id, headers_sealed)
    return Destination(tenant, subscription_id, destination_type, config, secret)


async def send_test_message(
    db: Database,
    secrets: SecretBox,
    settings: Settings,
    senders: Senders | None,
    tenant: str,
    subscription_id: str,
) -> SendResult:
    """Send a test message to the subscription's destination now, whatever its state, through
    the same message and sender path as a delivery (nothing is stored). ``senders``: the
    dispatcher's, when it runs in this process (else clients are opened for this send)."""
    # Not one transaction: no connection is held while the destination answers.
    async with db.read() as conn:
        subscription = await require_subscription(conn, tenant, subscription_id)
    try:
        destination = destination_of(
            secrets,
            tenant,
            subscription_id,
            subscription["destination_type"],
            subscription["destination"],
            subscription["secret_sealed"],
            subscription["headers_sealed"],
        )
    except SecretDecryptionError:
        return SendResult(False, error="the destination secret cannot be opened", permanent=True)
    message = outgoing(test_message(tenant, subscription_id, subscription["entity_type"]))
    if senders is not None:
        (result,) = await senders.send(destination, [message])
        return result
    own = Senders(settings)
    try:
        (result,) = await own.send(destination, [message])
    finally:
        await own.close()
    return result


def retry_delay(settings: Settings, attempt: int, retry_after: float | None) -> float | None:
    """Seconds until the next try after failed attempt number ``attempt`` (1-based); None when
    the attempt budget is spent. ``Retry-After`` can only lengthen the wait (capped)."""
    schedule = settings.delivery_retry_schedule
    if attempt > len(schedule):
        return None
    jitter = settings.delivery_retry_jitter
    delay = schedule[attempt - 1] * random.uniform(1 - jitter, 1 + jitter)
    if retry_after is not None:
        delay = max(delay, min(retry_after, settings.delivery_max_retry_after_seconds))
    return delay


def attempt_record(
    settings: Settings, delivery: ClaimedDelivery, result: SendResult, now: datetime
) -> AttemptRecord:
    attempt = delivery.attempts + 1
    error = result.error
    if not result.ok and result.permanent and error:
        error = f"{error} (permanent)"
    outcome, status, next_attempt_at = "success", "delivered", now
    if not result.ok:
        delay = retry_delay(settings, attempt, result.retry_after)
        if delay is None:
            outcome, status = "failed", "failed"
        else:
            outcome, status = "retry", "pending"
            next_attempt_at = now + timedelta(seconds=delay)
    return AttemptRecord(
        delivery_id=delivery.id,
        tenant=delivery.tenant,
        attempt=attempt,
        outcome=outcome,
        status_code=result.status_code,
        error=None if result.ok else error,
        latency_ms=result.latency_ms,
        attempted_at=now,
        status=status,
        next_attempt_at=next_attempt_at,
        delivered_at=now if result.ok else None,
    )


def deactivation_reason(failing_since: datetime, period: timedelta, last_error: str | None) -> str:
    sentence = (
        f"Deactivated automatically: every delivery attempt has failed since "
        f"{isoformat_z(failing_since)} (longer than {_human(period)})"
    )
    return f"{sentence}; last error: {last_error}." if last_error else f"{sentence}."


def _human(period: timedelta) -> str:
    seconds = int(period.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"


@dataclass(slots=True)
class Outcome:
    """The attempts of one send to one destination."""

    key: DestinationKey
    records: list[AttemptRecord]


async def record_outcomes(
    conn: AnyConnection, settings: Settings, outcomes: Sequence[Outcome]
) -> None:
    """Record a group of outcomes in one transaction: attempts, delivery states, and each
    destination's health. A success ends its failing period; failures start or continue it, and
    past ``delivery_deactivate_after`` the subscription is deactivated (auto-deactivation)."""
    records = sorted((r for o in outcomes for r in o.records), key=lambda r: r.delivery_id)
    await repository.record_attempts(conn, records)
    healthy: set[DestinationKey] = set()
    failing: dict[DestinationKey, AttemptRecord] = {}
    for outcome in outcomes:
        if any(r.outcome == "success" for r in outcome.records):
            healthy.add(outcome.key)
        else:
            failing[outcome.key] = outcome.records[-1]
    subscriptions = SubscriptionRepository(conn)
    await subscriptions.mark_healthy(sorted(healthy))
    period = settings.delivery_deactivate_after
    for key, last in sorted(failing.items()):
        if key in healthy:
            continue
        now = last.attempted_at
        failing_since = await subscriptions.mark_failing(key, now)
        if failing_since is None or now - failing_since < period:
            continue
        reason = deactivation_reason(failing_since, period, last.error)
        if await subscriptions.deactivate(key, now, reason):
            metrics.subscriptions_deactivated.inc()
            logger.warning(
                "subscription deactivated after failing continuously",
                extra={"tenant": key[0], "subscription_id": key[1]},
            )


# API ----------------------------------------------------------------------------------------


async def require_subscription(
    conn: AsyncConnection, tenant: str, subscription_id: str
) -> dict[str, Any]:
    subscription = await SubscriptionRepository(conn).get(tenant, subscription_id)
    if subscription is None:
        raise NotFound(f"no event subscription {subscription_id!r}")
    return subscription


def _encode_cursor(created_at: datetime, delivery_id: str) -> str:
    return encode_cursor(f"{isoformat_z(created_at)}|{delivery_id}")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    raw = decode_cursor(cursor, next_field="nextCursor")
    try:
        stamp, delivery_id = raw.split("|", 1)
        return parse_timestamp(stamp), delivery_id
    except ValueError:  # out-of-range timestamps too: only a forged cursor holds one
        raise invalid_cursor("nextCursor") from None


def _attempt_api(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "attempt": row["attempt"],
        "attemptedAt": isoformat_z(row["attempted_at"]),
        "outcome": row["outcome"],
        "statusCode": row["status_code"],
        "error": row["error"],
        "latencyMs": row["latency_ms"],
    }


async def list_deliveries(
    conn: AsyncConnection,
    tenant: str,
    subscription_id: str | None,
    *,
    status: str | None,
    cursor: str | None,
    limit: int,
    event_id: str | None = None,
) -> dict[str, Any]:
    """One subscription's deliveries, or (``subscription_id`` None) all the tenant's."""
    if subscription_id is not None:
        await require_subscription(conn, tenant, subscription_id)
    before = _decode_cursor(cursor) if cursor else None
    rows = await repository.list_deliveries(
        conn,
        tenant,
        subscription_id,
        status=status,
        before=before,
        limit=limit + 1,
        event_id=event_id,
    )
    more = len(rows) > limit
    rows = rows[:limit]
    attempts: dict[str, list[dict[str, Any]]] = {}
    for attempt in await repository.attempts_of(conn, tenant, [r["id"] for r in rows]):
        attempts.setdefault(attempt["delivery_id"], []).append(_attempt_api(attempt))
    items = [
        {
            "id": row["id"],
            "subscriptionId": row["subscription_id"],
            "eventId": (row["attributes"] or {}).get("event_id"),
            "status": row["status"],
            "attempts": row["attempts"],
            "nextAttemptAt": (
                isoformat_z(row["next_attempt_at"]) if row["status"] == "pending" else None
            ),
            "createdAt": isoformat_z(row["created_at"]),
            "deliveredAt": isoformat_z(row["delivered_at"]) if row["delivered_at"] else None,
            "lastError": row["last_error"],
            "lastStatusCode": row["last_status_code"],
            "attemptLog": attempts.get(row["id"], []),
        }
        for row in rows
    ]
    next_cursor = _encode_cursor(rows[-1]["created_at"], rows[-1]["id"]) if more else None
    return {"items": items, "nextCursor": next_cursor}


@dataclass(slots=True)
class ReplayRequest:
    since: datetime | None
    status: str  # failed | all
    ids: Sequence[str] | None = None  # these deliveries (of any subscription) instead of since


async def replay(
    conn: AsyncConnection,
    tenant: str,
    subscription_id: str | None,
    request: ReplayRequest,
    now: datetime,
) -> int:
    """Queue failed (or failed and delivered) deliveries again: one subscription's since a
    time, or the tenant's deliveries named by id. Pending ones are left alone."""
    if subscription_id is not None:
        await require_subscription(conn, tenant, subscription_id)
    if request.since is None and request.ids is None:
        raise BadRequest("name the deliveries to replay: since a time, or by id")
    statuses = ["failed"] if request.status == "failed" else ["failed", "delivered"]
    count = await repository.requeue(
        conn,
        tenant,
        subscription_id,
        since=request.since,
        statuses=statuses,
        now=now,
        ids=request.ids,
    )
    if count:
        await backend_of(conn).notify(conn, NOTIFY_CHANNEL)
    return count


# Console overview ---------------------------------------------------------------------------


@dataclass(slots=True)
class Health:
    """A subscription's recent attempts: how many, how many succeeded, the last error."""

    attempts: int = 0
    successes: int = 0
    last_error: str | None = None
    last_error_at: datetime | None = None

    @property
    def success_rate(self) -> float | None:
        return self.successes / self.attempts if self.attempts else None


async def health(conn: AsyncConnection, tenant: str, since: datetime) -> dict[str, Health]:
    """Per subscription id, its attempts since a time."""
    result: dict[str, Health] = {}
    for row in await repository.attempts_since(conn, tenant, since):
        entry = result.setdefault(row["subscription_id"], Health())
        entry.attempts += 1
        if row["outcome"] == "success":
            entry.successes += 1
        else:
            entry.last_error, entry.last_error_at = row["error"], row["attempted_at"]
    return result


async def attempts_since(
    conn: AsyncConnection, tenant: str, since: datetime
) -> list[dict[str, Any]]:
    return await repository.attempts_since(conn, tenant, since)


async def queue(conn: AsyncConnection, tenant: str, now: datetime) -> tuple[int, datetime | None]:
    """The tenant's pending deliveries and the due time of the oldest due one."""
    return await repository.tenant_queue(conn, tenant, now)


async def count_purgeable(conn: AnyConnection, before: datetime, *, status: FinalStatus) -> int:
    """How many ``status`` deliveries retention may delete now (see :func:`lock_purgeable`)."""
    return await repository.count_purgeable(conn, status, before)


async def lock_purgeable(
    conn: AnyConnection, before: datetime, *, status: FinalStatus, limit: int
) -> list[str]:
    """Retention's next batch: up to ``limit`` final deliveries (never a pending one) aged past
    the cutoff, locked for :func:`purge`."""
    return await repository.lock_purgeable(conn, status, before, limit)


async def purge(conn: AnyConnection, ids: Sequence[str]) -> dict[str, int]:
    """Delete the deliveries of a batch :func:`lock_purgeable` returned, with their attempt
    logs: the rows deleted, by table."""
    return await repository.delete_with_attempts(conn, ids)
