"""A slow or dead destination never delays the others; breakers and auto-deactivation."""

from __future__ import annotations

import uuid
from typing import Any

from prometheus_client import REGISTRY
from sqlalchemy import select

from event_collector.models import subscription_table
from event_collector.runtime import Runtime
from tests.conftest import TenantFixture, wait_until
from tests.delivery.conftest import WebhookReceiver
from tests.delivery.helpers import (
    create_subscription,
    deliveries,
    post_events,
    route,
    wait_status,
)

# The dispatcher runs in this module's app (tests/delivery/conftest.py).
DISPATCHER = True


async def test_slow_and_dead_destinations_do_not_delay_a_healthy_one(
    context: Runtime,
    client: Any,
    tenant: TenantFixture,
    webhook_receiver: WebhookReceiver,
    moto_endpoint: str,
) -> None:
    webhook_receiver.release.clear()
    tag = uuid.uuid4().hex[:8]
    slow = await create_subscription(
        context, tenant.name, "WEBHOOK", {"url": webhook_receiver.url(f"/slow/{tag}")}
    )
    closed_port = await create_subscription(
        context, tenant.name, "WEBHOOK", {"url": "http://127.0.0.1:9/closed"}
    )
    missing_queue = await create_subscription(
        context,
        tenant.name,
        "SQS",
        {
            "queueUrl": f"{moto_endpoint}/123456789012/missing-{tag}",
            "region": "us-east-1",
            "accessKey": "AKID",
        },
        secret="s",
    )
    healthy = await create_subscription(
        context, tenant.name, "WEBHOOK", {"url": webhook_receiver.url(f"/ok/{tag}")}
    )
    events = await post_events(client, tenant, 20)
    ids = [e["id"] for e in events]
    # The troubled destinations' deliveries are older: they are claimed first.
    troubled = await route(context, tenant.name, [slow, closed_port, missing_queue], ids[:8])
    good = await route(context, tenant.name, [healthy], ids)

    await wait_status(context, list(good.values()), "delivered", within=10)
    # Every healthy delivery is done while the slow destination still holds its requests.
    slow_ids = [v for (sub, _), v in troubled.items() if sub == slow]
    rows = await deliveries(context, slow_ids)
    assert all(r["status"] == "pending" and r["attempts"] == 0 for r in rows.values())
    assert webhook_receiver.for_path(f"/slow/{tag}") == []
    assert len(webhook_receiver.for_path(f"/ok/{tag}")) == 20

    webhook_receiver.release.set()
    await wait_status(context, slow_ids, "delivered", within=20)


