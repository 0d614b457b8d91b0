"""Every query on the delivery tables (``delivery``, ``delivery_attempt``). Tenant scoping for
the API lives here; the dispatcher works across tenants by design (it serves them all) but only
ever touches rows it has leased.

Which subscriptions are active, and their destinations, are the subscriptions repository's
business: the queries here take its :func:`active_subscription_keys` as a subquery, and routing
embeds its :data:`ROUTING_JOIN`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import ColumnElement, and_, delete, func, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncConnection

from event_collector.kit import leases
from event_collector.kit.db import AnyConnection, BulkStatement, backend_of
from event_collector.kit.leases import LeasedTable
from event_collector.models.delivery import delivery_attempt_table, delivery_table
from event_collector.subscriptions.repository import ROUTING_JOIN, active_subscription_keys

d = delivery_table
a = delivery_attempt_table

DestinationKey = tuple[str, str]


@dataclass(slots=True)
class LeasedDelivery:
    """A delivery row leased by the dispatcher, with its message."""

    id: str
    tenant: str
    subscription_id: str
    attempts: int
    body: str
    attributes: dict[str, str]
    ordering_key: str
    deduplication_id: str

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


@dataclass(slots=True)
class RoutingTarget:
    """A message for the active subscriptions of ``tenant`` of ``subscription_type`` whose
    ``flag`` (subscribe_create / _change / _delete) is set."""

    tenant: str
    subscription_type: str
    flag: str
    entity_type: str  # the message's own
    body: str
    attributes_json: str
    ordering_key: str
    deduplication_id: str | None


# Routing: one statement inserts a pending delivery per (target, matching subscription). The
# id is a random UUID made by the database; the deduplication id defaults to it. The scalars
# are the time (created and due) and the channel to NOTIFY (PostgreSQL).
_ROUTED_COLUMNS = (
    "id, tenant, subscription_id, entity_type, body, attributes, ordering_key, "
    "deduplication_id, status, attempts, next_attempt_at, created_at"
)
_SQLITE_UUID = (
    "lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || "
    "substr(hex(randomblob(2)), 2) || '-' || substr('89ab', 1 + (abs(random()) % 4), 1) || "
    "substr(hex(randomblob(2)), 2) || '-' || hex(randomblob(6)))"
)
# The matches are materialised first, so that each row's random id is drawn once (the
# deduplication id defaults to it).
_MATCHES = (
    "WITH r AS MATERIALIZED (SELECT {uuid} AS id, s.tenant AS tenant, s.id AS subscription_id, "
    "t.message_type AS entity_type, t.body AS body, t.attributes AS attributes, "
    "t.ordering_key AS ordering_key, t.deduplication_id AS deduplication_id, t.now AS now "
    "FROM {targets} AS t " + ROUTING_JOIN + ")"
)
_INSERT_MATCHES = (
    f"INSERT INTO delivery ({_ROUTED_COLUMNS}) "
    "SELECT r.id, r.tenant, r.subscription_id, r.entity_type, r.body, r.attributes, "
    "r.ordering_key, coalesce(r.deduplication_id, r.id), 'pending', 0, r.now, r.now FROM r "
    "RETURNING 1"
)
INSERT_ROUTED = BulkStatement(
    "delivery.insert_routed",
    columns=8,
    scalars=2,
    sqlite=_MATCHES.format(
        uuid=_SQLITE_UUID,
        targets=(
            "(SELECT column1 AS tenant, column2 AS entity_type, column3 AS flag, "
            "column4 AS message_type, column5 AS body, column6 AS attributes, "
            "column7 AS ordering_key, column8 AS deduplication_id, column9 AS now "
            "FROM (VALUES {rows}))"
        ),
    )
    + " "
    + _INSERT_MATCHES,
    # Tenant scoping: a target only ever joins its own tenant's subscriptions. A
    # data-modifying CTE always runs to completion, so LIMIT 1 only limits the NOTIFY, sent
    # (at commit) when at least one row was made.
    postgres=_MATCHES.format(
        uuid="gen_random_uuid()::varchar",
        targets=(
            "(SELECT *, $9::timestamptz AS now FROM unnest($1::varchar[], $2::varchar[], "
            "$3::varchar[], $4::varchar[], $5::text[], $6::json[], $7::varchar[], "
            "$8::varchar[]) AS v(tenant, entity_type, flag, message_type, body, attributes, "
            "ordering_key, deduplication_id))"
        ),
    )
    + f", routed AS ({_INSERT_MATCHES}) "
    "SELECT pg_notify($10, '') FROM (SELECT 1 FROM routed LIMIT 1) AS any_routed",
)


async def insert_routed(
    conn: AnyConnection, targets: Sequence[RoutingTarget], now: datetime, notify_channel: str
) -> bool:
    """A pending delivery per (target, matching active subscription), due ``now``; whether it
    made any. On the ingest path: one statement, whatever matched; on PostgreSQL it also
    NOTIFYs ``notify_channel`` at commit when it made rows (other processes' dispatchers)."""
    if not targets:
        return False
    backend = backend_of(conn)
    rows = [
        (
            t.tenant,
            t.subscription_type,
            t.flag,
            t.entity_type,
            t.body,
            t.attributes_json,
            t.ordering_key,
            t.deduplication_id,
        )
        for t in targets
    ]
    scalars = (backend.timestamp(now), notify_channel)
    return bool(await backend.bulk(conn, INSERT_ROUTED, rows, scalars))


def _due(now: datetime) -> Any:
    return and_(
        d.c.status == "pending",
        d.c.next_attempt_at <= now,
        or_(d.c.lease_expires_at.is_(None), d.c.lease_expires_at <= now),
    )


def _of_active_subscription() -> Any:
    return tuple_(d.c.tenant, d.c.subscription_id).in_(active_subscription_keys())


async def lease_due(
    conn: AnyConnection,
    *,
    owner: str,
    now: datetime,
    lease_until: datetime,
    limit: int,
    excluded: Iterable[DestinationKey] = (),
) -> list[LeasedDelivery]:
    """Lease up to ``limit`` due deliveries of active subscriptions (not ``excluded``), oldest
    due first, in one UPDATE … RETURNING."""
    due = (
        select(d.c.id)
        .where(_due(now), _of_active_subscription())
        .order_by(d.c.next_attempt_at)
        .limit(limit)
    )
    excluded = list(excluded)
    if excluded:
        due = due.where(tuple_(d.c.tenant, d.c.subscription_id).not_in(excluded))
    due = backend_of(conn).skip_locked(due, d)
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
                d.c.body,
                d.c.attributes,
                d.c.ordering_key,
                d.c.deduplication_id,
                d.c.next_attempt_at,
                d.c.created_at,
            )
        )
    ).all()
    leased = sorted(result, key=lambda row: (row.next_attempt_at, row.created_at))
    return [
        LeasedDelivery(
            row.id,
            row.tenant,
            row.subscription_id,
            row.attempts,
            row.body,
            row.attributes or {},
            row.ordering_key,
            row.deduplication_id,
        )
        for row in leased
    ]


