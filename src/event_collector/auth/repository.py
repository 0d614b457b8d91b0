"""Every query on tenants and OAuth clients."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from event_collector.models import oauth_client_table, tenant_table


class TenantRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    @classmethod
    def from_connection(cls, conn: AsyncConnection) -> TenantRepository:
        return cls(conn)

    async def exists(self, tenant_id: str) -> bool:
        result = await self.conn.execute(
            select(tenant_table.c.id).where(tenant_table.c.id == tenant_id)
        )
        return result.first() is not None

    async def count(self) -> int:
        result = await self.conn.execute(select(func.count()).select_from(tenant_table))
        return int(result.scalar_one())

    async def create(self, tenant_id: str, created_at: datetime) -> None:
        await self.conn.execute(insert(tenant_table).values(id=tenant_id, created_at=created_at))

    async def delete(self, tenant_id: str) -> bool:
        await self.conn.execute(
            delete(oauth_client_table).where(oauth_client_table.c.tenant_id == tenant_id)
        )
        result = await self.conn.execute(delete(tenant_table).where(tenant_table.c.id == tenant_id))
        return bool(result.rowcount)

    async def list(self) -> list[dict[str, Any]]:
        clients = (
            select(func.count())
            .where(
                oauth_client_table.c.tenant_id == tenant_table.c.id,
                oauth_client_table.c.revoked_at.is_(None),
            )
            .scalar_subquery()
        )
        result = await self.conn.execute(
            select(tenant_table.c.id, tenant_table.c.created_at, clients.label("clients")).order_by(
                tenant_table.c.id
            )
        )
        return [dict(row._mapping) for row in result]


class ClientRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    @classmethod
    def from_connection(cls, conn: AsyncConnection) -> ClientRepository:
        return cls(conn)

    async def create(self, **values: Any) -> None:
        await self.conn.execute(insert(oauth_client_table).values(**values))

    async def get(self, client_id: str) -> dict[str, Any] | None:
        result = await self.conn.execute(
            select(oauth_client_table).where(oauth_client_table.c.client_id == client_id)
        )
        row = result.first()
        return dict(row._mapping) if row else None

    async def list(self, tenant_id: str | None) -> list[dict[str, Any]]:
        statement = select(
            oauth_client_table.c.client_id,
            oauth_client_table.c.tenant_id,
            oauth_client_table.c.name,
            oauth_client_table.c.scopes,
            oauth_client_table.c.created_at,
            oauth_client_table.c.revoked_at,
        ).order_by(oauth_client_table.c.tenant_id, oauth_client_table.c.created_at)
        if tenant_id is not None:
            statement = statement.where(oauth_client_table.c.tenant_id == tenant_id)
        result = await self.conn.execute(statement)
        return [dict(row._mapping) for row in result]

    async def revoke(self, client_id: str, revoked_at: datetime) -> bool:
        result = await self.conn.execute(
            update(oauth_client_table)
            .where(
                oauth_client_table.c.client_id == client_id,
                oauth_client_table.c.revoked_at.is_(None),
            )
            .values(revoked_at=revoked_at)
        )
        return bool(result.rowcount)
