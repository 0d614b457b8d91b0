"""Every query on the subscription table. Tenant scoping is applied here and nowhere else."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import insert, select, true, tuple_, update

from event_collector.kit.db import AnyConnection, InlineConnection
from event_collector.models import subscription_table

_t = subscription_table
_TENANT_CHUNK = 500

# Tenant scoping: a target only ever joins its own tenant's subscriptions (s.tenant = t.tenant).
# Data-modifying CTEs always run to completion, so LIMIT 1 only limits the notifications.
_INSERT_MATCHING_DELIVERIES = """
WITH routed AS (
    INSERT INTO delivery (id, tenant, subscription_id, event_seq, status, attempts,
                          next_attempt_at, created_at)
    SELECT gen_random_uuid()::varchar, s.tenant, s.id, t.seq, 'pending', 0, $5, $5
    FROM unnest($1::varchar[], $2::bigint[], $3::varchar[], $4::varchar[])
        AS t(tenant, seq, entity_type, flag)
    JOIN subscription AS s
        ON s.tenant = t.tenant AND s.entity_type = t.entity_type AND s.active
    WHERE CASE t.flag
        WHEN 'subscribe_create' THEN s.subscribe_create
        WHEN 'subscribe_change' THEN s.subscribe_change
        WHEN 'subscribe_delete' THEN s.subscribe_delete
    END
    RETURNING 1
)
SELECT pg_notify($6, '') FROM (SELECT 1 FROM routed LIMIT 1) AS any_routed
"""

ROUTING_COLUMNS = (
    _t.c.tenant,
    _t.c.id,
    _t.c.entity_type,
    _t.c.subscribe_create,
    _t.c.subscribe_change,
    _t.c.subscribe_delete,
)


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
            statement = statement.with_for_update()
        row = (await self.conn.execute(statement)).first()
        return dict(row._mapping) if row else None

    async def list_for_tenant(self, tenant: str, *, include_inactive: bool) -> list[dict[str, Any]]:
        statement = select(_t).where(_t.c.tenant == tenant)
        if not include_inactive:
            statement = statement.where(_t.c.active == true())
        result = await self.conn.execute(statement.order_by(_t.c.created_at, _t.c.id))
        return [dict(row._mapping) for row in result]

    async def insert(self, values: dict[str, Any]) -> None:
        await self.conn.execute(insert(_t).values(**values))

    async def update(self, tenant: str, subscription_id: str, values: dict[str, Any]) -> bool:
        result = await self.conn.execute(
            update(_t).where(_t.c.tenant == tenant, _t.c.id == subscription_id).values(**values)
        )
        return bool(result.rowcount)

    async def active_for_routing(
        self, tenants: Collection[str], entity_types: Collection[str]
    ) -> list[Any]:
        """The active subscriptions of these tenants for these entity types (routing columns)."""
        rows: list[Any] = []
        tenant_list = sorted(tenants)
        types = sorted(entity_types)
        for start in range(0, len(tenant_list), _TENANT_CHUNK):
            chunk = tenant_list[start : start + _TENANT_CHUNK]
            if isinstance(self.conn, InlineConnection):
                rows.extend(_active_for_routing_sqlite(self.conn, chunk, types))
                continue
            statement = select(*ROUTING_COLUMNS).where(
                _t.c.tenant.in_(chunk) if len(chunk) > 1 else _t.c.tenant == chunk[0],
                _t.c.entity_type.in_(types) if len(types) > 1 else _t.c.entity_type == types[0],
                _t.c.active == true(),
            )
            rows.extend((await self.conn.execute(statement)).all())
        return rows

    async def insert_matching_deliveries(
        self,
        targets: Sequence[tuple[str, int, str, str]],
        now: datetime,
        *,
        notify_channel: str,
    ) -> bool:
        """PostgreSQL: one pending delivery row per (target, matching active subscription);
        whether it made any.

        A target is (tenant, event seq, subscription entity type, flag column the operation
        needs). One statement, so routing costs a group commit one round trip whatever matched;
        it NOTIFYs ``notify_channel`` (at commit) when it made at least one row.
        """
        if not targets:
            return False
        tenants, seqs, entity_types, flags = (list(column) for column in zip(*targets, strict=True))
        result = await self.conn.exec_driver_sql(
            _INSERT_MATCHING_DELIVERIES,
            (tenants, seqs, entity_types, flags, now, notify_channel),
        )
        return result.first() is not None

    async def sealed_secrets_after(self, after: tuple[str, str] | None, limit: int) -> list[Any]:
        """Every tenant's sealed secrets in (tenant, id) order: for re-sealing after a key
        rotation (an operator task across tenants)."""
        statement = select(_t.c.tenant, _t.c.id, _t.c.secret_sealed).where(
            _t.c.secret_sealed.is_not(None)
        )
        if after is not None:
            statement = statement.where(tuple_(_t.c.tenant, _t.c.id) > tuple_(*after))
        result = await self.conn.execute(statement.order_by(_t.c.tenant, _t.c.id).limit(limit))
        return list(result.all())

    async def replace_sealed_secret(
        self, tenant: str, subscription_id: str, old: str, new: str
    ) -> bool:
        """Swap a sealed secret unless a concurrent write changed it meanwhile."""
        result = await self.conn.execute(
            update(_t)
            .where(_t.c.tenant == tenant, _t.c.id == subscription_id, _t.c.secret_sealed == old)
            .values(secret_sealed=new)
        )
        return bool(result.rowcount)


class RoutingSubscription(NamedTuple):
    tenant: str
    id: str
    entity_type: str
    subscribe_create: bool
    subscribe_change: bool
    subscribe_delete: bool


def _active_for_routing_sqlite(
    conn: InlineConnection, tenants: Sequence[str], entity_types: Sequence[str]
) -> list[RoutingSubscription]:
    """The SQLite routing lookup straight through the driver: it runs once per group commit on
    the event loop, where building and compiling the SQLAlchemy statement cost ~10x the query."""
    driver = conn.sync_connection.connection.driver_connection
    assert driver is not None
    statement = (
        f"SELECT {', '.join(column.name for column in ROUTING_COLUMNS)} FROM {_t.name} "
        f"WHERE tenant IN ({', '.join('?' * len(tenants))}) "
        f"AND entity_type IN ({', '.join('?' * len(entity_types))}) AND active"
    )
    return [
        RoutingSubscription(*row) for row in driver.execute(statement, [*tenants, *entity_types])
    ]
