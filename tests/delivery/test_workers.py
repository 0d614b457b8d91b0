"""Several dispatchers on one database; a worker that dies mid-batch loses nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select

from event_collector.delivery import repository
from event_collector.delivery.dispatcher import Dispatcher
from event_collector.kit.crypto import SecretBox
from event_collector.kit.db import Database, utcnow
from event_collector.kit.settings import Settings
from event_collector.models import delivery_attempt_table, delivery_table, event_table
from event_collector.runtime import Runtime
from tests.conftest import TenantFixture
from tests.delivery.conftest import WebhookReceiver
from tests.delivery.helpers import attempts, create_subscription, post_events, route, wait_status


async def test_dead_worker_lease_expires_and_another_delivers(
    dcontext: Runtime, dclient: Any, dtenant: TenantFixture, webhook_receiver: WebhookReceiver
) -> None:
    tag = uuid.uuid4().hex[:8]
    # Events first, so routing makes no rows for the subscription: this test writes its own.
    events = await post_events(dclient, dtenant, 5)
    sub = await create_subscription(
        dcontext, dtenant.name, "WEBHOOK", {"url": webhook_receiver.url(f"/ok/dead/{tag}")}
    )
    now = utcnow()
    ids = [str(uuid.uuid4()) for _ in events]
    # Insert and claim in one transaction as a worker that then dies: nobody else can see the
    # rows unleased. Its lease (1.5 s) is never renewed.
    async with dcontext.db.write() as conn:
        seqs = dict(
            (
                await conn.execute(
                    select(event_table.c.id, event_table.c.seq).where(
                        event_table.c.tenant == dtenant.name,
                        event_table.c.id.in_([e["id"] for e in events]),
                    )
                )
            ).all()
        )
        await conn.execute(
            insert(delivery_table),
            [
                {
                    "id": delivery_id,
                    "tenant": dtenant.name,
                    "subscription_id": sub,
                    "event_seq": seqs[event["id"]],
                    "status": "pending",
                    "attempts": 0,
                    "next_attempt_at": now,
                    "created_at": now,
                }
                for delivery_id, event in zip(ids, events, strict=True)
            ],
        )
        claimed = await repository.claim(
            conn,
            owner="dead-worker",
            now=now,
            lease_until=now + timedelta(seconds=1.5),
            limit=10_000,
        )
    assert set(ids) <= {c.id for c in claimed}
    await asyncio.sleep(0.5)
    assert webhook_receiver.for_path(f"/ok/dead/{tag}") == []  # still leased by the dead one
    rows = await wait_status(dcontext, ids, "delivered", within=15)
    assert all(r["attempts"] == 1 for r in rows.values())
    assert len(webhook_receiver.for_path(f"/ok/dead/{tag}")) == 5
    for delivery_id in ids:
        assert [a["outcome"] for a in await attempts(dcontext, delivery_id)] == ["success"]


@pytest.fixture
def postgres_only(backend: str) -> None:
    if backend != "postgres":
        pytest.skip("several processes on one database is the PostgreSQL deployment")


@pytest.mark.usefixtures("postgres_only")
async def test_several_dispatchers_deliver_every_message_exactly_once(
    dcontext: Runtime,
    dclient: Any,
    dtenant: TenantFixture,
    webhook_receiver: WebhookReceiver,
    delivery_settings: Settings,
) -> None:
    tag = uuid.uuid4().hex[:8]
    subs = [
        await create_subscription(
            dcontext, dtenant.name, "WEBHOOK", {"url": webhook_receiver.url(f"/ok/x/{tag}/{i}")}
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
        events = await post_events(dclient, dtenant, 300)
        made = await route(dcontext, dtenant.name, subs, [e["id"] for e in events])
        await wait_status(dcontext, list(made.values()), "delivered", within=60)
    finally:
        for worker, db in workers:
            await worker.stop()
            await db.dispose()
    received = Counter(r.headers["webhook-id"] for r in webhook_receiver.for_path(f"/ok/x/{tag}/"))
    assert set(received) == set(made.values())
    assert max(received.values()) == 1  # exactly once in normal operation
    async with dcontext.db.read() as conn:
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
    dcontext: Runtime,
    dclient: Any,
    dtenant: TenantFixture,
    delivery_settings: Settings,
    webhook_receiver: WebhookReceiver,
) -> None:
    settings = delivery_settings.model_copy(update={"delivery_idle_poll_seconds": 60.0})
    db = Database.from_settings(settings)
    worker = Dispatcher(settings, db, SecretBox.from_key_dir(settings.key_dir))
    await worker.start()
    try:

        async def listening() -> bool:
            return worker.notifications == 0 and len(worker._tasks) == 4

        await asyncio.sleep(0.5)  # let the LISTEN connection come up
        assert await listening()
        # Routing NOTIFYs in the event's transaction when it made delivery rows, only then.
        await create_subscription(
            dcontext, dtenant.name, "WEBHOOK", {"url": webhook_receiver.url("/ok/listen")}
        )
        await post_events(dclient, dtenant, 1, event_type="ORDER")  # the subscription: CUSTOMER
        await asyncio.sleep(0.3)
        assert worker.notifications == 0
        await post_events(dclient, dtenant, 1)
        for _ in range(100):
            if worker.notifications:
                break
            await asyncio.sleep(0.02)
        assert worker.notifications >= 1
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
