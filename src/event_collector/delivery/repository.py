"""Every delivery query. Tenant scoping for the API lives here; the dispatcher works across
tenants by design (it serves them all) but only ever touches rows it has leased."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from event_collector.events.model import StoredEvent
from event_collector.kit.db import AnyConnection, InlineConnection, sqlite_timestamp
from event_collector.models.event import event_table
from event_collector.models.subscription import (
    delivery_attempt_table,
    delivery_table,
    subscription_table,
)

d = delivery_table
s = subscription_table
a = delivery_attempt_table

DestinationKey = tuple[str, str]


@dataclass(slots=True)
class ClaimedDelivery:
    id: str
    tenant: str
    subscription_id: str
    attempts: int
    event: StoredEvent
    destination_type: str
    destination: dict[str, Any]
    secret_sealed: str | None

    @property
    def key(self) -> DestinationKey:
        return (self.tenant, self.subscription_id)


@dataclass(slots=True)
class AttemptRecord:
    delivery_id: str
    tenant: str
    attempt: int
    outcome: str  # success | retry | failed
    status_code: int | None
    error: str | None
    latency_ms: int
    attempted_at: datetime
    # The new state of the delivery row.
    status: str
    next_attempt_at: datetime
    delivered_at: datetime | None


def _due(now: datetime) -> Any:
    return and_(
        d.c.status == "pending",
        d.c.next_attempt_at <= now,
        or_(d.c.lease_expires_at.is_(None), d.c.lease_expires_at <= now),
    )


def _active_join() -> Any:
    return d.join(s, and_(s.c.tenant == d.c.tenant, s.c.id == d.c.subscription_id))


async def claim(
    conn: AnyConnection,
    *,
    owner: str,
    now: datetime,
    lease_until: datetime,
    limit: int,
    excluded: Iterable[DestinationKey] = (),
) -> list[ClaimedDelivery]:
    """Lease up to ``limit`` due deliveries of active subscriptions (not ``excluded``), oldest
    due first.

    One UPDATE … RETURNING leases the rows; their events and subscriptions are then read once
    each (a subscription has hundreds of the rows, an event one per matching subscription), so
    no event or destination is decoded twice."""
    due = (
        select(d.c.id)
        .select_from(_active_join())
        .where(_due(now), s.c.active.is_(True))
        .order_by(d.c.next_attempt_at)
        .limit(limit)
    )
    excluded = list(excluded)
    if excluded:
        due = due.where(tuple_(d.c.tenant, d.c.subscription_id).not_in(excluded))
    if conn.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True, of=d)
    result = (
        await conn.execute(
            update(d)
            .where(d.c.id.in_(due.scalar_subquery()))
            .values(lease_owner=owner, lease_expires_at=lease_until)
            .returning(
                d.c.id,
                d.c.tenant,
                d.c.subscription_id,
                d.c.attempts,
                d.c.event_seq,
                d.c.next_attempt_at,
                d.c.created_at,
            )
        )
    ).all()
    if not result:
        return []
    leased = sorted(result, key=lambda row: (row.next_attempt_at, row.created_at))
    event_rows = await conn.execute(
        select(*event_table.c).where(event_table.c.seq.in_({row.event_seq for row in leased}))
    )
    events = {event.seq: event for event in map(StoredEvent.from_row, event_rows)}
    subscriptions = {
        (row.tenant, row.id): row
        for row in await conn.execute(
            select(
                s.c.tenant, s.c.id, s.c.destination_type, s.c.destination, s.c.secret_sealed
            ).where(tuple_(s.c.tenant, s.c.id).in_({(r.tenant, r.subscription_id) for r in leased}))
        )
    }
    claimed = []
    for row in leased:
        subscription = subscriptions[(row.tenant, row.subscription_id)]
        claimed.append(
            ClaimedDelivery(
                id=row.id,
                tenant=row.tenant,
                subscription_id=row.subscription_id,
                attempts=row.attempts,
                event=events[row.event_seq],
                destination_type=subscription.destination_type,
                destination=subscription.destination or {},
                secret_sealed=subscription.secret_sealed,
            )
        )
    return claimed


_SQLITE_INSERT_DELIVERY_ROW = "(?,?,?,?,'pending',0,?,?)"
_SQLITE_INSERT_DELIVERIES = (
    "INSERT INTO delivery (id, tenant, subscription_id, event_seq, status, attempts, "
    "next_attempt_at, created_at) VALUES {rows}"
)
_POSTGRES_INSERT_DELIVERIES = (
    "INSERT INTO delivery (id, tenant, subscription_id, event_seq, status, attempts, "
    "next_attempt_at, created_at) "
    "SELECT v.id, v.tenant, v.subscription_id, v.event_seq, 'pending', 0, $5, $5 "
    "FROM unnest($1::varchar[], $2::varchar[], $3::varchar[], $4::bigint[]) "
    "AS v(id, tenant, subscription_id, event_seq)"
)


async def insert_deliveries(
    conn: AnyConnection, deliveries: Sequence[tuple[str, str, str, int]], now: datetime
) -> None:
    """New pending deliveries, due ``now``: (id, tenant, subscription id, event seq) each.

    On the ingest path (the routing hook), so straight to the driver in one multi-row
    statement, like the event insert."""
    if not deliveries:
        return
    if conn.dialect.name == "postgresql":
        columns: tuple[list[object], ...] = ([], [], [], [])
        for row in deliveries:
            for column, value in zip(columns, row, strict=True):
                column.append(value)
        await conn.exec_driver_sql(_POSTGRES_INSERT_DELIVERIES, (*columns, now))
        return
    stamp = sqlite_timestamp(now)
    rows_per_statement = 32_000 // 6
    for start in range(0, len(deliveries), rows_per_statement):
        chunk = deliveries[start : start + rows_per_statement]
        parameters: list[object] = []
        for row in chunk:
            parameters += row
            parameters += (stamp, stamp)
        rows = ",".join([_SQLITE_INSERT_DELIVERY_ROW] * len(chunk))
        await _exec_driver_sql(conn, _SQLITE_INSERT_DELIVERIES.format(rows=rows), tuple(parameters))


async def renew_leases(
    conn: AsyncConnection, owner: str, ids: Sequence[str], lease_until: datetime
) -> None:
    if not ids:
        return
    # Rows locked by an outcome being recorded are skipped (they are done): renewing them
    # would only queue behind (or deadlock with) that transaction.
    mine = select(d.c.id).where(
        d.c.id.in_(list(ids)), d.c.lease_owner == owner, d.c.status == "pending"
    )
    if conn.dialect.name == "postgresql":
        mine = mine.with_for_update(skip_locked=True)
    await conn.execute(
        update(d).where(d.c.id.in_(mine.scalar_subquery())).values(lease_expires_at=lease_until)
    )


async def release(conn: AsyncConnection, owner: str, ids: Sequence[str]) -> None:
    """Give leased deliveries back untouched (no attempt recorded): breaker open, shutdown."""
    if ids:
        await conn.execute(
            update(d)
            .where(d.c.id.in_(list(ids)), d.c.lease_owner == owner)
            .values(lease_owner=None, lease_expires_at=None)
        )


# Outcome recording goes to the driver with one multi-row statement per step (as the event
# insert does): SQLAlchemy's per-row parameter processing of an executemany cost more than the
# statements themselves (a third of the dispatcher's time at ~2k deliveries/s). The rows are
# (id, tenant, attempt, attempted_at, outcome, status_code, error, latency_ms, status,
# next_attempt_at, delivered_at), the same tuple for both statements.
_OUTCOME_COLUMNS = 11
# Never regress a row someone else finished meanwhile (our lease had expired, or a replay).
_SQLITE_UPDATE = (
    "UPDATE delivery SET status = v.column9, attempts = v.column3, next_attempt_at = v.column10, "
    "delivered_at = v.column11, last_error = v.column7, last_status_code = v.column6, "
    "lease_owner = NULL, lease_expires_at = NULL "
    "FROM (VALUES {rows}) AS v WHERE delivery.id = v.column1 AND delivery.status = 'pending'"
)
# Attempts of deliveries deleted meanwhile (their subscription was deleted) are dropped instead
# of failing the whole group.
_SQLITE_INSERT = (
    "INSERT INTO delivery_attempt (delivery_id, tenant, attempt, attempted_at, outcome, "
    "status_code, error, latency_ms) "
    "SELECT v.column1, v.column2, v.column3, v.column4, v.column5, v.column6, v.column7, "
    "v.column8 FROM (VALUES {rows}) AS v "
    "WHERE EXISTS (SELECT 1 FROM delivery WHERE delivery.id = v.column1)"
)
_SQLITE_ROW = "(" + ",".join("?" * _OUTCOME_COLUMNS) + ")"
_SQLITE_ROWS_PER_STATEMENT = 32_000 // _OUTCOME_COLUMNS
_POSTGRES_ROWS = (
    "unnest($1::varchar[], $2::varchar[], $3::int[], $4::timestamptz[], $5::varchar[], "
    "$6::int[], $7::text[], $8::int[], $9::varchar[], $10::timestamptz[], $11::timestamptz[]) "
    "AS v(id, tenant, attempt, attempted_at, outcome, status_code, error, latency_ms, status, "
    "next_attempt_at, delivered_at)"
)
_POSTGRES_UPDATE = (
    "UPDATE delivery AS d SET status = v.status, attempts = v.attempt, "
    "next_attempt_at = v.next_attempt_at, delivered_at = v.delivered_at, last_error = v.error, "
    "last_status_code = v.status_code, lease_owner = NULL, lease_expires_at = NULL "
    f"FROM {_POSTGRES_ROWS} WHERE d.id = v.id AND d.status = 'pending'"
)
_POSTGRES_INSERT = (
    "INSERT INTO delivery_attempt (delivery_id, tenant, attempt, attempted_at, outcome, "
    "status_code, error, latency_ms) "
    "SELECT v.id, v.tenant, v.attempt, v.attempted_at, v.outcome, v.status_code, v.error, "
    f"v.latency_ms FROM {_POSTGRES_ROWS} "
    "WHERE EXISTS (SELECT 1 FROM delivery WHERE delivery.id = v.id)"
)


async def record_attempts(conn: AnyConnection, records: Sequence[AttemptRecord]) -> None:
    """Apply attempts to their delivery rows and log them (``delivery_attempt``)."""
    if not records:
        return
    if conn.dialect.name == "postgresql":
        columns: list[list[object]] = [[] for _ in range(_OUTCOME_COLUMNS)]
        for r in records:
            for column, value in zip(columns, _outcome_row(r, _as_is), strict=True):
                column.append(value)
        parameters = tuple(columns)
        await conn.exec_driver_sql(_POSTGRES_UPDATE, parameters)
        await conn.exec_driver_sql(_POSTGRES_INSERT, parameters)
        return
    stamps: dict[datetime, str] = {}  # a group's records share a few instants

    def stamp(value: datetime) -> str:
        text = stamps.get(value)
        if text is None:
            text = stamps[value] = sqlite_timestamp(value)
        return text

    for start in range(0, len(records), _SQLITE_ROWS_PER_STATEMENT):
        chunk = records[start : start + _SQLITE_ROWS_PER_STATEMENT]
        flat: list[object] = []
        for r in chunk:
            flat += _outcome_row(r, stamp)
        rows = ",".join([_SQLITE_ROW] * len(chunk))
        await _exec_driver_sql(conn, _SQLITE_UPDATE.format(rows=rows), tuple(flat))
        await _exec_driver_sql(conn, _SQLITE_INSERT.format(rows=rows), tuple(flat))


def _as_is(value: datetime) -> datetime:
    return value


def _outcome_row(r: AttemptRecord, timestamp: Callable[[datetime], object]) -> tuple[object, ...]:
    return (
        r.delivery_id,
        r.tenant,
        r.attempt,
        timestamp(r.attempted_at),
        r.outcome,
        r.status_code,
        r.error,
        r.latency_ms,
        r.status,
        timestamp(r.next_attempt_at),
        None if r.delivered_at is None else timestamp(r.delivered_at),
    )


async def _exec_driver_sql(
    conn: AnyConnection, statement: str, parameters: tuple[object, ...]
) -> None:
    if isinstance(conn, InlineConnection):
        conn.sync_connection.exec_driver_sql(statement, parameters)
    else:
        await conn.exec_driver_sql(statement, parameters)


async def mark_subscriptions_healthy(conn: AnyConnection, keys: Sequence[DestinationKey]) -> None:
    """A success ends the failing period (one statement for a whole outcome group)."""
    if keys:
        await conn.execute(
            update(s)
            .where(
                tuple_(s.c.tenant, s.c.id).in_(list(keys)),
                s.c.failing_since.is_not(None),
            )
            .values(failing_since=None)
        )


async def mark_subscription_failing(
    conn: AsyncConnection, key: DestinationKey, now: datetime
) -> datetime | None:
    """Start (or continue) the subscription's failing period; return when it started."""
    await conn.execute(
        update(s)
        .where(s.c.tenant == key[0], s.c.id == key[1], s.c.failing_since.is_(None))
        .values(failing_since=now)
    )
    row = (
        await conn.execute(
            select(s.c.failing_since, s.c.active).where(s.c.tenant == key[0], s.c.id == key[1])
        )
    ).first()
    if row is None or not row.active:
        return None
    failing_since: datetime | None = row.failing_since
    return failing_since


