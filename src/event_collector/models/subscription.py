from sqlalchemy import (
    Boolean,
    Column,
    ForeignKeyConstraint,
    Index,
    Integer,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

from event_collector.kit.db import BigIntPK, JSONType, UTCDateTime, metadata

subscription_table = Table(
    "subscription",
    metadata,
    Column("tenant", String(128), nullable=False),
    Column("id", String(255), nullable=False),
    Column("entity_type", String(32), nullable=False),
    Column("active", Boolean(), nullable=False),
    Column("subscribe_create", Boolean(), nullable=False),
    Column("subscribe_change", Boolean(), nullable=False),
    Column("subscribe_delete", Boolean(), nullable=False),
    # SQS | SNS | WEBHOOK
    Column("destination_type", String(16), nullable=False),
    # The destination without its secret: queueUrl/topicArn/url, region, accessKey, headers.
    Column("destination", JSONType, nullable=False),
    # accessSecret or webhook secret, sealed by kit.crypto.SecretBox (never plaintext).
    Column("secret_sealed", Text(), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    # Set while every attempt fails; cleared by a success. Drives auto-deactivation.
    Column("failing_since", UTCDateTime(), nullable=True),
    Column("deactivated_at", UTCDateTime(), nullable=True),
    Column("deactivated_reason", Text(), nullable=True),
    PrimaryKeyConstraint("tenant", "id", name="pk_subscription"),
    Index("ix_subscription_tenant_entity_active", "tenant", "entity_type", "active"),
)

delivery_table = Table(
    "delivery",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant", String(128), nullable=False),
    Column("subscription_id", String(255), nullable=False),
    Column("event_seq", BigIntPK, nullable=False),
    # pending | delivered | failed  (failed = dead letter, replayable)
    Column("status", String(16), nullable=False),
    Column("attempts", Integer(), nullable=False, default=0),
    Column("next_attempt_at", UTCDateTime(), nullable=False),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_expires_at", UTCDateTime(), nullable=True),
    Column("last_error", Text(), nullable=True),
    Column("last_status_code", Integer(), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("delivered_at", UTCDateTime(), nullable=True),
    ForeignKeyConstraint(
        ["tenant", "subscription_id"],
        ["subscription.tenant", "subscription.id"],
        name="fk_delivery_subscription",
        ondelete="CASCADE",
    ),
    ForeignKeyConstraint(["event_seq"], ["event.seq"], name="fk_delivery_event_seq_event"),
    Index("ix_delivery_status_next_attempt_at", "status", "next_attempt_at"),
    Index("ix_delivery_tenant_subscription_created", "tenant", "subscription_id", "created_at"),
    # Deleting an event checks that no delivery points at it (the foreign key, retention).
    Index("ix_delivery_event_seq", "event_seq"),
)

delivery_attempt_table = Table(
    "delivery_attempt",
    metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("delivery_id", String(36), nullable=False),
    Column("tenant", String(128), nullable=False),
    Column("attempt", Integer(), nullable=False),
    Column("attempted_at", UTCDateTime(), nullable=False),
    # success | retry | failed
    Column("outcome", String(16), nullable=False),
    Column("status_code", Integer(), nullable=True),
    Column("error", Text(), nullable=True),
    Column("latency_ms", Integer(), nullable=False),
    ForeignKeyConstraint(
        ["delivery_id"],
        ["delivery.id"],
        name="fk_delivery_attempt_delivery_id_delivery",
        ondelete="CASCADE",
    ),
    Index("ix_delivery_attempt_delivery_id", "delivery_id"),
)
