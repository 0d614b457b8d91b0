"""NOTIFICATION messages (DESIGN §6.5): a job with output message/both publishes one message per
customer through the delivery pipeline, to webhooks and SQS alike (real dispatcher, loopback
webhook receiver, moto), recorded in the ledger as channel ``message``."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
from aiobotocore.session import get_session
from fastapi import FastAPI

from event_collector.app import create_app
from event_collector.delivery.service import enqueue_messages
from event_collector.kit.settings import Settings
from tests.conftest import wait_until
from tests.delivery.conftest import (  # noqa: F401  (fixtures)
    WebhookReceiver,
    delivery_settings,
    moto_endpoint,
    webhook_receiver,
)
from tests.delivery.helpers import create_subscription, webhook_secret
from tests.notifications.helpers import Shop, job, many_shoppers, notifications, run

REGION = "us-east-1"
KEYS = {"aws_access_key_id": "AKIDSUBSCRIBER", "aws_secret_access_key": "subscriber-secret"}


@pytest_asyncio.fixture(scope="module")
async def app(delivery_settings: Settings) -> AsyncIterator[FastAPI]:  # noqa: F811
    """An app of this module's own whose dispatcher sends (see tests/delivery/conftest.py)."""
    application = create_app(delivery_settings)
    async with application.router.lifespan_context(application):
        yield application


async def _sqs_queue(moto: str) -> tuple[Any, Any, str]:
    session = get_session()
    context = session.create_client("sqs", region_name=REGION, endpoint_url=moto, **KEYS)
    sqs = await context.__aenter__()
    url = (await sqs.create_queue(QueueName=f"notif-{uuid.uuid4().hex[:8]}"))["QueueUrl"]
    return context, sqs, url


async def test_messages_reach_webhooks_and_queues_once(
    client,
    tenant,
    context,
    webhook_receiver: WebhookReceiver,  # noqa: F811
    moto_endpoint: str,  # noqa: F811
) -> None:
    path = f"/ok/notifications-{tenant.name}"
    await create_subscription(
        context,
        tenant.name,
        "WEBHOOK",
        {"url": webhook_receiver.url(path)},
        secret=webhook_secret(),
        entity_type="NOTIFICATION",
    )
    sqs_context, sqs, queue_url = await _sqs_queue(moto_endpoint)
    try:
        await create_subscription(
            context,
            tenant.name,
            "SQS",
            {"queueUrl": queue_url, "region": REGION, "accessKey": KEYS["aws_access_key_id"]},
            secret=KEYS["aws_secret_access_key"],
            entity_type="NOTIFICATION",
        )
        shop = Shop(client, tenant)
        await shop.product("p1")
        await shop.variant("v1")
        await shop.price("v1", "10.00")
        customers = await many_shoppers(shop, 3, "v1")
        await shop.price("v1", "10.00", "5.00")
        the_job = job("PRICE_DROP", output="both")
        deps = {"enqueue_messages": enqueue_messages, "wake_delivery": context.dispatcher.wake}
        outcome = await run(context, tenant, the_job, run_id="r1", **deps)
        assert outcome.counts["messages"] == 3

        await wait_until(
            lambda: len(webhook_receiver.for_path(path)) >= 3, "the webhook got 3 messages"
        )
        bodies = [r.json() for r in webhook_receiver.for_path(path)]
        assert sorted(b["customer"]["id"] for b in bodies) == customers
        body = bodies[0]
        assert body["event"] == {"type": "PRICE_DROP"}
        assert body["id"].startswith("notification:job-1:r1:")
        [product] = body["products"]
        assert product["price"] == {
            "currencyCode": "AUD",
            "price": "10.00",
            "salePrice": "5.00",
            "oldPrice": "10.00",
        }
        assert product["wishlist"]["itemId"] == f"{body['customer']['id']}-v1"
        assert "utm_campaign=spring" in product["link"]
        assert body["job"] == {"id": "job-1", "campaign_id": "spring", "utm_medium": "email"}
        assert webhook_receiver.for_path(path)[0].headers["webhook-signature"].startswith("v1,")

        received: list[dict[str, Any]] = []
        for _ in range(20):  # long polls: each waits up to a second for messages
            response = await sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=10,
                MessageAttributeNames=["All"],
                WaitTimeSeconds=1,
            )
            received.extend(response.get("Messages", []))
            if len(received) >= 3:
                break
        assert sorted(json.loads(m["Body"])["customer"]["id"] for m in received) == customers
        attributes = received[0]["MessageAttributes"]
        assert attributes["entity_type"]["StringValue"] == "NOTIFICATION"
        assert attributes["event_type"]["StringValue"] == "PRICE_DROP"

        ledger = await notifications(client, tenant, run_id="r1")
        assert sorted(n["channel"] for n in ledger) == ["message"] * 3 + ["outbox"] * 3
        assert {n["status"] for n in ledger} == {"sent"}

        # A rerun publishes nothing new.
        again = await run(context, tenant, the_job, run_id="r2", **deps)
        assert again.counts["messages"] == 0
    finally:
        await sqs_context.__aexit__(None, None, None)


async def test_message_only_output_sends_no_email(client, tenant, context) -> None:
    shop = Shop(client, tenant)
    await shop.product("p1")
    await shop.variant("v1")
    await shop.price("v1", "10.00")
    await many_shoppers(shop, 2, "v1")
    await shop.price("v1", "10.00", "5.00")
    the_job = job("PRICE_DROP", output="message")
    preview = await run(context, tenant, the_job, dry_run=True)
    assert [m["channels"] for m in preview.messages] == [["message"], ["message"]]
    assert "subject" not in preview.messages[0]
    assert preview.messages[0]["message"]["event"] == {"type": "PRICE_DROP"}
    outcome = await run(context, tenant, the_job, run_id="r1", enqueue_messages=enqueue_messages)
    assert outcome.counts["messages"] == 2
    stored = await notifications(client, tenant)
    assert [n["channel"] for n in stored] == ["message", "message"]