async def deactivate_subscription(
    conn: AsyncConnection, key: DestinationKey, now: datetime, reason: str
) -> bool:
    result = await conn.execute(
        update(s)
        .where(s.c.tenant == key[0], s.c.id == key[1], s.c.active.is_(True))
        .values(active=False, deactivated_at=now, deactivated_reason=reason, updated_at=now)
    )
    return bool(result.rowcount)


async def next_due_at(
    conn: AsyncConnection, now: datetime, excluded: Iterable[DestinationKey] = ()
) -> datetime | None:
    """When the dispatcher next has something to do: the earliest pending delivery's due time
    (or, when it is leased, the lease's expiry)."""
    query = (
        select(func.min(d.c.next_attempt_at))
        .select_from(_active_join())
        .where(
            d.c.status == "pending",
            s.c.active.is_(True),
            or_(d.c.lease_expires_at.is_(None), d.c.lease_expires_at <= now),
        )
    )
    excluded = list(excluded)
    if excluded:
        query = query.where(tuple_(d.c.tenant, d.c.subscription_id).not_in(excluded))
    earliest: datetime | None = (await conn.execute(query)).scalar()
    leased: datetime | None = (
        await conn.execute(
            select(func.min(d.c.lease_expires_at)).where(
                d.c.status == "pending", d.c.lease_expires_at > now
            )
        )
    ).scalar()
    candidates = [t for t in (earliest, leased) if t is not None]
    return min(candidates) if candidates else None


