"""Migration 0004: deliveries in every state, made at revision 0003 (event pointers), carry their
event's message afterwards, keep their state and attempt log, and are then delivered."""

from __future__ import annotations

import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI

from event_collector.app import create_app
from event_collector.delivery import service
from event_collector.delivery.messages import event_message
from event_collector.events.model import NewEvent, StoredEvent
from event_collector.events.schemas import EventIn
from event_collector.kit import migrate
from event_collector.kit.db import Database, UTCDateTime, metadata, utcnow
from event_collector.models import (
    delivery_attempt_table,
    event_table,
    subscription_table,
    tenant_table,
)
from event_collector.models import delivery_table as delivery_now
from tests.conftest import make_settings, wait_until
from tests.delivery.conftest import DELIVERY_OVERRIDES, WebhookReceiver
from tests.delivery.helpers import wait_status
from tests.factories import event_body

# The delivery table as revision 0003 left it.
delivery_0003 = sa.table(
    "delivery",
    sa.column("id"),
    sa.column("tenant"),
    sa.column("subscription_id"),
    sa.column("event_seq"),
    sa.column("status"),
    sa.column("attempts"),
    sa.column("next_attempt_at", UTCDateTime()),
    sa.column("lease_owner"),
    sa.column("lease_expires_at", UTCDateTime()),
    sa.column("last_error"),
    sa.column("last_status_code"),
    sa.column("created_at", UTCDateTime()),
    sa.column("delivered_at", UTCDateTime()),
)

# state → (delivery columns, outcomes of its logged attempts)
STATES: dict[str, tuple[dict[str, Any], list[str]]] = {
    "new": ({"status": "pending", "attempts": 0}, []),
    "retrying": ({"status": "pending", "attempts": 1, "last_error": "HTTP 503"}, ["retry"]),
    "leased by a dead worker": (
        {"status": "pending", "attempts": 0, "lease_owner": "gone:1:dead"},
        [],
    ),
    "delivered": ({"status": "delivered", "attempts": 1, "last_status_code": 204}, ["success"]),
    "dead letter": (
        {"status": "failed", "attempts": 3, "last_error": "HTTP 500"},
        ["retry", "retry", "failed"],
    ),
}


async def test_deliveries_in_every_state_carry_their_message_after_0004(
    empty_database_url: str,
    key_dir: Path,
    moto_endpoint: str,
    webhook_receiver: WebhookReceiver,
) -> None:
    settings = make_settings(
        empty_database_url, key_dir, aws_endpoint_url=moto_endpoint, **DELIVERY_OVERRIDES
    )
    db = Database.from_settings(settings)
    try:
        await migrate.upgrade(db, "0003")
        tenant, subscription_id, path = "t-migrate", "sub-migrate", f"/ok/{uuid.uuid4().hex}"
        now = utcnow()
        events = [
            NewEvent.from_input(
                tenant,
                EventIn.model_validate(event_body(payload={"state": state, "text": "é ✓"})),
                now,
            )
            for state in STATES
        ]
        async with db.write() as conn:
            await conn.execute(sa.insert(tenant_table).values(id=tenant, created_at=now))
            await conn.execute(
                sa.insert(subscription_table).values(
                    tenant=tenant,
                    id=subscription_id,
                    entity_type="CUSTOMER",
                    active=True,
                    subscribe_create=True,
                    subscribe_change=True,
                    subscribe_delete=True,
                    destination_type="WEBHOOK",
                    destination={"url": webhook_receiver.url(path), "headers": {}},
                    created_at=now,
                    updated_at=now,
                )
            )
            seqs = [
                (
                    await conn.execute(
                        sa.insert(event_table).values(**event.row()).returning(event_table.c.seq)
                    )
                ).scalar_one()
                for event in events
            ]
            ids: dict[str, str] = {}
            for (state, (columns, outcomes)), seq in zip(STATES.items(), seqs, strict=True):
                delivery_id = str(uuid.uuid4())
                ids[state] = delivery_id
                await conn.execute(
                    sa.insert(delivery_0003).values(
                        id=delivery_id,
                        tenant=tenant,
                        subscription_id=subscription_id,
                        event_seq=seq,
                        next_attempt_at=now - timedelta(seconds=1),
                        created_at=now - timedelta(minutes=5),
                        lease_expires_at=(
                            now - timedelta(seconds=30) if columns.get("lease_owner") else None
                        ),
                        delivered_at=now if columns["status"] == "delivered" else None,
                        **columns,
                    )
                )
                for number, outcome in enumerate(outcomes, 1):
                    await conn.execute(
                        sa.insert(delivery_attempt_table).values(
                            delivery_id=delivery_id,
                            tenant=tenant,
                            attempt=number,
                            attempted_at=now,
                            outcome=outcome,
                            latency_ms=5,
                        )
                    )

        await migrate.upgrade(db)
        assert await migrate.current_revision(db) == migrate.head_revision()
        assert await migrate.schema_drift(db, metadata) == []

        async with db.read() as conn:
            rows = {
                row.id: row
                for row in await conn.execute(
                    sa.select(delivery_now).where(delivery_now.c.tenant == tenant)
                )
            }
            logged = (
                await conn.execute(
                    sa.select(
                        delivery_attempt_table.c.delivery_id, delivery_attempt_table.c.outcome
                    )
                    .where(delivery_attempt_table.c.tenant == tenant)
                    .order_by(delivery_attempt_table.c.id)
                )
            ).all()
        assert set(rows) == set(ids.values())
        for (state, (columns, outcomes)), event, seq in zip(
            STATES.items(), events, seqs, strict=True
        ):
            row = rows[ids[state]]
            expected = event_message(StoredEvent.from_new(event, seq))
            assert row.body == expected.body, state
            assert row.attributes == expected.attributes, state
            assert row.ordering_key == expected.ordering_key, state
            assert row.deduplication_id == row.id, state
            assert row.entity_type == "CUSTOMER", state
            for name, value in columns.items():
                assert getattr(row, name) == value, (state, name)
            assert [o for d, o in logged if d == ids[state]] == outcomes, state
    finally:
        await db.dispose()

    # The upgraded database serves: every delivery (the finished ones replayed) is delivered,
    # with the body and webhook-id it carries.
    app: FastAPI = create_app(settings)
    async with app.router.lifespan_context(app):
        context = app.state.runtime
        async with context.db.write() as conn:
            await service.replay(
                conn,
                tenant,
                subscription_id,
                service.ReplayRequest(since=now - timedelta(days=1), status="all"),
                utcnow(),
            )
        context.dispatcher.wake()
        await wait_status(context, list(ids.values()), "delivered")

        async def all_received() -> bool:
            return {r.headers["webhook-id"] for r in webhook_receiver.for_path(path)} >= set(
                ids.values()
            )

        await wait_until(all_received, "every migrated delivery at the webhook", within=20)
    received = {r.headers["webhook-id"]: r.body.decode() for r in webhook_receiver.for_path(path)}
    for delivery_id, row in rows.items():
        assert received[delivery_id] == row.body
