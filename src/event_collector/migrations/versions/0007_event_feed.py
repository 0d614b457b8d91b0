"""event feed: the writing transaction's id on each event (PostgreSQL)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 02:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The top-level transaction id of the inserting transaction (xid8, 64 bits: never wraps).
_CURRENT_TXID = "(pg_current_xact_id()::text::bigint)"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        # Added with a constant default first: existing rows read 0 (all committed, so all
        # before any new row) without rewriting the table; new rows then get their own id.
        op.add_column(
            "event", sa.Column("txid", sa.BigInteger(), nullable=True, server_default="0")
        )
        op.alter_column("event", "txid", server_default=sa.text(_CURRENT_TXID))
    else:
        op.add_column("event", sa.Column("txid", sa.BigInteger(), nullable=True))
    op.create_index(
        "ix_event_tenant_txid_seq",
        "event",
        ["tenant", "txid", "seq"],
        unique=False,
        postgresql_where=sa.text("txid IS NOT NULL"),
        sqlite_where=sa.text("txid IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_event_tenant_txid_seq", table_name="event")
    # Natively, also on SQLite (3.35+): a batch operation would copy the table, and dropping
    # the old one fails the foreign keys of the deliveries pointing at its events.
    op.execute("ALTER TABLE event DROP COLUMN txid")
