from sqlalchemy import Column, Index, String, Table, Text, UniqueConstraint

from event_collector.kit.db import BigIntPK, JSONType, UTCDateTime, metadata

event_table = Table(
    "event",
    metadata,
    # Arrival order: the cursor of event listings and the key delivery rows point at.
    Column("seq", BigIntPK, primary_key=True, autoincrement=True),
    Column("tenant", String(128), nullable=False),
    Column("id", String(255), nullable=False),
    Column("entity_id", String(255), nullable=True),
    Column("entity_name", String(255), nullable=True),
    Column("event_type", String(32), nullable=False),
    Column("event_source", String(32), nullable=True),
    Column("operation", String(16), nullable=False),
    Column("entity_type", String(32), nullable=True),
    Column("payload_entity_id", String(255), nullable=True),
    Column("key_attributes", JSONType, nullable=True),
    Column("payload_b64", Text(), nullable=True),
    Column("fault_b64", Text(), nullable=True),
    Column("content_hash", String(64), nullable=False),
    Column("received_at", UTCDateTime(), nullable=False),
    UniqueConstraint("tenant", "id", name="uq_event_tenant_id"),
    Index("ix_event_tenant_seq", "tenant", "seq"),
    Index("ix_event_tenant_entity_id", "tenant", "entity_id"),
)
