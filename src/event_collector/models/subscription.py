"""The subscription table (owned by the subscriptions domain); deliveries: models/delivery.py."""

from sqlalchemy import Boolean, Column, Index, PrimaryKeyConstraint, String, Table, Text

from event_collector.kit.db import JSONType, UTCDateTime, metadata

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
    # The destination without its secrets: queueUrl/topicArn/url, region, accessKey.
    Column("destination", JSONType, nullable=False),
    # accessSecret or webhook secret, sealed by kit.crypto.SecretBox (never plaintext).
    Column("secret_sealed", Text(), nullable=True),
    # A webhook's custom headers (names and values, as JSON), sealed like the secret: they
    # carry credentials (Authorization, X-Api-Key, ...). NULL when there are none.
    Column("headers_sealed", Text(), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    # Set while every attempt fails; cleared by a success. Drives auto-deactivation.
    Column("failing_since", UTCDateTime(), nullable=True),
    Column("deactivated_at", UTCDateTime(), nullable=True),
    Column("deactivated_reason", Text(), nullable=True),
    PrimaryKeyConstraint("tenant", "id", name="pk_subscription"),
    Index("ix_subscription_tenant_entity_active", "tenant", "entity_type", "active"),
)
