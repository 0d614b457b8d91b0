from sqlalchemy import Column, ForeignKey, Index, String, Table, Text

from event_collector.kit.db import UTCDateTime, metadata

tenant_table = Table(
    "tenant",
    metadata,
    Column("id", String(128), primary_key=True),
    Column("created_at", UTCDateTime(), nullable=False),
)

oauth_client_table = Table(
    "oauth_client",
    metadata,
    Column("client_id", String(128), primary_key=True),
    Column(
        "tenant_id",
        String(128),
        ForeignKey("tenant.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("name", String(200), nullable=False),
    Column("secret_hash", String(200), nullable=False),
    Column("scopes", Text(), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("revoked_at", UTCDateTime(), nullable=True),
    Index("ix_oauth_client_tenant_id", "tenant_id"),
)
