"""Every query on the event table. Tenant scoping is applied here and nowhere else."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import Select, select, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from event_collector.events.model import NewEvent, StoredEvent
from event_collector.models import event_table

_ALL_COLUMNS = [event_table.c[name] for name in StoredEvent.__dataclass_fields__]
_KEY_CHUNK = 400


class EventRepository:
    def __init__(self, conn: AsyncConnection) -> None:
        self.conn = conn

    @classmethod
    def from_connection(cls, conn: AsyncConnection) -> EventRepository:
        return cls(conn)

    def _scoped(self, tenant: str) -> Select[tuple[object, ...]]:
        return select(*_ALL_COLUMNS).where(event_table.c.tenant == tenant)

    async def insert_new(self, events: Sequence[NewEvent]) -> dict[tuple[str, str], int]:
        """Insert events whose (tenant, id) is not stored yet; return the new rows' seq by key.

        Keys already present (a re-post, or a concurrent writer in another process) are left
        untouched; the caller compares their content.
        """
        if not events:
            return {}
        dialect_insert = (
            postgresql.insert if self.conn.dialect.name == "postgresql" else sqlite.insert
        )
        statement = (
            dialect_insert(event_table)
            .on_conflict_do_nothing(index_elements=["tenant", "id"])
            .returning(event_table.c.seq, event_table.c.tenant, event_table.c.id)
        )
        result = await self.conn.execute(statement, [event.row() for event in events])
        return {(row.tenant, row.id): row.seq for row in result}

    async def get_many_by_key(self, keys: Sequence[tuple[str, str]]) -> list[StoredEvent]:
        found: list[StoredEvent] = []
        for start in range(0, len(keys), _KEY_CHUNK):
            chunk = keys[start : start + _KEY_CHUNK]
            result = await self.conn.execute(
                select(*_ALL_COLUMNS).where(
                    tuple_(event_table.c.tenant, event_table.c.id).in_(chunk)
                )
            )
            found.extend(StoredEvent.from_row(row) for row in result)
        return found

    async def get(self, tenant: str, event_id: str) -> StoredEvent | None:
        result = await self.conn.execute(self._scoped(tenant).where(event_table.c.id == event_id))
        row = result.first()
        return StoredEvent.from_row(row) if row else None

    async def list_page(
        self,
        tenant: str,
        *,
        after_seq: int | None,
        limit: int,
        entity_type: str | None = None,
        entity_id: str | None = None,
        event_type: str | None = None,
        operation: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[StoredEvent]:
        statement = self._scoped(tenant)
        if after_seq is not None:
            statement = statement.where(event_table.c.seq > after_seq)
        if entity_type is not None:
            statement = statement.where(event_table.c.entity_type == entity_type)
        if entity_id is not None:
            # entity_id and event_payload.entity_id default to each other at ingest.
            statement = statement.where(event_table.c.entity_id == entity_id)
        if event_type is not None:
            statement = statement.where(event_table.c.event_type == event_type)
        if operation is not None:
            statement = statement.where(event_table.c.operation == operation)
        if since is not None:
            statement = statement.where(event_table.c.received_at >= since)
        if until is not None:
            statement = statement.where(event_table.c.received_at < until)
        result = await self.conn.execute(statement.order_by(event_table.c.seq).limit(limit))
        return [StoredEvent.from_row(row) for row in result]

    async def iter_all(
        self, tenant: str | None, *, after_seq: int, limit: int
    ) -> list[StoredEvent]:
        """Events of one tenant (or all) in arrival order, for replays and rebuilds."""
        statement = select(*_ALL_COLUMNS).where(event_table.c.seq > after_seq)
        if tenant is not None:
            statement = statement.where(event_table.c.tenant == tenant)
        result = await self.conn.execute(statement.order_by(event_table.c.seq).limit(limit))
        return [StoredEvent.from_row(row) for row in result]
