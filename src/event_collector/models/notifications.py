"""Notification jobs' state: the send ledger, the notifications sent (or kept), email settings.

See docs/notifications.md. Every table is tenant-scoped.
"""

from __future__ import annotations

from sqlalchemy import (
    Column,
    Index,
    Integer,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from event_collector.kit.db import BigIntPK, JSONType, UTCDateTime, metadata

notification_table = Table(
    "notification",
    metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("tenant", String(128), nullable=False),
    Column("job_id", String(255), nullable=False),
    Column("run_id", String(64), nullable=True),
    # REMINDER | PRICE_DROP | LOW_STOCK | BACK_IN_STOCK
    Column("notification_type", String(16), nullable=False),
    Column("customer_id", String(255), nullable=False),
    Column("recipient", String(320), nullable=True),
    # The customer as the message shows them (id, ref, email, first/last name).
    Column("customer", JSONType, nullable=False),
    # outbox | smtp | sendgrid | message
    Column("channel", String(16), nullable=False),
    # pending | sending | sent | failed | skipped
    Column("status", String(16), nullable=False),
    Column("reason", String(64), nullable=True),
    # The items as the message shows them (title, link with UTM, prices, stock, ...).
    Column("items", JSONType, nullable=False),
    # Rendered content (outbox and SMTP); SendGrid renders from the items itself.
    Column("subject", Text(), nullable=True),
    Column("text_body", Text(), nullable=True),
    Column("html_body", Text(), nullable=True),
    Column("provider_message_id", String(255), nullable=True),
    Column("error", Text(), nullable=True),
    Column("attempts", Integer(), nullable=False, default=0),
    # Who is sending it now (a run taken over after its lease expired sends what is left).
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", UTCDateTime(), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("sent_at", UTCDateTime(), nullable=True),
    UniqueConstraint(
        "tenant", "job_id", "run_id", "customer_id", "channel", name="uq_notification_run_customer"
    ),
    Index("ix_notification_tenant_id", "tenant", "id"),
    Index("ix_notification_tenant_run_id", "tenant", "run_id"),
    Index("ix_notification_tenant_job_status", "tenant", "job_id", "channel", "status"),
    Index("ix_notification_tenant_customer_id", "tenant", "customer_id"),
)

notification_ledger_table = Table(
    "notification_ledger",
    metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("tenant", String(128), nullable=False),
    Column("job_id", String(255), nullable=False),
    Column("customer_id", String(255), nullable=False),
    Column("item_id", String(255), nullable=False),
    # What was notified about: "price:<level>", "restock:<episode>", "low:<episode>",
    # "reminder:<period>". The unique key makes a second claim of the same thing a no-op.
    Column("episode", String(64), nullable=False),
    # PRICE_DROP: the price level notified (a later drop must go below it).
    Column("price_level", Numeric(20, 6), nullable=True),
    Column("run_id", String(64), nullable=True),
    Column("notification_id", BigIntPK, nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    UniqueConstraint(
        "tenant", "job_id", "customer_id", "item_id", "episode", name="uq_notification_ledger_key"
    ),
    Index("ix_notification_ledger_tenant_notification_id", "tenant", "notification_id"),
)

email_settings_table = Table(
    "email_settings",
    metadata,
    Column("tenant", String(128), nullable=False),
    # outbox | smtp | sendgrid; null = the server default (EC_EMAIL_PROVIDER)
    Column("provider", String(16), nullable=True),
    Column("sender_email", String(320), nullable=True),
    Column("sender_name", String(255), nullable=True),
    Column("reply_to_email", String(320), nullable=True),
    Column("reply_to_name", String(255), nullable=True),
    # Sealed by kit.crypto.SecretBox (never plaintext).
    Column("sendgrid_api_key_sealed", Text(), nullable=True),
    Column("updated_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("tenant", name="pk_email_settings"),
)
