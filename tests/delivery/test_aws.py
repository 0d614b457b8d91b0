"""SQS and SNS through aiobotocore against a local moto server, with the subscription's own keys."""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio
from aiobotocore.session import get_session

from event_collector.runtime import Runtime
from tests.conftest import TenantFixture
from tests.delivery.helpers import attempts, create_subscription, post_events, route, wait_status

# The dispatcher runs in this module's app (tests/delivery/conftest.py).
DISPATCHER = True


REGION = "us-east-1"
KEYS = {"aws_access_key_id": "AKIDSUBSCRIBER", "aws_secret_access_key": "subscriber-secret"}


@pytest_asyncio.fixture
async def aws(moto_endpoint: str) -> AsyncIterator[dict[str, Any]]:
    session = get_session()
    async with (
        session.create_client("sqs", region_name=REGION, endpoint_url=moto_endpoint, **KEYS) as sqs,
        session.create_client("sns", region_name=REGION, endpoint_url=moto_endpoint, **KEYS) as sns,
    ):
        yield {"sqs": sqs, "sns": sns}


def sqs_destination(queue_url: str) -> dict[str, Any]:
    return {"queueUrl": queue_url, "region": REGION, "accessKey": KEYS["aws_access_key_id"]}


async def receive_all(sqs: Any, queue_url: str, expected: int) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    for _ in range(20):
        response = await sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            AttributeNames=["All"],
            WaitTimeSeconds=0,
        )
        messages += response.get("Messages", [])
        if len(messages) >= expected:
            break
    return messages


async def api_event(client: Any, tenant: TenantFixture, event_id: str) -> dict[str, Any]:
    response = await client.get(f"/api/v1/events/{event_id}", headers=tenant.headers)
    return dict(response.json())


async def test_event_reaches_standard_and_fifo_queues(
    context: Runtime, client: Any, tenant: TenantFixture, aws: dict[str, Any]
) -> None:
    sqs = aws["sqs"]
    name = f"q-{uuid.uuid4().hex[:8]}"
    standard = (await sqs.create_queue(QueueName=name))["QueueUrl"]
    fifo = (await sqs.create_queue(QueueName=f"{name}.fifo", Attributes={"FifoQueue": "true"}))[
        "QueueUrl"
    ]
    secret = KEYS["aws_secret_access_key"]
    sub_std = await create_subscription(
        context, tenant.name, "SQS", sqs_destination(standard), secret=secret
    )
    sub_fifo = await create_subscription(
        context, tenant.name, "SQS", sqs_destination(fifo), secret=secret
    )
    # 12 events: more than one SendMessageBatch (10 entries) per queue.
    events = await post_events(client, tenant, 12, payload={"sku": "A-1", "qty": 3})
    made = await route(context, tenant.name, [sub_std, sub_fifo], [e["id"] for e in events])
    await wait_status(context, list(made.values()), "delivered")

    expected = {e["id"]: await api_event(client, tenant, e["id"]) for e in events}
    for queue_url, sub, is_fifo in ((standard, sub_std, False), (fifo, sub_fifo, True)):
        messages = await receive_all(sqs, queue_url, 12)
        assert len(messages) == 12
        for message in messages:
            body = json.loads(message["Body"])
            event = expected[body["id"]]
            assert body["payload"] == {"sku": "A-1", "qty": 3}
            assert {k: v for k, v in body.items() if k != "payload"} == event
            attributes = {k: v["StringValue"] for k, v in message["MessageAttributes"].items()}
            assert attributes == {
                "tenant": tenant.name,
                "entity_type": "CUSTOMER",
                "operation": "CREATE",
                "event_type": "CUSTOMER",
                "event_id": body["id"],
            }
            if is_fifo:
                assert message["Attributes"]["MessageGroupId"] == (
                    f"{tenant.name}:CUSTOMER:{event['entity_id']}"
                )
                assert message["Attributes"]["MessageDeduplicationId"] == made[(sub, body["id"])]
    log = await attempts(context, made[(sub_fifo, events[0]["id"])])
    assert [a["outcome"] for a in log] == ["success"]
    assert log[0]["status_code"] == 200


