"""deliveries carry their message

A delivery held a pointer to its event (``event_seq``) and the dispatcher rendered the event at
send time; now the row holds the message itself (body, attributes, entity type, ordering key,
deduplication id), so any message (an event's, a notification's) takes the same path. Existing
rows get the message their event renders to, exactly what the dispatcher would have sent; the
deduplication id (the webhook-id, the SQS/SNS FIFO deduplication id) stays the delivery id.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30 02:00:00
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from event_collector.delivery.messages import event_message
from event_collector.events.model import StoredEvent
from event_collector.kit.db import UTCDateTime

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BATCH = 1000
_MESSAGE_COLUMNS = ("entity_type", "body", "attributes", "ordering_key", "deduplication_id")

_TYPED: dict[str, Any] = {"key_attributes": sa.JSON(), "received_at": UTCDateTime()}
_event = sa.table(
    "event",
    *(sa.column(name, _TYPED.get(name)) for name in StoredEvent.__dataclass_fields__),
)
_delivery = sa.table(
    "delivery",
    sa.column("id"),
    sa.column("event_seq"),
    sa.column("entity_type"),
    sa.column("body"),
    sa.column("attributes", sa.JSON()),
    sa.column("ordering_key"),
    sa.column("deduplication_id"),
)


def upgrade() -> None:
    with op.batch_alter_table("delivery") as batch_op:
        batch_op.add_column(sa.Column("entity_type", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("body", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column(
                "attributes",
                sa.JSON().with_variant(sa.JSON(none_as_null=True), "sqlite"),
                nullable=True,
            )
        )
        batch_op.add_column(sa.Column("ordering_key", sa.String(length=128), nullable=True))
        batch_op.add_column(sa.Column("deduplication_id", sa.String(length=128), nullable=True))
    _fill_messages(op.get_bind())
    with _attempts_kept(op.get_bind()), op.batch_alter_table("delivery") as batch_op:
        batch_op.drop_constraint("fk_delivery_event_seq_event", type_="foreignkey")
        batch_op.drop_column("event_seq")
        for name in _MESSAGE_COLUMNS:
            batch_op.alter_column(name, existing_type=_type_of(name), nullable=False)


def downgrade() -> None:
    """Back to event pointers: a delivery whose message did not come from a stored event (a
    notification) has nothing to point at and is dropped."""
    bind = op.get_bind()
    with op.batch_alter_table("delivery") as batch_op:
        batch_op.add_column(
            sa.Column(
                "event_seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
            )
        )
    bind.execute(
        sa.text(
            "UPDATE delivery SET event_seq = (SELECT event.seq FROM event "
            "WHERE event.tenant = delivery.tenant AND event.id = "
            + _json_text(bind, "delivery.attributes", "event_id")
            + ")"
        )
    )
    bind.execute(sa.text("DELETE FROM delivery WHERE event_seq IS NULL"))
    with _attempts_kept(bind), op.batch_alter_table("delivery") as batch_op:
        batch_op.alter_column(
            "event_seq",
            existing_type=sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        )
        batch_op.create_foreign_key("fk_delivery_event_seq_event", "event", ["event_seq"], ["seq"])
        for name in _MESSAGE_COLUMNS:
            batch_op.drop_column(name)


def _fill_messages(bind: sa.Connection) -> None:
    """Each delivery gets its event's message, a batch of rows at a time."""
    after = ""
    while True:
        rows = bind.execute(
            sa.select(_delivery.c.id.label("delivery_id"), *_event.c)
            .select_from(_delivery.join(_event, _event.c.seq == _delivery.c.event_seq))
            .where(_delivery.c.id > after)
            .order_by(_delivery.c.id)
            .limit(_BATCH)
        ).all()
        if not rows:
            return
        updates = []
        for row in rows:
            event = StoredEvent.from_row(row)
            message = event_message(event)
            updates.append(
                {
                    "delivery_id": row.delivery_id,
                    "entity_type": event.entity_type or "",
                    "body": message.body,
                    "attributes": message.attributes,
                    "ordering_key": message.ordering_key,
                    "deduplication_id": row.delivery_id,
                }
            )
        bind.execute(
            _delivery.update()
            .where(_delivery.c.id == sa.bindparam("delivery_id"))
            .values(
                {
                    name: sa.bindparam(name, type_=_delivery.c[name].type)
                    for name in _MESSAGE_COLUMNS
                }
            ),
            updates,
        )
        after = rows[-1].delivery_id


class _attempts_kept:
    """SQLite rebuilds ``delivery`` to change it, and dropping the old table (foreign keys on,
    which a transaction cannot turn off) cascades to ``delivery_attempt``: the attempt log is
    copied aside and put back. PostgreSQL alters the table in place."""

    def __init__(self, bind: sa.Connection) -> None:
        self._bind = bind
        self._active = bind.dialect.name == "sqlite"

    def __enter__(self) -> None:
        if self._active:
            self._bind.execute(sa.text("DROP TABLE IF EXISTS _delivery_attempt_kept"))
            self._bind.execute(
                sa.text(
                    "CREATE TEMP TABLE _delivery_attempt_kept AS SELECT * FROM delivery_attempt"
                )
            )

    def __exit__(self, exc_type: object, *_: object) -> None:
        if self._active and exc_type is None:
            self._bind.execute(
                sa.text(
                    "INSERT INTO delivery_attempt SELECT * FROM _delivery_attempt_kept "
                    "WHERE delivery_id IN (SELECT id FROM delivery) "
                    "AND id NOT IN (SELECT id FROM delivery_attempt)"
                )
            )
            self._bind.execute(sa.text("DROP TABLE _delivery_attempt_kept"))


def _type_of(name: str) -> Any:
    return {
        "entity_type": sa.String(length=32),
        "body": sa.Text(),
        "attributes": sa.JSON().with_variant(sa.JSON(none_as_null=True), "sqlite"),
        "ordering_key": sa.String(length=128),
        "deduplication_id": sa.String(length=128),
    }[name]


def _json_text(bind: sa.Connection, column: str, key: str) -> str:
    if bind.dialect.name == "sqlite":
        return f"json_extract({column}, '$.{key}')"
    return f"({column} ->> '{key}')"
