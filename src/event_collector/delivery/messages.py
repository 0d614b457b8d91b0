"""What consumers receive: the message body, its attributes and FIFO ids (docs/delivery.md).

A :class:`Message` is what a delivery row carries, whatever produced it: an event (routing,
:func:`event_message`), a test send (:func:`test_message`), a notification job. Sending turns a
row (or a test message) into an :class:`OutgoingMessage`; every destination kind sends the same
bytes.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic_core import to_json

from event_collector.events.model import StoredEvent
from event_collector.kit.timefmt import isoformat_z

ATTRIBUTE_NAMES = ("tenant", "entity_type", "operation", "event_type", "event_id")
MAX_ORDERING_KEY = 128  # SQS MessageGroupId


@dataclass(slots=True)
class Message:
    """A message to deliver to the subscriptions it is routed to."""

    body: str  # JSON text
    attributes: dict[str, str]
    ordering_key: str  # FIFO MessageGroupId
    deduplication_id: str | None = None  # FIFO MessageDeduplicationId; None: the delivery id


@dataclass(slots=True)
class OutgoingMessage:
    """One message about to be sent (a claimed delivery, or a test send)."""

    delivery_id: str
    body: str
    attributes: dict[str, str]
    ordering_key: str
    deduplication_id: str  # also the webhook-id header

    @property
    def size(self) -> int:
        return len(self.body.encode())


def render_body(event: StoredEvent) -> str:
    """The event as the API returns it, plus ``payload``: the decoded JSON, or null."""
    document = event.to_api()
    document["payload"] = event.payload
    # Compact, UTF-8 (no \u escapes): the same text json.dumps(..., separators=(",", ":"),
    # ensure_ascii=False) gives, several times faster.
    return to_json(document).decode()


def attributes_of(event: StoredEvent) -> dict[str, str]:
    values = {
        "tenant": event.tenant,
        "entity_type": event.entity_type,
        "operation": event.operation,
        "event_type": event.event_type,
        "event_id": event.id,
    }
    # SQS/SNS refuse empty attribute values: absent ones are left out.
    return {name: value for name, value in values.items() if value}


def ordering_key_of(event: StoredEvent) -> str:
    """FIFO ordering key: one entity's events stay in order; others run in parallel."""
    key = f"{event.tenant}:{event.entity_type or ''}:{event.entity_id or event.id}"
    return key[:MAX_ORDERING_KEY]


def event_message(event: StoredEvent) -> Message:
    return Message(render_body(event), attributes_of(event), ordering_key_of(event))


def test_message(tenant: str, subscription_id: str, entity_type: str) -> Message:
    """A synthetic event for `POST /event-subscription/{id}/test`: marked ``"test": true``."""
    now = datetime.now(UTC)
    event_id = f"test-{int(now.timestamp() * 1000)}"
    document: dict[str, Any] = {
        "id": event_id,
        "entity_id": "test",
        "entity_name": None,
        "event_type": entity_type,
        "event_source": "SYSTEM",
        "event_payload": {
            "base64_encoded_payload_json": None,
            "base64_encoded_fault_json": None,
            "entity_id": "test",
            "key_attributes": {"subscriptionId": subscription_id},
            "operation": "CREATE",
        },
        "tenant": tenant,
        "entity_type": entity_type,
        "received_at": isoformat_z(now),
        "payload": None,
        "test": True,
    }
    return Message(
        body=to_json(document).decode(),
        attributes={
            "tenant": tenant,
            "entity_type": entity_type,
            "operation": "CREATE",
            "event_type": entity_type,
            "event_id": event_id,
            "test": "true",
        },
        ordering_key=f"{tenant}:{entity_type}:test"[:MAX_ORDERING_KEY],
    )


def outgoing(message: Message, delivery_id: str | None = None) -> OutgoingMessage:
    """A message sent outside any delivery row (a test send): a fresh id of its own."""
    delivery_id = delivery_id or f"test-{uuid.uuid4()}"
    return OutgoingMessage(
        delivery_id,
        message.body,
        message.attributes,
        message.ordering_key,
        message.deduplication_id or delivery_id,
    )
