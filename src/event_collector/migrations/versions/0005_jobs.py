"""jobs: notification jobs and their runs

Revision ID: 0005
Revises: 0003
Create Date: 2026-11-30 02:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import event_collector.kit.db

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_JSON = sa.JSON().with_variant(sa.JSON(none_as_null=True), "sqlite")
_BIGINT_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _utc() -> event_collector.kit.db.UTCDateTime:
    return event_collector.kit.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "job",
        sa.Column("seq", _BIGINT_PK, autoincrement=True, nullable=False),
        sa.Column("tenant", sa.String(length=128), nullable=False),
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("notification", sa.String(length=32), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("is_scheduled", sa.Boolean(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("job_parameters", _JSON, nullable=False),
        sa.Column("number_of_items_in_email", sa.Integer(), nullable=False),
        sa.Column("schedule", sa.Text(), nullable=True),
        sa.Column("schedule_expression", sa.Text(), nullable=True),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("template_id", sa.String(length=255), nullable=True),
        sa.Column("next_run_at", _utc(), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.Column("deleted_at", _utc(), nullable=True),
        sa.PrimaryKeyConstraint("seq", name="pk_job"),
        sa.UniqueConstraint("tenant", "id", name="uq_job_tenant_id"),
    )
    op.create_index("ix_job_next_run_at", "job", ["next_run_at"], unique=False)

    op.create_table(
        "job_run",
        sa.Column("seq", _BIGINT_PK, autoincrement=True, nullable=False),
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("tenant", sa.String(length=128), nullable=False),
        sa.Column("job_id", sa.String(length=255), nullable=False),
        sa.Column("trigger", sa.String(length=16), nullable=False),
        sa.Column("scheduled_for", _utc(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("started_at", _utc(), nullable=True),
        sa.Column("finished_at", _utc(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("counts", _JSON, nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("lease_until", _utc(), nullable=True),
        sa.ForeignKeyConstraint(
            ["tenant", "job_id"],
            ["job.tenant", "job.id"],
            name="fk_job_run_job",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("seq", name="pk_job_run"),
        sa.UniqueConstraint("id", name="uq_job_run_id"),
        sa.UniqueConstraint("tenant", "job_id", "scheduled_for", name="uq_job_run_occurrence"),
    )
    op.create_index("ix_job_run_status", "job_run", ["status"], unique=False)
    op.create_index(
        "ix_job_run_tenant_job_seq", "job_run", ["tenant", "job_id", "seq"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_job_run_tenant_job_seq", table_name="job_run")
    op.drop_index("ix_job_run_status", table_name="job_run")
    op.drop_table("job_run")
    op.drop_index("ix_job_next_run_at", table_name="job")
    op.drop_table("job")
