"""Builders for subscription request bodies."""

from __future__ import annotations

import uuid
from typing import Any

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
