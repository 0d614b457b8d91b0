"""Delivery rules: what an attempt's result does to its delivery, and the API operations."""

from __future__ import annotations

import base64
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from event_collector.delivery import repository
from event_collector.delivery.repository import AttemptRecord, ClaimedDelivery
from event_collector.delivery.senders import Destination, SendResult
from event_collector.kit.crypto import SecretBox
from event_collector.kit.db import AnyConnection
from event_collector.kit.errors import BadRequest, NotFound
from event_collector.kit.settings import Settings
from event_collector.kit.timefmt import isoformat_z, parse_timestamp

NOTIFY_CHANNEL = "ec_delivery"
STATUSES = ("pending", "delivered", "failed")


def secret_context(tenant: str, subscription_id: str) -> str:
    return f"{tenant}:{subscription_id}"


def destination_of(
    secrets: SecretBox,
    tenant: str,
    subscription_id: str,
    destination_type: str,
    destination: dict[str, Any],
    secret_sealed: str | None,
) -> Destination:
    """Raises ``kit.crypto.SecretDecryptionError`` when the secret cannot be opened."""
    secret = (
        secrets.open(secret_sealed, associated_data=secret_context(tenant, subscription_id))
        if secret_sealed
        else None
    )
    return Destination(tenant, subscription_id, destination_type, dict(destination), secret)


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


async def notify(conn: AnyConnection) -> None:
    if conn.dialect.name == "postgresql":
        await conn.execute(text(f"NOTIFY {NOTIFY_CHANNEL}"))


# API ----------------------------------------------------------------------------------------


async def require_subscription(
    conn: AsyncConnection, tenant: str, subscription_id: str
) -> dict[str, Any]:
    subscription = await repository.get_subscription(conn, tenant, subscription_id)
    if subscription is None:
        raise NotFound(f"no event subscription {subscription_id!r}")
    return subscription


def _encode_cursor(created_at: datetime, delivery_id: str) -> str:
    raw = f"{isoformat_z(created_at)}|{delivery_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, delivery_id = raw.split("|", 1)
        return parse_timestamp(stamp), delivery_id
    except (ValueError, UnicodeDecodeError):
        raise BadRequest("cursor is not valid; pass the nextCursor of a previous page") from None


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
    subscription_id: str,
    *,
    status: str | None,
    cursor: str | None,
    limit: int,
) -> dict[str, Any]:
    await require_subscription(conn, tenant, subscription_id)
    before = _decode_cursor(cursor) if cursor else None
    rows = await repository.list_deliveries(
        conn, tenant, subscription_id, status=status, before=before, limit=limit + 1
    )
    more = len(rows) > limit
    rows = rows[:limit]
    attempts: dict[str, list[dict[str, Any]]] = {}
    for attempt in await repository.attempts_of(conn, tenant, [r["id"] for r in rows]):
        attempts.setdefault(attempt["delivery_id"], []).append(_attempt_api(attempt))
    event_ids = await repository.event_ids_of(conn, sorted({r["event_seq"] for r in rows}))
    items = [
        {
            "id": row["id"],
            "subscriptionId": row["subscription_id"],
            "eventId": event_ids.get(row["event_seq"]),
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
    since: datetime
    status: str  # failed | all


async def replay(
    conn: AsyncConnection,
    tenant: str,
    subscription_id: str,
    request: ReplayRequest,
    now: datetime,
) -> int:
    await require_subscription(conn, tenant, subscription_id)
    statuses = ["failed"] if request.status == "failed" else ["failed", "delivered"]
    count = await repository.requeue(
        conn, tenant, subscription_id, since=request.since, statuses=statuses, now=now
    )
    if count:
        await notify(conn)
    return count
