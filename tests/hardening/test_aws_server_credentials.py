"""The server's own AWS credentials only for destinations the operator allows
(``EC_AWS_SERVER_CREDENTIALS_ALLOW``): refused with a 400 when a subscription is written, and by
the sender (a failed delivery naming why) for one stored otherwise. Real moto server."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from aiobotocore.session import get_session
from fastapi import FastAPI

from event_collector.app import create_app
from event_collector.kit.awsallow import ServerCredentialsPolicy
from event_collector.kit.db import utcnow
from event_collector.kit.errors import ConfigurationError, ValidationFailed
from event_collector.kit.settings import load_settings
from event_collector.runtime import Runtime
from event_collector.subscriptions import service
from event_collector.subscriptions.schemas import SubscriptionIn
from tests.conftest import TenantFixture, make_settings
from tests.delivery.conftest import DELIVERY_OVERRIDES, moto_endpoint  # noqa: F401
from tests.delivery.helpers import create_subscription, post_events, route, wait_status
from tests.subscriptions.helpers import (
    QUEUE_URL,
    TOPIC_ARN,
    URL,
    sns_destination,
    sqs_destination,
    subscription_body,
)

MOTO_ACCOUNT = "123456789012"
KEYS = {"aws_access_key_id": "AKIDOWNKEYS", "aws_secret_access_key": "own-secret"}


@pytest_asyncio.fixture(scope="module")
async def app(
    database_url: str,
    key_dir: Path,
    moto_endpoint: str,  # noqa: F811
) -> AsyncIterator[FastAPI]:
    """An app with a dispatcher, moto as AWS, and server credentials allowed for the moto
    account's queues named ``allowed-*`` only."""
    settings = make_settings(
        database_url,
        key_dir,
        aws_endpoint_url=moto_endpoint,
        aws_server_credentials_allow=[f"{moto_endpoint}/{MOTO_ACCOUNT}/allowed-"],
        **DELIVERY_OVERRIDES,
    )
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


def test_the_setting_syntax_and_its_start_up_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "EC_AWS_SERVER_CREDENTIALS_ALLOW",
        " 210987654321, acme=arn:aws:sns:eu-west-1:111122223333:shop-,"
        "https://sqs.eu-west-1.amazonaws.com/444455556666/ ",
    )
    policy = load_settings().aws_server_credentials
    topic = {"topicArn": "arn:aws:sns:eu-west-1:111122223333:shop-orders", "region": "eu-west-1"}
    assert policy.allows("acme", "SNS", topic)
    assert not policy.allows("globex", "SNS", topic)  # a tenant's entry is that tenant's only
    queue = {
        "queueUrl": "https://sqs.us-east-1.amazonaws.com/210987654321/q",
        "region": "us-east-1",
    }
    assert policy.allows("globex", "SQS", queue)  # by account id
    by_url = {
        "queueUrl": "https://sqs.eu-west-1.amazonaws.com/444455556666/x",
        "region": "eu-west-1",
    }
    assert policy.allows("globex", "SQS", by_url)
    assert not policy.allows("globex", "SQS", {**by_url, "queueUrl": QUEUE_URL})
    # an SQS ARN prefix matches the queue behind a URL
    arn_policy = ServerCredentialsPolicy(["arn:aws:sqs:eu-west-1:123456789012:ord"])
    assert arn_policy.allows("t", "SQS", {"queueUrl": QUEUE_URL, "region": "eu-west-1"})
    assert not arn_policy.allows("t", "SQS", {"queueUrl": QUEUE_URL, "region": "eu-west-2"})
    # empty (the default): nothing, and a subscription's own keys always go
    assert not ServerCredentialsPolicy([]).allows("t", "SNS", {"topicArn": TOPIC_ARN})
    assert (
        ServerCredentialsPolicy([]).refusal("t", "SNS", {"topicArn": TOPIC_ARN, "accessKey": "A"})
        is None
    )
    assert ServerCredentialsPolicy(["*"]).allows("t", "SNS", {"topicArn": TOPIC_ARN})

    for bad in ("12345", "acme=", "sqs.eu-west-1.amazonaws.com/1/", "bad tenant=123456789012"):
        monkeypatch.setenv("EC_AWS_SERVER_CREDENTIALS_ALLOW", bad)
        with pytest.raises(ConfigurationError, match="EC_AWS_SERVER_CREDENTIALS_ALLOW"):
            load_settings()


def _refused(response: httpx.Response, block: str) -> None:
    assert response.status_code == 400, response.text
    (error,) = response.json()["errors"]
    assert error["loc"] == ["destination", block, "accessKey"]
    assert "EC_AWS_SERVER_CREDENTIALS_ALLOW" in error["msg"]


