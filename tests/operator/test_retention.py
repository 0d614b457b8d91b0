"""Retention (issue 13 item 8): old delivered deliveries, their attempts and unneeded events go,
in batches; undelivered deliveries and events the read model needs never do. A delivery carries
its own message, so an event's deliveries do not keep it."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import REGISTRY
from sqlalchemy import func, insert, select, update

from event_collector.kit.db import utcnow
from event_collector.models import (
    delivery_attempt_table,
    delivery_table,
    event_table,
    subscription_table,
)
from event_collector.ops.retention import RetentionPolicy, RetentionTask, purge
from tests.factories import event_body

DAY = timedelta(days=1)


@dataclass
class Seeded:
    """Rows of one tenant: event ids by role and delivery ids by role."""

    events: dict[str, str]
    deliveries: dict[str, str]


async def _seed(client, context, tenant) -> Seeded:
    """Events through the API, then backdated; deliveries written directly with the states and
    ages each rule is about."""
    roles = {
        "old_delivered": "ORDER",  # old, no read-model effect: goes (its delivery too)
        "old_undelivered": "ORDER",  # old: goes; its pending delivery carries the message, stays
        "old_read_model": "CUSTOMER",  # old, but the read model learns from it: stays
        "old_plain": "ORDER",  # old, no delivery, no read-model effect: goes
        "recent": "ORDER",  # too young: stays
    }
    events: dict[str, str] = {}
    for role, event_type in roles.items():
        body = event_body(event_type=event_type)
        response = await client.post("/api/v1/events", json=body, headers=tenant.headers)
        assert response.status_code == 201, response.text
        events[role] = body["id"]
    now = utcnow()
    async with context.db.write() as conn:
        await conn.execute(
            update(event_table)
            .where(event_table.c.tenant == tenant.name, event_table.c.id != events["recent"])
            .values(received_at=now - 100 * DAY)
        )
        await conn.execute(
            insert(subscription_table).values(
                tenant=tenant.name,
                id="sub-1",
                entity_type="ORDER",
                active=True,
                subscribe_create=True,
                subscribe_change=True,
                subscribe_delete=True,
                destination_type="WEBHOOK",
                destination={"url": "https://example.invalid/hook"},
                created_at=now - 100 * DAY,
                updated_at=now - 100 * DAY,
            )
        )
        deliveries = {
            # role: (event role, status, age in days, delivered)
            "old_delivered": ("old_delivered", "delivered", 40, True),
            "pending": ("old_undelivered", "pending", 40, False),
            "recent_delivered": ("recent", "delivered", 10, True),
            "old_failed": ("recent", "failed", 40, False),
        }
        delivery_ids: dict[str, str] = {}
        for role, (event_role, status, age, delivered) in deliveries.items():
            delivery_id = str(uuid.uuid4())
            delivery_ids[role] = delivery_id
            at = now - age * DAY
            await conn.execute(
                insert(delivery_table).values(
                    id=delivery_id,
                    tenant=tenant.name,
                    subscription_id="sub-1",
                    entity_type="ORDER",
                    body=f'{{"id": "{events[event_role]}"}}',
                    attributes={"event_id": events[event_role]},
                    ordering_key=f"{tenant.name}:ORDER:{event_role}",
                    deduplication_id=delivery_id,
                    status=status,
                    attempts=2,
                    next_attempt_at=at,
                    created_at=at,
                    delivered_at=at if delivered else None,
                )
            )
            for attempt in (1, 2):
                await conn.execute(
                    insert(delivery_attempt_table).values(
                        delivery_id=delivery_id,
                        tenant=tenant.name,
                        attempt=attempt,
                        attempted_at=at,
                        outcome="retry" if attempt == 1 else "success",
                        latency_ms=5,
                    )
                )
    return Seeded(events, delivery_ids)


async def _remaining(context, tenant) -> tuple[set[str], set[str], int]:
    async with context.db.read() as conn:
        events = set(
            await conn.scalars(select(event_table.c.id).where(event_table.c.tenant == tenant.name))
        )
        deliveries = set(
            await conn.scalars(
                select(delivery_table.c.id).where(delivery_table.c.tenant == tenant.name)
            )
        )
        attempts = await conn.scalar(
            select(func.count())
            .select_from(delivery_attempt_table)
            .where(delivery_attempt_table.c.tenant == tenant.name)
        )
    return events, deliveries, int(attempts or 0)


def _purged_metric(table: str) -> float:
    return REGISTRY.get_sample_value("ec_retention_purged_rows_total", {"table": table}) or 0.0


async def _clear_other_tenants_purgeable_rows(context) -> None:
    """Rows of other tests' tenants are not this test's to count: purge them first (they are
    purged by the same rules; this test only looks at its own tenant's rows)."""
    await purge(context.db, RetentionPolicy(30, 30, 90, 1000))


async def test_purge_deletes_only_what_nothing_needs(client, context, tenant) -> None:
    await _clear_other_tenants_purgeable_rows(context)
    seeded = await _seed(client, context, tenant)
    policy = RetentionPolicy(delivered_days=30, failed_days=0, events_days=90, batch_size=1)

    counted = await purge(context.db, policy, dry_run=True)
    # The three old ORDER events: deliveries carry their own message and never keep an event.
    assert counted == {"delivered deliveries": 1, "events": 3}
    assert await _remaining(context, tenant) == (
        set(seeded.events.values()),
        set(seeded.deliveries.values()),
        8,
    )

    before = {table: _purged_metric(table) for table in ("delivery", "delivery_attempt", "event")}
    reports: list[tuple[str, int, int]] = []
    purged = await purge(context.db, policy, progress=lambda *report: reports.append(report))
    assert purged == {"delivered deliveries": 1, "events": 3}

    events, deliveries, attempts = await _remaining(context, tenant)
    assert events == {seeded.events[role] for role in ("old_read_model", "recent")}
    # Pending and recent ones stay; dead letters are kept for replay by default.
    assert deliveries == {
        seeded.deliveries[role] for role in ("pending", "recent_delivered", "old_failed")
    }
    assert attempts == 6
    assert _purged_metric("delivery") - before["delivery"] == 1
    assert _purged_metric("delivery_attempt") - before["delivery_attempt"] == 2
    assert _purged_metric("event") - before["event"] == 3
    # batch_size 1: one progress report per batch, ending at the total.
    assert reports[0] == ("delivered deliveries", 0, 1)
    assert ("events", 3, 3) in reports

    # Dead letters go only when configured to.
    await purge(context.db, RetentionPolicy(30, 30, 0, 100))
    _, deliveries, attempts = await _remaining(context, tenant)
    assert deliveries == {seeded.deliveries[role] for role in ("pending", "recent_delivered")}
    assert attempts == 4


async def test_retention_off_purges_nothing(client, context, tenant) -> None:
    seeded = await _seed(client, context, tenant)
    assert await purge(context.db, RetentionPolicy(0, 0, 0, 100)) == {}
    events, deliveries, _ = await _remaining(context, tenant)
    assert events == set(seeded.events.values())
    assert deliveries == set(seeded.deliveries.values())


async def test_the_periodic_task_applies_the_policy(client, context, tenant) -> None:
    seeded = await _seed(client, context, tenant)
    task = RetentionTask(context.db, RetentionPolicy(30, 0, 0, 100), interval_seconds=0.05)
    await task.start()
    try:
        deadline = time.monotonic() + 30
        while task.runs < 1:
            assert time.monotonic() < deadline, "the retention task never ran"
            await asyncio.sleep(0.02)
    finally:
        await task.stop()
    _, deliveries, _ = await _remaining(context, tenant)
    assert seeded.deliveries["old_delivered"] not in deliveries
    assert seeded.deliveries["pending"] in deliveries


def _cli(
    database_url: str, key_dir: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("EC_")}
    environment.update(EC_DATABASE_URL=database_url, EC_KEY_DIR=str(key_dir), **env)
    return subprocess.run(
        [sys.executable, "-m", "event_collector", *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_purge_command_dry_run_then_purge(
    client, context, tenant, database_url, key_dir
) -> None:
    await _clear_other_tenants_purgeable_rows(context)
    seeded = await _seed(client, context, tenant)
    settings = {"EC_RETENTION_EVENTS_DAYS": "90"}
    dry = await asyncio.to_thread(_cli, database_url, key_dir, "purge", "--dry-run", **settings)
    assert dry.returncode == 0, dry.stderr
    assert "would delete 1 delivered deliveries, 3 events" in dry.stdout
    assert "Traceback" not in dry.stderr
    events, _, _ = await _remaining(context, tenant)
    assert events == set(seeded.events.values())

    done = await asyncio.to_thread(_cli, database_url, key_dir, "purge", **settings)
    assert done.returncode == 0, done.stderr
    assert "deleted 1 delivered deliveries, 3 events" in done.stdout
    events, _, _ = await _remaining(context, tenant)
    assert seeded.events["old_plain"] not in events
    assert seeded.events["old_read_model"] in events

    off = await asyncio.to_thread(
        _cli, database_url, key_dir, "purge", EC_RETENTION_DELIVERED_DAYS="0"
    )
    assert off.returncode == 0, off.stderr
    assert "retention is off" in off.stdout


@pytest.mark.parametrize("value", ["-1", "soon"])
def test_retention_settings_are_validated(value: str, tmp_path: Path) -> None:
    result = _cli(
        f"sqlite:///{tmp_path / 'x.db'}", tmp_path, "purge", EC_RETENTION_DELIVERED_DAYS=value
    )
    assert result.returncode == 2
    assert "EC_RETENTION_DELIVERED_DAYS" in result.stderr
