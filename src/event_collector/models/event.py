from sqlalchemy import BigInteger, Column, Index, String, Table, Text, UniqueConstraint, text

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
    # PostgreSQL: the writing transaction's id (a server default, 0 for rows older than the
    # column), so listings can expose only rows every earlier transaction has finished with
    # (events.feed). NULL on SQLite, whose writes are serial.
    Column("txid", BigInteger(), nullable=True),
    UniqueConstraint("tenant", "id", name="uq_event_tenant_id"),
    Index("ix_event_tenant_seq", "tenant", "seq"),
    Index("ix_event_tenant_entity_id", "tenant", "entity_id"),
    # The console's events per hour (the tenant's last 24 hours): an index-only range scan.
    Index("ix_event_tenant_received_at", "tenant", "received_at"),
    Index(
        "ix_event_tenant_txid_seq",
        "tenant",
        "txid",
        "seq",
        postgresql_where=text("txid IS NOT NULL"),
        sqlite_where=text("txid IS NOT NULL"),
    ),
)