async def test_writing_a_subscription_that_needs_server_credentials_is_refused_unless_allowed(
    client: httpx.AsyncClient,
    tenant: TenantFixture,
    moto_endpoint: str,  # noqa: F811
) -> None:
    no_keys = {"accessKey": ..., "accessSecret": ...}
    for destination, block in (
        (sqs_destination(**no_keys), "sqs"),
        (sns_destination(**no_keys), "sns"),
        ({"type": "SNS", "sqs": {"queueUrl": TOPIC_ARN}}, "sqs"),  # the seed's legacy form
        # the allowed prefix names moto's queues, not AWS's of the same account
        (
            sqs_destination(
                queueUrl=f"https://sqs.us-east-1.amazonaws.com/{MOTO_ACCOUNT}/allowed-x", **no_keys
            ),
            "sqs",
        ),
    ):
        body = subscription_body(destination=destination)
        _refused(await client.post(URL, json=body, headers=tenant.headers), block)
        missing = await client.get(f"{URL}/{body['id']}", headers=tenant.headers)
        assert missing.status_code == 404  # nothing stored

    allowed = subscription_body(
        destination=sqs_destination(
            queueUrl=f"{moto_endpoint}/{MOTO_ACCOUNT}/allowed-orders", region="us-east-1", **no_keys
        )
    )
    created = await client.post(URL, json=allowed, headers=tenant.headers)
    assert created.status_code == 201, created.text

    own = subscription_body(destination=sqs_destination())
    assert (await client.post(URL, json=own, headers=tenant.headers)).status_code == 201
    # dropping the keys of a stored one is refused too, and changes nothing
    dropped = await client.put(
        f"{URL}/{own['id']}",
        json={"destination": sqs_destination(accessKey=None, accessSecret=None)},
        headers=tenant.headers,
    )
    _refused(dropped, "sqs")
    kept = await client.get(f"{URL}/{own['id']}", headers=tenant.headers)
    assert kept.json()["destination"]["sqs"]["accessKey"] == sqs_destination()["sqs"]["accessKey"]


async def test_a_tenants_entry_allows_that_tenant_only(
    context: Runtime, tenant: TenantFixture, other_tenant: TenantFixture
) -> None:
    topic = "arn:aws:sns:us-east-2:123456789012:shop-events"
    policy = service.Policy(
        context.secrets,
        aws_server_credentials=ServerCredentialsPolicy(
            [f"{tenant.name}=arn:aws:sns:us-east-2:123456789012:shop-"]
        ),
    )
    body = SubscriptionIn.model_validate(
        subscription_body(destination={"type": "SNS", "sns": {"topicArn": topic}})
    )
    async with context.db.write() as conn:
        written = await service.create_subscription(conn, policy, tenant.name, body, utcnow())
    assert written.row["destination"]["accessKey"] is None
    with pytest.raises(ValidationFailed, match="EC_AWS_SERVER_CREDENTIALS_ALLOW"):
        async with context.db.write() as conn:
            await service.create_subscription(conn, policy, other_tenant.name, body, utcnow())


@pytest_asyncio.fixture
async def sqs(moto_endpoint: str) -> AsyncIterator[Any]:  # noqa: F811
    async with get_session().create_client(
        "sqs", region_name="us-east-1", endpoint_url=moto_endpoint, **KEYS
    ) as client:
        yield client


async def test_the_sender_refuses_a_stored_destination_outside_the_allow_list(
    context: Runtime,
    client: httpx.AsyncClient,
    tenant: TenantFixture,
    sqs: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the server's own credentials (what an instance role would provide)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDSERVER")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "server-secret")
    tag = uuid.uuid4().hex[:8]
    queues = {
        name: (await sqs.create_queue(QueueName=f"{name}-{tag}"))["QueueUrl"]
        for name in ("allowed", "denied")
    }
    # written straight to the table, as a row stored before the allow-list existed would be
    subs = {
        name: await create_subscription(
            context, tenant.name, "SQS", {"queueUrl": url, "region": "us-east-1", "accessKey": None}
        )
        for name, url in queues.items()
    }
    events = await post_events(client, tenant, 2)
    made = await route(context, tenant.name, list(subs.values()), [e["id"] for e in events])
    by_sub = {name: [made[(sub, e["id"])] for e in events] for name, sub in subs.items()}
    await wait_status(context, by_sub["allowed"], "delivered")
    failed = await wait_status(context, by_sub["denied"], "failed")
    for row in failed.values():
        # permanent (still retried on the schedule, in case the operator allows it meanwhile)
        assert row["last_error"].startswith("refused: the server's own AWS credentials")
        assert row["last_error"].endswith("(permanent)")

    received = await sqs.receive_message(QueueUrl=queues["allowed"], MaxNumberOfMessages=10)
    assert len(received.get("Messages", [])) == 2
    nothing = await sqs.receive_message(QueueUrl=queues["denied"], MaxNumberOfMessages=10)
    assert nothing.get("Messages", []) == []

    # visible to the tenant: lastError and the test endpoint
    listed = await client.get(
        f"{URL}/{subs['denied']}/deliveries", params={"status": "failed"}, headers=tenant.headers
    )
    assert {d["lastError"][:52] for d in listed.json()["items"]} == {
        "refused: the server's own AWS credentials are not al"
    }
    tested = await client.post(f"{URL}/{subs['denied']}/test", headers=tenant.headers)
    assert tested.json()["success"] is False
    assert "EC_AWS_SERVER_CREDENTIALS_ALLOW" in tested.json()["error"]