def _metric(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_breaker_releases_work_and_a_failing_subscription_is_deactivated(
    context: Runtime, client: Any, tenant: TenantFixture
) -> None:
    labels = {"destination_type": "WEBHOOK", "state": "released"}
    released_before = _metric("ec_deliveries_total", labels)
    deactivated_before = _metric("ec_subscriptions_deactivated_total", {})
    dead = await create_subscription(
        context, tenant.name, "WEBHOOK", {"url": "http://127.0.0.1:9/dead"}
    )
    events = await post_events(client, tenant, 12)
    made = await route(context, tenant.name, [dead], [e["id"] for e in events])

    async def deactivated() -> bool:
        async with context.db.read() as conn:
            row = (
                await conn.execute(
                    select(subscription_table).where(
                        subscription_table.c.tenant == tenant.name,
                        subscription_table.c.id == dead,
                    )
                )
            ).one()
        return not row.active

    # EC_DELIVERY_DEACTIVATE_AFTER is 3 s in these tests.
    await wait_until(deactivated, "auto-deactivation", within=20)
    async with context.db.read() as conn:
        row = (
            await conn.execute(
                select(subscription_table).where(
                    subscription_table.c.tenant == tenant.name, subscription_table.c.id == dead
                )
            )
        ).one()
    assert row.deactivated_at is not None
    assert row.failing_since is not None
    assert row.deactivated_reason.startswith("Deactivated automatically: every delivery attempt")
    assert "connection failed" in row.deactivated_reason
    assert _metric("ec_subscriptions_deactivated_total", {}) >= deactivated_before + 1
    # The breaker gave claimed work back instead of hammering the dead destination.
    assert _metric("ec_deliveries_total", labels) > released_before
    # Deliveries of an inactive subscription wait (pending or dead-lettered), never sent.
    rows = await deliveries(context, list(made.values()))
    assert {r["status"] for r in rows.values()} <= {"pending", "failed"}


async def test_success_clears_the_failing_period(
    context: Runtime, client: Any, tenant: TenantFixture, webhook_receiver: WebhookReceiver
) -> None:
    sub = await create_subscription(
        context, tenant.name, "WEBHOOK", {"url": webhook_receiver.url("/flaky/1/clear")}
    )
    (event,) = await post_events(client, tenant)
    made = await route(context, tenant.name, [sub], [event["id"]])
    await wait_status(context, list(made.values()), "delivered")
    async with context.db.read() as conn:
        row = (
            await conn.execute(
                select(subscription_table).where(
                    subscription_table.c.tenant == tenant.name, subscription_table.c.id == sub
                )
            )
        ).one()
    assert row.failing_since is None
    assert row.active


async def test_metrics_are_exposed_without_tenant_labels(
    context: Runtime, client: Any, tenant: TenantFixture, webhook_receiver: WebhookReceiver
) -> None:
    sub = await create_subscription(
        context, tenant.name, "WEBHOOK", {"url": webhook_receiver.url("/ok/metrics")}
    )
    (event,) = await post_events(client, tenant)
    made = await route(context, tenant.name, [sub], [event["id"]])
    await wait_status(context, list(made.values()), "delivered")
    assert context.dispatcher is not None
    await context.dispatcher.refresh_metrics()
    text = (await client.get("/metrics")).text
    for name in (
        'ec_deliveries_total{destination_type="WEBHOOK",state="delivered"}',
        'ec_delivery_attempt_seconds_bucket{destination_type="WEBHOOK"',
        "ec_delivery_queue_depth ",
        "ec_delivery_oldest_due_age_seconds ",
    ):
        assert name in text, name
    assert tenant.name not in text
    assert sub not in text


async def test_subscription_deleted_while_sending_is_harmless(
    context: Runtime,
    client: Any,
    tenant: TenantFixture,
    webhook_receiver: WebhookReceiver,
    caplog: Any,
) -> None:
    from sqlalchemy import delete

    webhook_receiver.release.clear()
    tag = uuid.uuid4().hex[:8]
    sub = await create_subscription(
        context, tenant.name, "WEBHOOK", {"url": webhook_receiver.url(f"/slow/{tag}")}
    )
    (event,) = await post_events(client, tenant)
    made = await route(context, tenant.name, [sub], [event["id"]])

    async def held() -> bool:
        with webhook_receiver.lock:
            return f"/slow/{tag}" in webhook_receiver.held

    await wait_until(held, "the receiver to hold the request", within=10)
    async with context.db.write() as conn:
        await conn.execute(
            delete(subscription_table).where(
                subscription_table.c.tenant == tenant.name, subscription_table.c.id == sub
            )
        )
    webhook_receiver.release.set()
    await wait_until(
        lambda: _received(webhook_receiver, f"/slow/{tag}"), "the slow request", within=10
    )
    dispatcher = context.dispatcher
    assert dispatcher is not None

    async def outcome_handled() -> bool:
        return not set(made.values()) & dispatcher._in_flight

    await wait_until(outcome_handled, "the outcome of the deleted delivery", within=10)
    assert await deliveries(context, list(made.values())) == {}
    assert "recording" not in caplog.text


async def _received(receiver: WebhookReceiver, path: str) -> bool:
    return bool(receiver.for_path(path))