LEASES = LeasedTable(delivery_table, until_column="lease_expires_at")
STILL_PENDING = d.c.status == "pending"
"""A lease is renewed while its row is pending (a recorded row is done)."""


async def release(conn: AnyConnection, owner: str, ids: Sequence[str]) -> None:
    """Give leased deliveries back untouched (no attempt recorded): breaker open, shutdown."""
    await leases.release(conn, LEASES, owner=owner, ids=ids)


# Outcome recording goes to the driver with one multi-row statement per step (as the event
# insert does): SQLAlchemy's per-row parameter processing of an executemany cost more than the
# statements themselves (a third of the dispatcher's time at ~2k deliveries/s). The rows are
# (id, tenant, attempt, attempted_at, outcome, status_code, error, latency_ms, status,
# next_attempt_at, delivered_at), the same for both statements.
_POSTGRES_OUTCOMES = (
    "unnest($1::varchar[], $2::varchar[], $3::int[], $4::timestamptz[], $5::varchar[], "
    "$6::int[], $7::text[], $8::int[], $9::varchar[], $10::timestamptz[], $11::timestamptz[]) "
    "AS v(id, tenant, attempt, attempted_at, outcome, status_code, error, latency_ms, status, "
    "next_attempt_at, delivered_at)"
)
# Never regress a row someone else finished meanwhile (our lease had expired, or a replay).
APPLY_OUTCOMES = BulkStatement(
    "delivery.apply_outcomes",
    columns=11,
    sqlite=(
        "UPDATE delivery SET status = v.column9, attempts = v.column3, "
        "next_attempt_at = v.column10, delivered_at = v.column11, last_error = v.column7, "
        "last_status_code = v.column6, lease_owner = NULL, lease_expires_at = NULL "
        "FROM (VALUES {rows}) AS v WHERE delivery.id = v.column1 AND delivery.status = 'pending'"
    ),
    postgres=(
        "UPDATE delivery AS d SET status = v.status, attempts = v.attempt, "
        "next_attempt_at = v.next_attempt_at, delivered_at = v.delivered_at, "
        "last_error = v.error, last_status_code = v.status_code, lease_owner = NULL, "
        f"lease_expires_at = NULL FROM {_POSTGRES_OUTCOMES} "
        "WHERE d.id = v.id AND d.status = 'pending'"
    ),
)
# Attempts of deliveries deleted meanwhile (their subscription was deleted) are dropped instead
# of failing the whole group.
LOG_ATTEMPTS = BulkStatement(
    "delivery.log_attempts",
    columns=11,
    sqlite=(
        "INSERT INTO delivery_attempt (delivery_id, tenant, attempt, attempted_at, outcome, "
        "status_code, error, latency_ms) "
        "SELECT v.column1, v.column2, v.column3, v.column4, v.column5, v.column6, v.column7, "
        "v.column8 FROM (VALUES {rows}) AS v "
        "WHERE EXISTS (SELECT 1 FROM delivery WHERE delivery.id = v.column1)"
    ),
    postgres=(
        "INSERT INTO delivery_attempt (delivery_id, tenant, attempt, attempted_at, outcome, "
        "status_code, error, latency_ms) "
        "SELECT v.id, v.tenant, v.attempt, v.attempted_at, v.outcome, v.status_code, v.error, "
        f"v.latency_ms FROM {_POSTGRES_OUTCOMES} "
        "WHERE EXISTS (SELECT 1 FROM delivery WHERE delivery.id = v.id)"
    ),
)


