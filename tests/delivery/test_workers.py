"""Several dispatchers on one database; a worker that dies mid-batch loses nothing."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from event_collector.delivery import service
from event_collector.delivery.dispatcher import Dispatcher
from event_collector.delivery.messages import Message
from event_collector.kit.crypto import SecretBox
from event_collector.kit.db import Database, utcnow
from event_collector.kit.settings import Settings
from event_collector.models import delivery_attempt_table
from event_collector.runtime import Runtime
from tests.conftest import TenantFixture, wait_until
from tests.delivery.conftest import WebhookReceiver
from tests.delivery.helpers import (
    attempts,
    create_subscription,
    post_events,
    route,
    wait_status,
)

# The dispatcher runs in this module's app (tests/delivery/conftest.py).
DISPATCHER = True


async def test_dead_worker_lease_expires_and_another_delivers(
    context: Runtime, client: Any, tenant: TenantFixture, webhook_receiver: WebhookReceiver
) -> None:
    tag = uuid.uuid4().hex[:8]
    # Events first, so routing makes no rows for the subscription: this test writes its own.
    events = await post_events(client, tenant, 5)
    sub = await create_subscription(
        context, tenant.name, "WEBHOOK", {"url": webhook_receiver.url(f"/ok/dead/{tag}")}
    )
    now = utcnow()
    # Enqueue and claim in one transaction as a worker that then dies: nobody else can see the
    # rows unleased. Its lease (1.5 s) is never renewed.
    async with context.db.write() as conn:
        assert await service.enqueue_messages(
            conn,
            tenant.name,
            "CUSTOMER",
            "CREATE",
            [Message(json.dumps(e), {"event_id": e["id"]}, e["entity_id"]) for e in events],
        )
        claimed = await service.claim(
            conn,
            owner="dead-worker",
            now=utcnow(),
            lease_until=now + timedelta(seconds=1.5),
            limit=10_000,
        )
    ids = [c.id for c in claimed if c.subscription_id == sub]
    assert len(ids) == len(events)
    await asyncio.sleep(0.5)
    assert webhook_receiver.for_path(f"/ok/dead/{tag}") == []  # still leased by the dead one
    rows = await wait_status(context, ids, "delivered", within=15)
    assert all(r["attempts"] == 1 for r in rows.values())
    assert len(webhook_receiver.for_path(f"/ok/dead/{tag}")) == 5
    for delivery_id in ids:
        assert [a["outcome"] for a in await attempts(context, delivery_id)] == ["success"]


@pytest.fixture
def postgres_only(backend: str) -> None:
    if backend != "postgres":
        pytest.skip("several processes on one database is the PostgreSQL deployment")


@pytest.mark.usefixtures("postgres_only")
async def test_several_dispatchers_deliver_every_message_exactly_once(
    context: Runtime,
    client: Any,
    tenant: TenantFixture,
    webhook_receiver: WebhookReceiver,
    delivery_settings: Settings,
) -> None:
    tag = uuid.uuid4().hex[:8]
    subs = [
        await create_subscription(
            context, tenant.name, "WEBHOOK", {"url": webhook_receiver.url(f"/ok/x/{tag}/{i}")}
        )
        for i in range(2)
    ]
    settings = delivery_settings.model_copy(update={"delivery_batch_size": 25})
    workers = []
    for index in range(2):
        db = Database.from_settings(settings)  # a separate engine, as in another process
        worker = Dispatcher(
            settings, db, SecretBox.from_key_dir(settings.key_dir), owner=f"worker-{index}-{tag}"
        )
        await worker.start()
        workers.append((worker, db))
    try:
        events = await post_events(client, tenant, 300)
        made = await route(context, tenant.name, subs, [e["id"] for e in events])
        await wait_status(context, list(made.values()), "delivered", within=60)
    finally:
        for worker, db in workers:
            await worker.stop()
            await db.dispose()
    received = Counter(r.headers["webhook-id"] for r in webhook_receiver.for_path(f"/ok/x/{tag}/"))
    assert set(received) == set(made.values())
    assert max(received.values()) == 1  # exactly once in normal operation
    async with context.db.read() as conn:
        counts = Counter(
            (
                await conn.execute(
                    select(delivery_attempt_table.c.delivery_id).where(
                        delivery_attempt_table.c.delivery_id.in_(list(made.values()))
                    )
                )
            ).scalars()
        )
    assert len(counts) == 600
    assert set(counts.values()) == {1}


@pytest.mark.usefixtures("postgres_only")
async def test_listen_wakes_a_dispatcher_in_another_process(
    context: Runtime,
    client: Any,
    tenant: TenantFixture,
    delivery_settings: Settings,
    webhook_receiver: WebhookReceiver,
) -> None:
    settings = delivery_settings.model_copy(update={"delivery_idle_poll_seconds": 60.0})
    db = Database.from_settings(settings)
    worker = Dispatcher(settings, db, SecretBox.from_key_dir(settings.key_dir))
    await worker.start()
    try:

        async def listening() -> bool:
            return worker.waker.listening.is_set()

        await wait_until(listening, "the LISTEN connection", within=10)
        assert worker.notifications == 0
        # Routing NOTIFYs in the event's transaction when it made delivery rows, only then.
        await create_subscription(
            context, tenant.name, "WEBHOOK", {"url": webhook_receiver.url("/ok/listen")}
        )
        await post_events(client, tenant, 1, event_type="ORDER")  # the subscription: CUSTOMER
        await asyncio.sleep(0.3)
        assert worker.notifications == 0
        await post_events(client, tenant, 1)

        async def notified() -> bool:
            return worker.notifications >= 1

        await wait_until(notified, "a NOTIFY", within=5)
    finally:
        await worker.stop()
        await db.dispose()


async def test_worker_command_runs_and_stops_cleanly(
    delivery_settings: Settings, tmp_path: Path
) -> None:
    env = {
        **os.environ,
        "EC_DATABASE_URL": delivery_settings.database_url,
        "EC_KEY_DIR": str(delivery_settings.key_dir),
        "EC_AUTO_MIGRATE": "false",
        "EC_WEBHOOK_ALLOWED_HOSTS": "127.0.0.1",
    }
    process = await asyncio.create_subprocess_exec(
        str(Path(sys.executable).parent / "event-collector"),
        "worker",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert process.stderr is not None
    seen = b""
    while b"running" not in seen:
        line = await asyncio.wait_for(process.stderr.readline(), 30)
        assert line, seen
        seen += line
    assert b"delivery worker" in seen
    process.send_signal(signal.SIGTERM)
    assert await asyncio.wait_for(process.wait(), 30) == 0
