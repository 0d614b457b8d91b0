"""The delivery tables (owned by the delivery domain): one row per message to send to one
subscription, and the log of its attempts."""

from sqlalchemy import (
    Column,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Table,
    Text,
)

from event_collector.kit.db import BigIntPK, JSONType, UTCDateTime, metadata

delivery_table = Table(
    "delivery",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant", String(128), nullable=False),
    Column("subscription_id", String(255), nullable=False),
    # The message, as it is sent: whatever produced it (an event, a notification job) is not
    # needed to deliver it.
    # The entity type of the message (an event's, or NOTIFICATION).
    Column("entity_type", String(32), nullable=False),
    # The body, JSON text, sent byte for byte.
    Column("body", Text(), nullable=False),
    # Message attributes (SQS/SNS) by name, every value a non-empty string.
    Column("attributes", JSONType, nullable=False),
    # FIFO MessageGroupId: messages with the same key stay in order.
    Column("ordering_key", String(128), nullable=False),
    # FIFO MessageDeduplicationId; the webhook-id header.
    Column("deduplication_id", String(128), nullable=False),
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
    Index("ix_delivery_status_next_attempt_at", "status", "next_attempt_at"),
    Index("ix_delivery_tenant_subscription_created", "tenant", "subscription_id", "created_at"),
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
    # The console's attempts per hour (the tenant's last 24 hours), not a whole-table scan.
    Index("ix_delivery_attempt_tenant_attempted_at", "tenant", "attempted_at"),
)