async def record_attempts(conn: AnyConnection, records: Sequence[AttemptRecord]) -> None:
    """Apply attempts to their delivery rows and log them (``delivery_attempt``)."""
    if not records:
        return
    backend = backend_of(conn)
    stamps: dict[datetime, object] = {}  # a group's records share a few instants

    def stamp(value: datetime) -> object:
        converted = stamps.get(value)
        if converted is None:
            converted = stamps[value] = backend.timestamp(value)
        return converted

    rows = [
        (
            r.delivery_id,
            r.tenant,
            r.attempt,
            stamp(r.attempted_at),
            r.outcome,
            r.status_code,
            r.error,
            r.latency_ms,
            r.status,
            stamp(r.next_attempt_at),
            None if r.delivered_at is None else stamp(r.delivered_at),
        )
        for r in records
    ]
    await backend.bulk(conn, APPLY_OUTCOMES, rows)
    await backend.bulk(conn, LOG_ATTEMPTS, rows)


async def next_due_at(
    conn: AsyncConnection, now: datetime, excluded: Iterable[DestinationKey] = ()
) -> datetime | None:
    """When the dispatcher next has something to do: the earliest pending delivery's due time
    (or, when it is leased, the lease's expiry)."""
    query = select(func.min(d.c.next_attempt_at)).where(
        d.c.status == "pending",
        _of_active_subscription(),
        or_(d.c.lease_expires_at.is_(None), d.c.lease_expires_at <= now),
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
            select(func.count(), func.min(d.c.next_attempt_at)).where(
                d.c.status == "pending", _of_active_subscription()
            )
        )
    ).one()
    oldest: datetime | None = row[1]
    return int(row[0]), (oldest if oldest is not None and oldest <= now else None)


# API queries (tenant-scoped) --------------------------------------------------------------------


