"""Every query on the event table. Tenant scoping is applied here and nowhere else."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from pydantic_core import to_json
from sqlalchemy import Select, select, tuple_

from event_collector.events.model import NewEvent, StoredEvent
from event_collector.kit.db import AnyConnection, BulkStatement, backend_of
from event_collector.models import event_table

_ALL_COLUMNS = [event_table.c[name] for name in StoredEvent.__dataclass_fields__]
_KEY_CHUNK = 400


class EventRepository:
    def __init__(self, conn: AnyConnection) -> None:
        self.conn = conn

    @classmethod
    def from_connection(cls, conn: AnyConnection) -> EventRepository:
        return cls(conn)

    def _scoped(self, tenant: str) -> Select[tuple[object, ...]]:
        return select(*_ALL_COLUMNS).where(event_table.c.tenant == tenant)

    async def insert_new(self, events: Sequence[NewEvent]) -> dict[tuple[str, str], int]:
        """Insert events whose (tenant, id) is not stored yet; return the new rows' seq by key.

        Keys already present (a re-post, or a concurrent writer in another process) are left
        untouched; the caller compares their content.

        This is the hottest statement of the service: on SQLite (inline) and PostgreSQL it goes
        to the driver directly with one multi-row statement, skipping SQLAlchemy's per-row
        parameter processing, which cost more than the insert itself.
        """
        if not events:
            return {}
        backend = backend_of(self.conn)
        timestamp = backend.timestamp
        rows = [_driver_row(event, timestamp) for event in events]
        returned = await backend.bulk(self.conn, INSERT_NEW, rows)
        return {(tenant, event_id): seq for seq, tenant, event_id in returned}

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


_INSERT_COLUMNS = (
    "tenant",
    "id",
    "entity_id",
    "entity_name",
    "event_type",
    "event_source",
    "operation",
    "entity_type",
    "payload_entity_id",
    "key_attributes",
    "payload_b64",
    "fault_b64",
    "content_hash",
    "received_at",
)
INSERT_NEW = BulkStatement(
    "events.insert_new",
    columns=len(_INSERT_COLUMNS),
    sqlite=(
        f"INSERT INTO event ({', '.join(_INSERT_COLUMNS)}) VALUES {{rows}} "
        "ON CONFLICT (tenant, id) DO NOTHING RETURNING seq, tenant, id"
    ),
    postgres=(
        f"INSERT INTO event ({', '.join(_INSERT_COLUMNS)}) "
        "SELECT * FROM unnest($1::varchar[], $2::varchar[], $3::varchar[], $4::varchar[], "
        "$5::varchar[], $6::varchar[], $7::varchar[], $8::varchar[], $9::varchar[], "
        "$10::json[], $11::text[], $12::text[], $13::varchar[], $14::timestamptz[]) "
        "ON CONFLICT (tenant, id) DO NOTHING RETURNING seq, tenant, id"
    ),
)


def _driver_row(event: NewEvent, timestamp: Callable[[datetime], object]) -> tuple[object, ...]:
    """The values of ``_INSERT_COLUMNS``, JSON already encoded."""
    return (
        event.tenant,
        event.id,
        event.entity_id,
        event.entity_name,
        event.event_type,
        event.event_source,
        event.operation,
        event.entity_type,
        event.payload_entity_id,
        # pydantic-core's encoder: a sixth of json.dumps's cost, per event of every group.
        None if event.key_attributes is None else to_json(event.key_attributes).decode(),
        event.payload_b64,
        event.fault_b64,
        event.content_hash,
        timestamp(event.received_at),
    )