async def test_sns_reaches_subscribed_queues_raw_and_enveloped(
    context: Runtime, client: Any, tenant: TenantFixture, aws: dict[str, Any]
) -> None:
    sqs, sns = aws["sqs"], aws["sns"]
    suffix = uuid.uuid4().hex[:8]
    topic_arn = (await sns.create_topic(Name=f"topic-{suffix}"))["TopicArn"]
    queues = {}
    for kind in ("raw", "envelope"):
        url = (await sqs.create_queue(QueueName=f"sns-{kind}-{suffix}"))["QueueUrl"]
        arn = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"]))[
            "Attributes"
        ]["QueueArn"]
        await sns.subscribe(
            TopicArn=topic_arn,
            Protocol="sqs",
            Endpoint=arn,
            Attributes={"RawMessageDelivery": "true" if kind == "raw" else "false"},
        )
        queues[kind] = url
    sub = await create_subscription(
        context,
        tenant.name,
        "SNS",
        {"topicArn": topic_arn, "region": REGION, "accessKey": KEYS["aws_access_key_id"]},
        secret=KEYS["aws_secret_access_key"],
    )
    events = await post_events(client, tenant, 3, payload={"name": "Ada"})
    made = await route(context, tenant.name, [sub], [e["id"] for e in events])
    await wait_status(context, list(made.values()), "delivered")
    ids = {e["id"] for e in events}

    raw = await receive_all(sqs, queues["raw"], 3)
    assert {json.loads(m["Body"])["id"] for m in raw} == ids
    for message in raw:
        body = json.loads(message["Body"])
        assert body["payload"] == {"name": "Ada"}
        assert message["MessageAttributes"]["event_id"]["StringValue"] == body["id"]
        assert message["MessageAttributes"]["tenant"]["StringValue"] == tenant.name

    enveloped = await receive_all(sqs, queues["envelope"], 3)
    assert len(enveloped) == 3
    for message in enveloped:
        envelope = json.loads(message["Body"])
        assert envelope["Type"] == "Notification"
        assert envelope["TopicArn"] == topic_arn
        body = json.loads(envelope["Message"])
        assert body["id"] in ids
        assert envelope["MessageAttributes"]["event_id"]["Value"] == body["id"]
        assert envelope["MessageAttributes"]["operation"]["Value"] == "CREATE"


async def test_missing_queue_and_topic_are_permanent_failures(
    context: Runtime, client: Any, tenant: TenantFixture, moto_endpoint: str
) -> None:
    missing_queue = await create_subscription(
        context,
        tenant.name,
        "SQS",
        sqs_destination(f"{moto_endpoint}/123456789012/does-not-exist-{uuid.uuid4().hex[:6]}"),
        secret=KEYS["aws_secret_access_key"],
    )
    missing_topic = await create_subscription(
        context,
        tenant.name,
        "SNS",
        {
            "topicArn": f"arn:aws:sns:{REGION}:123456789012:nope-{uuid.uuid4().hex[:6]}",
            "region": REGION,
            "accessKey": KEYS["aws_access_key_id"],
        },
        secret=KEYS["aws_secret_access_key"],
    )
    (event,) = await post_events(client, tenant)
    made = await route(context, tenant.name, [missing_queue, missing_topic], [event["id"]])
    rows = await wait_status(context, list(made.values()), "failed")
    for row in rows.values():
        assert row["attempts"] == 3
        assert "(permanent)" in row["last_error"]
    for sub in (missing_queue, missing_topic):
        result = (
            await client.post(f"/api/v1/event-subscription/{sub}/test", headers=tenant.headers)
        ).json()
        assert result["success"] is False
        assert result["error"]


