"""Builders for subscription request bodies."""

from __future__ import annotations

import uuid
from typing import Any, NamedTuple

import httpx
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import select

from event_collector.kit.crypto import KEY_PREFIX, SecretBox
from event_collector.models import subscription_table
from event_collector.runtime import Runtime
from event_collector.subscriptions.service import secret_associated_data
from tests.conftest import TenantFixture

URL = "/api/v1/event-subscription"
QUEUE_URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders"
TOPIC_ARN = "arn:aws:sns:us-east-2:123456789012:customers"
ACCESS_KEY = "AKIDEXAMPLEKEY000001"
ACCESS_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


def new_id() -> str:
    return f"sub-{uuid.uuid4().hex[:12]}"


def sqs_destination(**overrides: Any) -> dict[str, Any]:
    sqs = {"queueUrl": QUEUE_URL, "accessKey": ACCESS_KEY, "accessSecret": ACCESS_SECRET}
    sqs.update(overrides)
    return {"type": "SQS", "sqs": {k: v for k, v in sqs.items() if v is not ...}}


def sns_destination(**overrides: Any) -> dict[str, Any]:
    sns = {"topicArn": TOPIC_ARN, "accessKey": ACCESS_KEY, "accessSecret": ACCESS_SECRET}
    sns.update(overrides)
    return {"type": "SNS", "sns": {k: v for k, v in sns.items() if v is not ...}}


def webhook_destination(**overrides: Any) -> dict[str, Any]:
    webhook: dict[str, Any] = {"url": "https://hooks.example.com/ec"}
    webhook.update(overrides)
    return {"type": "WEBHOOK", "webhook": {k: v for k, v in webhook.items() if v is not ...}}


def subscription_body(
    *,
    destination: dict[str, Any] | None = None,
    entity_type: str = "CUSTOMER",
    subscription_id: str | None = "auto",
    **fields: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "entityType": entity_type,
        "destination": destination or sqs_destination(),
    }
    if subscription_id == "auto":
        body["id"] = new_id()
    elif subscription_id is not None:
        body["id"] = subscription_id
    body.update(fields)
    return body


WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MASK = "********"


async def create(
    client: httpx.AsyncClient, tenant: TenantFixture, body: dict[str, Any]
) -> dict[str, Any]:
    response = await client.post(URL, json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    data: dict[str, Any] = response.json()
    return data


async def stored_row(context: Runtime, tenant: str, subscription_id: str) -> dict[str, Any]:
    async with context.db.read() as conn:
        row = (
            await conn.execute(
                select(subscription_table).where(
                    subscription_table.c.tenant == tenant,
                    subscription_table.c.id == subscription_id,
                )
            )
        ).one()
    return dict(row._mapping)


async def stored_secret(context: Runtime, tenant: str, subscription_id: str) -> str | None:
    row = await stored_row(context, tenant, subscription_id)
    if row["secret_sealed"] is None:
        return None
    return context.secrets.open(
        row["secret_sealed"], associated_data=secret_associated_data(tenant, subscription_id)
    )


def assert_bad_request(response: httpx.Response, *fragments: str) -> None:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] in ("BadRequest", "ValidationFailed"), body
    text = " ".join([body["detail"], *(e["msg"] for e in body.get("errors", []))])
    for fragment in fragments:
        assert fragment in text, (fragment, body)


class KeyRotation(NamedTuple):
    current: str  # the server's current key id
    old_box: SecretBox  # seals with a retired key only
    rotated: SecretBox  # the retired key and the server's current one (which seals)
    lost_box: SecretBox  # seals with a key the servers no longer have


def key_rotation(context: Runtime) -> KeyRotation:
    """The boxes of a key rotation around the server's current key."""
    current = context.secrets.current_kid
    current_key = (context.settings.key_dir / f"{KEY_PREFIX}{current}.bin").read_bytes()
    old_key = AESGCM.generate_key(bit_length=256)
    return KeyRotation(
        current,
        SecretBox({"old": old_key}, current_kid="old"),
        SecretBox({"old": old_key, current: current_key}, current_kid=current),
        SecretBox({"lost": AESGCM.generate_key(bit_length=256)}, current_kid="lost"),
    )
