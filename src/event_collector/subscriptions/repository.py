"""Every query on the subscription table. Tenant scoping is applied here and nowhere else."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, insert, or_, select, true, tuple_, update

from event_collector.kit.db import AnyConnection, BulkStatement, backend_of
from event_collector.models.subscription import subscription_table

_t = subscription_table
# What routing joins a relation ``t(tenant, entity_type, flag)`` of messages to: the active
# subscriptions of the message's tenant (tenant scoping: never another's) and entity type whose
# flag column (subscribe_create / _change / _delete) lets the message's operation through.
ROUTING_JOIN = (
    "JOIN subscription AS s ON s.tenant = t.tenant AND s.entity_type = t.entity_type "
    "AND s.active AND CASE t.flag WHEN 'subscribe_create' THEN s.subscribe_create "
    "WHEN 'subscribe_change' THEN s.subscribe_change "
    "WHEN 'subscribe_delete' THEN s.subscribe_delete END"
)

ROUTABLE = BulkStatement(
    "subscriptions.routable",
    columns=3,
    sqlite=(
        "SELECT DISTINCT t.tenant, t.entity_type, t.flag FROM (SELECT column1 AS tenant, "
        "column2 AS entity_type, column3 AS flag FROM (VALUES {rows})) AS t " + ROUTING_JOIN
    ),
    postgres=(
        "SELECT DISTINCT t.tenant, t.entity_type, t.flag FROM unnest($1::varchar[], "
        "$2::varchar[], $3::varchar[]) AS t(tenant, entity_type, flag) " + ROUTING_JOIN
    ),
)


def active_subscription_keys() -> Select[tuple[str, str]]:
    """(tenant, id) of every active subscription, as a subquery for the delivery queries."""
    return select(_t.c.tenant, _t.c.id).where(_t.c.active.is_(True))


class SubscriptionRepository:
    def __init__(self, conn: AnyConnection) -> None:
        self.conn = conn

    @classmethod
    def from_connection(cls, conn: AnyConnection) -> SubscriptionRepository:
        return cls(conn)

    async def get(
        self, tenant: str, subscription_id: str, *, for_update: bool = False
    ) -> dict[str, Any] | None:
        statement = select(_t).where(_t.c.tenant == tenant, _t.c.id == subscription_id)
        if for_update:
            # Serialises concurrent read-modify-write on PostgreSQL (SQLite writes are serial).
            statement = backend_of(self.conn).for_update(statement)
        row = (await self.conn.execute(statement)).first()
        return dict(row._mapping) if row else None

    async def list_for_tenant(self, tenant: str, *, include_inactive: bool) -> list[dict[str, Any]]:
        statement = select(_t).where(_t.c.tenant == tenant)
        if not include_inactive:
            statement = statement.where(_t.c.active == true())
        result = await self.conn.execute(statement.order_by(_t.c.created_at, _t.c.id))
        return [dict(row._mapping) for row in result]

    async def count_for_tenant(self, tenant: str) -> int:
        statement = select(func.count()).select_from(_t).where(_t.c.tenant == tenant)
        return int((await self.conn.execute(statement)).scalar_one())

    async def insert(self, values: dict[str, Any]) -> None:
        await self.conn.execute(insert(_t).values(**values))

    async def update(self, tenant: str, subscription_id: str, values: dict[str, Any]) -> bool:
        result = await self.conn.execute(
            update(_t).where(_t.c.tenant == tenant, _t.c.id == subscription_id).values(**values)
        )
        return bool(result.rowcount)

    async def routable(
        self, targets: Collection[tuple[str, str, str]]
    ) -> set[tuple[str, str, str]]:
        """Which of these (tenant, entity type, flag column) have an active subscription to
        route to."""
        rows = await backend_of(self.conn).bulk(self.conn, ROUTABLE, list(targets))
        return {(tenant, entity_type, flag) for tenant, entity_type, flag in rows}

    async def destinations_of(
        self, keys: Collection[tuple[str, str]]
    ) -> dict[tuple[str, str], Any]:
        """The destination columns of these (tenant, id) subscriptions, for sending."""
        if not keys:
            return {}
        rows = await self.conn.execute(
            select(
                _t.c.tenant,
                _t.c.id,
                _t.c.destination_type,
                _t.c.destination,
                _t.c.secret_sealed,
                _t.c.headers_sealed,
            ).where(tuple_(_t.c.tenant, _t.c.id).in_(list(keys)))
        )
        return {(row.tenant, row.id): row for row in rows}

    async def mark_healthy(self, keys: Sequence[tuple[str, str]]) -> None:
        """End these subscriptions' failing periods (one statement for many)."""
        if keys:
            await self.conn.execute(
                update(_t)
                .where(
                    tuple_(_t.c.tenant, _t.c.id).in_(list(keys)), _t.c.failing_since.is_not(None)
                )
                .values(failing_since=None)
            )

    async def mark_failing(self, key: tuple[str, str], now: datetime) -> datetime | None:
        """Start (or continue) the subscription's failing period; when it started, or None when
        the subscription is gone or inactive."""
        tenant, subscription_id = key
        await self.conn.execute(
            update(_t)
            .where(_t.c.tenant == tenant, _t.c.id == subscription_id, _t.c.failing_since.is_(None))
            .values(failing_since=now)
        )
        row = (
            await self.conn.execute(
                select(_t.c.failing_since, _t.c.active).where(
                    _t.c.tenant == tenant, _t.c.id == subscription_id
                )
            )
        ).first()
        if row is None or not row.active:
            return None
        failing_since: datetime | None = row.failing_since
        return failing_since

    async def deactivate(self, key: tuple[str, str], now: datetime, reason: str) -> bool:
        """Deactivate an active subscription; whether it was active."""
        tenant, subscription_id = key
        result = await self.conn.execute(
            update(_t)
            .where(_t.c.tenant == tenant, _t.c.id == subscription_id, _t.c.active.is_(True))
            .values(active=False, deactivated_at=now, deactivated_reason=reason, updated_at=now)
        )
        return bool(result.rowcount)

    async def sealed_secrets_after(self, after: tuple[str, str] | None, limit: int) -> list[Any]:
        """Every tenant's sealed secrets and headers in (tenant, id) order: for re-sealing after
        a key rotation (an operator task across tenants)."""
        statement = select(_t.c.tenant, _t.c.id, _t.c.secret_sealed, _t.c.headers_sealed).where(
            or_(_t.c.secret_sealed.is_not(None), _t.c.headers_sealed.is_not(None))
        )
        if after is not None:
            statement = statement.where(tuple_(_t.c.tenant, _t.c.id) > tuple_(*after))
        result = await self.conn.execute(statement.order_by(_t.c.tenant, _t.c.id).limit(limit))
        return list(result.all())

    async def replace_sealed(
        self, tenant: str, subscription_id: str, column: str, old: str, new: str
    ) -> bool:
        """Swap a sealed value (``secret_sealed`` or ``headers_sealed``) unless a concurrent
        write changed it meanwhile."""
        result = await self.conn.execute(
            update(_t)
            .where(_t.c.tenant == tenant, _t.c.id == subscription_id, _t.c[column] == old)
            .values({column: new})
        )
        return bool(result.rowcount)
