"""notifications: send ledger, notifications (outbox), email settings

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 02:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import event_collector.kit.db

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
UTC = event_collector.kit.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "notification",
        sa.Column("id", BigIntPK, autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(length=128), nullable=False),
        sa.Column("job_id", sa.String(length=255), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column("notification_type", sa.String(length=16), nullable=False),
        sa.Column("customer_id", sa.String(length=255), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=True),
        sa.Column("customer", event_collector.kit.db.JSONType, nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=64), nullable=True),
        sa.Column("items", event_collector.kit.db.JSONType, nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("text_body", sa.Text(), nullable=True),
        sa.Column("html_body", sa.Text(), nullable=True),
        sa.Column("provider_message_id", sa.String(length=255), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", UTC, nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.Column("updated_at", UTC, nullable=False),
        sa.Column("sent_at", UTC, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification")),
        sa.UniqueConstraint(
            "tenant",
            "job_id",
            "run_id",
            "customer_id",
            "channel",
            name="uq_notification_run_customer",
        ),
    )
    with op.batch_alter_table("notification", schema=None) as batch_op:
        batch_op.create_index("ix_notification_tenant_id", ["tenant", "id"], unique=False)
        batch_op.create_index("ix_notification_tenant_run_id", ["tenant", "run_id"], unique=False)
        batch_op.create_index(
            "ix_notification_tenant_job_status",
            ["tenant", "job_id", "channel", "status"],
            unique=False,
        )
        batch_op.create_index(
            "ix_notification_tenant_customer_id", ["tenant", "customer_id"], unique=False
        )

    op.create_table(
        "notification_ledger",
        sa.Column("id", BigIntPK, autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(length=128), nullable=False),
        sa.Column("job_id", sa.String(length=255), nullable=False),
        sa.Column("customer_id", sa.String(length=255), nullable=False),
        sa.Column("item_id", sa.String(length=255), nullable=False),
        sa.Column("episode", sa.String(length=64), nullable=False),
        sa.Column("price_level", sa.Numeric(20, 6), nullable=True),
        sa.Column("run_id", sa.String(length=64), nullable=True),
        sa.Column("notification_id", BigIntPK, nullable=True),
        sa.Column("created_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_notification_ledger")),
        sa.UniqueConstraint(
            "tenant",
            "job_id",
            "customer_id",
            "item_id",
            "episode",
            name="uq_notification_ledger_key",
        ),
    )
    with op.batch_alter_table("notification_ledger", schema=None) as batch_op:
        batch_op.create_index(
            "ix_notification_ledger_tenant_notification_id",
            ["tenant", "notification_id"],
            unique=False,
        )

    op.create_table(
        "email_settings",
        sa.Column("tenant", sa.String(length=128), nullable=False),
        sa.Column("provider", sa.String(length=16), nullable=True),
        sa.Column("sender_email", sa.String(length=320), nullable=True),
        sa.Column("sender_name", sa.String(length=255), nullable=True),
        sa.Column("reply_to_email", sa.String(length=320), nullable=True),
        sa.Column("reply_to_name", sa.String(length=255), nullable=True),
        sa.Column("sendgrid_api_key_sealed", sa.Text(), nullable=True),
        sa.Column("updated_at", UTC, nullable=False),
        sa.PrimaryKeyConstraint("tenant", name=op.f("pk_email_settings")),
    )


def downgrade() -> None:
    op.drop_table("email_settings")
    with op.batch_alter_table("notification_ledger", schema=None) as batch_op:
        batch_op.drop_index("ix_notification_ledger_tenant_notification_id")
    op.drop_table("notification_ledger")
    with op.batch_alter_table("notification", schema=None) as batch_op:
        batch_op.drop_index("ix_notification_tenant_customer_id")
        batch_op.drop_index("ix_notification_tenant_job_status")
        batch_op.drop_index("ix_notification_tenant_run_id")
        batch_op.drop_index("ix_notification_tenant_id")
    op.drop_table("notification")