async def test_test_endpoint_sends_to_sqs(
    context: Runtime, client: Any, tenant: TenantFixture, aws: dict[str, Any]
) -> None:
    sqs = aws["sqs"]
    url = (await sqs.create_queue(QueueName=f"test-{uuid.uuid4().hex[:8]}"))["QueueUrl"]
    sub = await create_subscription(
        context, tenant.name, "SQS", sqs_destination(url), secret=KEYS["aws_secret_access_key"]
    )
    response = await client.post(f"/api/v1/event-subscription/{sub}/test", headers=tenant.headers)
    assert response.status_code == 200
    assert response.json()["success"] is True
    (message,) = await receive_all(sqs, url, 1)
    body = json.loads(message["Body"])
    assert body["test"] is True
    assert message["MessageAttributes"]["test"]["StringValue"] == "true"


async def test_fifo_topic_gets_group_and_deduplication_ids(
    context: Runtime, client: Any, tenant: TenantFixture, aws: dict[str, Any]
) -> None:
    sqs, sns = aws["sqs"], aws["sns"]
    suffix = uuid.uuid4().hex[:8]
    topic_arn = (
        await sns.create_topic(Name=f"topic-{suffix}.fifo", Attributes={"FifoTopic": "true"})
    )["TopicArn"]
    url = (
        await sqs.create_queue(
            QueueName=f"from-sns-{suffix}.fifo", Attributes={"FifoQueue": "true"}
        )
    )["QueueUrl"]
    arn = (await sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"]))["Attributes"][
        "QueueArn"
    ]
    await sns.subscribe(
        TopicArn=topic_arn,
        Protocol="sqs",
        Endpoint=arn,
        Attributes={"RawMessageDelivery": "true"},
    )
    sub = await create_subscription(
        context,
        tenant.name,
        "SNS",
        {"topicArn": topic_arn, "region": REGION, "accessKey": KEYS["aws_access_key_id"]},
        secret=KEYS["aws_secret_access_key"],
    )
    events = await post_events(client, tenant, 2)
    made = await route(context, tenant.name, [sub], [e["id"] for e in events])
    await wait_status(context, list(made.values()), "delivered")
    messages = await receive_all(sqs, url, 2)
    assert len(messages) == 2
    by_id = {e["id"]: e for e in events}
    for message in messages:
        body = json.loads(message["Body"])
        assert message["Attributes"]["MessageGroupId"] == (
            f"{tenant.name}:CUSTOMER:{by_id[body['id']]['entity_id']}"
        )


async def test_seed_legacy_sns_form_through_the_api_reaches_a_subscribed_queue(
    context: Runtime, client: Any, tenant: TenantFixture, aws: dict[str, Any]
) -> None:
    """The seed's own example: `type: "SNS"` with an `sqs` block whose queueUrl is a topic ARN,
    created through the API, then an event posted through the API: the whole path."""
    sqs, sns = aws["sqs"], aws["sns"]
    suffix = uuid.uuid4().hex[:8]
    topic_arn = (await sns.create_topic(Name=f"legacy-{suffix}"))["TopicArn"]
    queue_url = (await sqs.create_queue(QueueName=f"legacy-{suffix}"))["QueueUrl"]
    queue_arn = (await sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"]))[
        "Attributes"
    ]["QueueArn"]
    await sns.subscribe(
        TopicArn=topic_arn,
        Protocol="sqs",
        Endpoint=queue_arn,
        Attributes={"RawMessageDelivery": "true"},
    )
    created = await client.post(
        "/api/v1/event-subscription",
        json={
            "active": True,
            "destination": {
                "sqs": {
                    "accessKey": KEYS["aws_access_key_id"],
                    "accessSecret": KEYS["aws_secret_access_key"],
                    "queueUrl": topic_arn,
                    "region": REGION,
                },
                "type": "SNS",
            },
            "entityType": "CUSTOMER",
            "subscribeChange": True,
            "subscribeCreate": True,
            "subscribeDelete": True,
        },
        headers=tenant.headers,
    )
    assert created.status_code == 201, created.text
    assert created.json()["destination"]["type"] == "SNS"
    events = await post_events(client, tenant, 2, payload={"id": "c-1"})
    made = await route(context, tenant.name, [created.json()["id"]], [e["id"] for e in events])
    await wait_status(context, list(made.values()), "delivered")
    received = await receive_all(sqs, queue_url, 2)
    assert {json.loads(m["Body"])["id"] for m in received} == {e["id"] for e in events}