async def list_deliveries(
    conn: AsyncConnection,
    tenant: str,
    subscription_id: str | None,
    *,
    status: str | None,
    before: tuple[datetime, str] | None,
    limit: int,
    event_id: str | None = None,
) -> list[dict[str, Any]]:
    """Newest first; ``before`` is the (created_at, id) of the previous page's last row.
    Without ``subscription_id``: the tenant's deliveries to every subscription."""
    query = select(d).where(d.c.tenant == tenant)
    if subscription_id is not None:
        query = query.where(d.c.subscription_id == subscription_id)
    if status:
        query = query.where(d.c.status == status)
    if event_id is not None:
        query = query.where(d.c.attributes["event_id"].as_string() == event_id)
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


async def requeue(
    conn: AsyncConnection,
    tenant: str,
    subscription_id: str | None,
    *,
    since: datetime | None,
    statuses: Sequence[str],
    now: datetime,
    ids: Sequence[str] | None = None,
) -> int:
    """Queue matching deliveries again: of one subscription since a time, or the given ids."""
    conditions = [d.c.tenant == tenant, d.c.status.in_(list(statuses))]
    if subscription_id is not None:
        conditions.append(d.c.subscription_id == subscription_id)
    if since is not None:
        conditions.append(d.c.created_at >= since)
    if ids is not None:
        conditions.append(d.c.id.in_(list(ids)))
    result = await conn.execute(
        update(d)
        .where(*conditions)
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


# Console overview (tenant-scoped) ---------------------------------------------------------------


async def attempts_since(
    conn: AsyncConnection, tenant: str, since: datetime
) -> list[dict[str, Any]]:
    """The tenant's attempts since a time (subscription_id, outcome, attempted_at, error)."""
    rows = await conn.execute(
        select(d.c.subscription_id, a.c.outcome, a.c.attempted_at, a.c.error)
        .select_from(a.join(d, and_(d.c.id == a.c.delivery_id, d.c.tenant == a.c.tenant)))
        .where(a.c.tenant == tenant, a.c.attempted_at >= since)
        .order_by(a.c.id)
    )
    return [dict(row._mapping) for row in rows]


async def tenant_queue(
    conn: AsyncConnection, tenant: str, now: datetime
) -> tuple[int, datetime | None]:
    """The tenant's pending deliveries, and the due time of the oldest one that is due."""
    row = (
        await conn.execute(
            select(func.count(), func.min(d.c.next_attempt_at)).where(
                d.c.tenant == tenant, d.c.status == "pending"
            )
        )
    ).one()
    oldest: datetime | None = row[1]
    return int(row[0]), (oldest if oldest is not None and oldest <= now else None)


# Retention (ops/retention.py runs the batches): across tenants by design, like the policy. -----

FinalStatus = Literal["delivered", "failed"]
"""The statuses retention may delete: a ``pending`` delivery is still to be sent, never purged."""

# The age of a final delivery: since it was delivered, or (a dead letter) since it was created:
# dead letters are final about a day after creation (the retry schedule's length).
_AGED_SINCE = {"delivered": d.c.delivered_at, "failed": d.c.created_at}


def _purgeable(status: FinalStatus, before: datetime) -> ColumnElement[bool]:
    return (d.c.status == status) & (_AGED_SINCE[status] < before)


async def count_purgeable(conn: AnyConnection, status: FinalStatus, before: datetime) -> int:
    """How many ``status`` deliveries aged past the cutoff there are."""
    statement = select(func.count()).select_from(d).where(_purgeable(status, before))
    return int(await conn.scalar(statement) or 0)


async def lock_purgeable(
    conn: AnyConnection, status: FinalStatus, before: datetime, limit: int
) -> list[str]:
    """The next ``limit`` purgeable deliveries' ids (by id), locked until the transaction ends;
    rows another purger or the dispatcher holds are skipped (PostgreSQL) rather than waited for."""
    statement = select(d.c.id).where(_purgeable(status, before)).order_by(d.c.id).limit(limit)
    return list(await conn.scalars(backend_of(conn).skip_locked(statement)))


async def delete_with_attempts(conn: AnyConnection, ids: Sequence[str]) -> dict[str, int]:
    """Delete the deliveries ``ids`` and their attempt logs: the rows deleted, by table."""
    attempts = await conn.execute(delete(a).where(a.c.delivery_id.in_(ids)))
    deliveries = await conn.execute(delete(d).where(d.c.id.in_(ids)))
    return {a.name: int(attempts.rowcount), d.name: int(deliveries.rowcount)}
