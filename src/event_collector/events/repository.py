"""Every query on the event table. Tenant scoping is applied here and nowhere else."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from pydantic_core import to_json
from sqlalchemy import (
    ColumnElement,
    Select,
    delete,
    func,
    or_,
    select,
    tuple_,
)

from event_collector.events.feed import FeedPosition
from event_collector.events.model import EventKinds, NewEvent, StoredEvent
from event_collector.kit.db import AnyConnection, Backend, BulkStatement, backend_of
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
        after: FeedPosition | None,
        limit: int,
        entity_type: str | None = None,
        entity_id: str | None = None,
        event_type: str | None = None,
        operation: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[tuple[StoredEvent, FeedPosition]]:
        """A page of the feed after ``after``, each event with its own position."""
        statement: Select[tuple[object, ...]] = select(*_ALL_COLUMNS, event_table.c.txid).where(
            event_table.c.tenant == tenant
        )
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
        backend = backend_of(self.conn)
        if backend.commits_out_of_order:
            if after is not None and after.txid is None:
                after = FeedPosition(await self._txid_of(tenant, after.seq), after.seq)
            statement = _commit_ordered_feed(statement, after, backend)
        else:
            if after is not None:
                statement = statement.where(event_table.c.seq > after.seq)
            statement = statement.order_by(event_table.c.seq)
        result = await self.conn.execute(statement.limit(limit))
        return [(StoredEvent.from_row(row), FeedPosition(row.txid or 0, row.seq)) for row in result]

    async def _txid_of(self, tenant: str, seq: int) -> int:
        """The transaction id of the event at ``seq`` (0 when it is gone): where a cursor from
        before the feed had transaction ids continues."""
        txid = await self.conn.scalar(
            select(event_table.c.txid).where(
                event_table.c.tenant == tenant, event_table.c.seq == seq
            )
        )
        return int(txid or 0)

    async def received_since(self, tenant: str, since: datetime) -> list[datetime]:
        """When each of the tenant's events since a time arrived (the console's chart)."""
        rows = await self.conn.execute(
            select(event_table.c.received_at).where(
                event_table.c.tenant == tenant, event_table.c.received_at >= since
            )
        )
        return [row[0] for row in rows]

    async def count(self, tenant: str | None) -> int:
        """How many events one tenant (or all) has stored."""
        statement = select(func.count()).select_from(event_table)
        if tenant is not None:
            statement = statement.where(event_table.c.tenant == tenant)
        return int((await self.conn.execute(statement)).scalar_one())

    async def iter_all(
        self, tenant: str | None, *, after_seq: int, limit: int
    ) -> list[StoredEvent]:
        """Events of one tenant (or all) in arrival order, for replays and rebuilds."""
        statement = select(*_ALL_COLUMNS).where(event_table.c.seq > after_seq)
        if tenant is not None:
            statement = statement.where(event_table.c.tenant == tenant)
        result = await self.conn.execute(statement.order_by(event_table.c.seq).limit(limit))
        return [StoredEvent.from_row(row) for row in result]

    # Retention (ops/retention.py runs the batches): across tenants by design, like the policy.

    async def count_purgeable(self, received_before: datetime, keep: EventKinds) -> int:
        """How many events retention may delete: received before the cutoff, not of ``keep``."""
        statement = select(func.count()).select_from(event_table)
        return int(await self.conn.scalar(statement.where(_purgeable(received_before, keep))) or 0)

    async def lock_purgeable(
        self, received_before: datetime, keep: EventKinds, limit: int
    ) -> list[int]:
        """The next ``limit`` purgeable events' seq, oldest first, locked until the transaction
        ends; rows another purger holds are skipped (PostgreSQL) rather than waited for."""
        statement = (
            select(event_table.c.seq)
            .where(_purgeable(received_before, keep))
            .order_by(event_table.c.seq)
            .limit(limit)
        )
        return list(await self.conn.scalars(backend_of(self.conn).skip_locked(statement)))

    async def delete(self, seqs: Sequence[int]) -> dict[str, int]:
        """Delete the events ``seqs``: the rows deleted, by table."""
        result = await self.conn.execute(delete(event_table).where(event_table.c.seq.in_(seqs)))
        return {event_table.name: int(result.rowcount)}


def _purgeable(received_before: datetime, keep: EventKinds) -> ColumnElement[bool]:
    not_kept = or_(
        event_table.c.entity_type.is_(None),
        event_table.c.entity_type.not_in(sorted(keep.entity_types)),
        event_table.c.operation.not_in(sorted(keep.operations)),
        event_table.c.event_type.in_(sorted(keep.except_event_types)),
    )
    # Deliveries carry their own message: an event's deliveries never keep it.
    return (event_table.c.received_at < received_before) & not_kept


def _commit_ordered_feed(
    statement: Select[tuple[object, ...]], after: FeedPosition | None, backend: Backend
) -> Select[tuple[object, ...]]:
    """The feed order where commits come out of sequence order (events.feed): by (writing
    transaction, seq), only rows below the backend's commit high-water mark. Index:
    ix_event_tenant_txid_seq."""
    txid, seq = event_table.c.txid, event_table.c.seq
    statement = backend.below_commit_mark(statement, txid)
    if after is not None:
        statement = statement.where(tuple_(txid, seq) > tuple_(after.txid, after.seq))
    return statement.order_by(txid, seq)


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