async def queue_stats(conn: AsyncConnection, now: datetime) -> tuple[int, datetime | None]:
    """Pending deliveries of active subscriptions (an inactive one's wait for it on purpose),
    and the due time of the oldest one that is due."""
    row = (
        await conn.execute(
            select(func.count(), func.min(d.c.next_attempt_at))
            .select_from(_active_join())
            .where(d.c.status == "pending", s.c.active.is_(True))
        )
    ).one()
    oldest: datetime | None = row[1]
    return int(row[0]), (oldest if oldest is not None and oldest <= now else None)


# API queries (tenant-scoped) --------------------------------------------------------------------


async def get_subscription(
    conn: AsyncConnection, tenant: str, subscription_id: str
) -> dict[str, Any] | None:
    row = (
        await conn.execute(select(s).where(s.c.tenant == tenant, s.c.id == subscription_id))
    ).first()
    return dict(row._mapping) if row else None


async def list_deliveries(
    conn: AsyncConnection,
    tenant: str,
    subscription_id: str,
    *,
    status: str | None,
    before: tuple[datetime, str] | None,
    limit: int,
) -> list[dict[str, Any]]:
    """Newest first; ``before`` is the (created_at, id) of the previous page's last row."""
    query = select(d).where(d.c.tenant == tenant, d.c.subscription_id == subscription_id)
    if status:
        query = query.where(d.c.status == status)
    if before:
        created_at, delivery_id = before
        query = query.where(
            or_(
                d.c.created_at < created_at,
                and_(d.c.created_at == created_at, d.c.id < delivery_id),
            )
        )
    query = query.order_by(d.c.created_at.desc(), d.c.id.desc()).limit(limit)
    return [dict(row._mapping) for row in await conn.execute(query)]


