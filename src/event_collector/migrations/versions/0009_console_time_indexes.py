"""console time indexes: a tenant's events and delivery attempts by time

The console dashboard reads the tenant's last 24 hours of event arrival times and delivery
attempts. Without these indexes PostgreSQL read every event of the tenant (then filtered on
``received_at``) and scanned the whole ``delivery_attempt`` table (all tenants); with them both
are range scans of the 24 hours asked for (the event one index-only). EXPLAIN figures:
docs/console.md, "Decisions".

Plain CREATE INDEX, as the other migrations (they run in one transaction, where CONCURRENTLY
cannot), but IF NOT EXISTS: on a large PostgreSQL table, whose build would hold off event writes
while it runs, the operator builds them beforehand CONCURRENTLY (docs/console.md) and this finds
them.

Revision ID: 0009_console_time_indexes
Revises: 0008_sealed_headers
Create Date: 2026-11-30 06:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0009_console_time_indexes"
down_revision: str | None = "0008_sealed_headers"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        "ix_event_tenant_received_at", "event", ["tenant", "received_at"], if_not_exists=True
    )
    op.create_index(
        "ix_delivery_attempt_tenant_attempted_at",
        "delivery_attempt",
        ["tenant", "attempted_at"],
        if_not_exists=True,
    )


def downgrade() -> None:
    op.drop_index("ix_delivery_attempt_tenant_attempted_at", table_name="delivery_attempt")
    op.drop_index("ix_event_tenant_received_at", table_name="event")
