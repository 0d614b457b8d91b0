from sqlalchemy import (
    Boolean,
    Column,
    ForeignKeyConstraint,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from event_collector.kit.db import BigIntPK, JSONType, UTCDateTime, metadata

job_table = Table(
    "job",
    metadata,
    # Creation order: the cursor of job listings.
    Column("seq", BigIntPK, primary_key=True, autoincrement=True),
    Column("tenant", String(128), nullable=False),
    Column("id", String(255), nullable=False),
    # REMINDER | PRICE_DROP | LOW_STOCK | BACK_IN_STOCK
    Column("notification", String(32), nullable=False),
    Column("is_active", Boolean(), nullable=False),
    Column("is_scheduled", Boolean(), nullable=False),
    Column("deleted", Boolean(), nullable=False),
    Column("job_parameters", JSONType, nullable=False),
    Column("number_of_items_in_email", Integer(), nullable=False),
    # As sent: `schedule` (5-field cron) and `scheduleExpression` (wins when present).
    Column("schedule", Text(), nullable=True),
    Column("schedule_expression", Text(), nullable=True),
    Column("timezone", String(64), nullable=False),
    Column("template_id", String(255), nullable=True),
    # The next occurrence the scheduler has to fire (UTC); NULL while the job cannot run
    # (inactive, unscheduled, deleted). The scheduler's due query and wake-up time read it.
    Column("next_run_at", UTCDateTime(), nullable=True),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    Column("deleted_at", UTCDateTime(), nullable=True),
    UniqueConstraint("tenant", "id", name="uq_job_tenant_id"),
    Index("ix_job_next_run_at", "next_run_at"),
)

job_run_table = Table(
    "job_run",
    metadata,
    # Creation order: the cursor of run listings.
    Column("seq", BigIntPK, primary_key=True, autoincrement=True),
    Column("id", String(36), nullable=False, unique=True),
    Column("tenant", String(128), nullable=False),
    Column("job_id", String(255), nullable=False),
    # schedule | manual
    Column("trigger", String(16), nullable=False),
    # The occurrence a scheduled run is for; NULL for a manual run. Unique per job: however
    # many schedulers race for an occurrence, one run row exists for it.
    Column("scheduled_for", UTCDateTime(), nullable=True),
    # queued | running | succeeded | failed
    Column("status", String(16), nullable=False),
    Column("created_at", UTCDateTime(), nullable=False),
    Column("started_at", UTCDateTime(), nullable=True),
    Column("finished_at", UTCDateTime(), nullable=True),
    # How many times a scheduler started it (more than 1: taken over after a lease expired).
    Column("attempts", Integer(), nullable=False, default=0),
    Column("counts", JSONType, nullable=True),
    Column("error", Text(), nullable=True),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_until", UTCDateTime(), nullable=True),
    UniqueConstraint("tenant", "job_id", "scheduled_for", name="uq_job_run_occurrence"),
    ForeignKeyConstraint(
        ["tenant", "job_id"],
        ["job.tenant", "job.id"],
        name="fk_job_run_job",
        ondelete="CASCADE",
    ),
    Index("ix_job_run_status", "status"),
    Index("ix_job_run_tenant_job_seq", "tenant", "job_id", "seq"),
)