async def attempts_of(
    conn: AsyncConnection, tenant: str, delivery_ids: Sequence[str]
) -> list[dict[str, Any]]:
    if not delivery_ids:
        return []
    rows = await conn.execute(
        select(a)
        .where(a.c.tenant == tenant, a.c.delivery_id.in_(list(delivery_ids)))
        .order_by(a.c.id)
    )
    return [dict(row._mapping) for row in rows]


async def event_ids_of(conn: AsyncConnection, seqs: Sequence[int]) -> dict[int, str]:
    if not seqs:
        return {}
    rows = await conn.execute(
        select(event_table.c.seq, event_table.c.id).where(event_table.c.seq.in_(list(seqs)))
    )
    return {row.seq: row.id for row in rows}


async def requeue(
    conn: AsyncConnection,
    tenant: str,
    subscription_id: str,
    *,
    since: datetime,
    statuses: Sequence[str],
    now: datetime,
) -> int:
    result = await conn.execute(
        update(d)
        .where(
            d.c.tenant == tenant,
            d.c.subscription_id == subscription_id,
            d.c.created_at >= since,
            d.c.status.in_(list(statuses)),
        )
        .values(
            status="pending",
            attempts=0,
            next_attempt_at=now,
            lease_owner=None,
            lease_expires_at=None,
            delivered_at=None,
            last_error=None,
            last_status_code=None,
        )
    )
    return int(result.rowcount or 0)
