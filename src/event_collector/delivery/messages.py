"""What consumers receive: the message body, its attributes and FIFO ids (docs/delivery.md)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic_core import to_json

from event_collector.events.model import StoredEvent
from event_collector.kit.timefmt import isoformat_z

ATTRIBUTE_NAMES = ("tenant", "entity_type", "operation", "event_type", "event_id")


@dataclass(slots=True)
class OutgoingMessage:
    """One delivery, rendered: the same bytes go to every destination kind."""

    delivery_id: str
    body: str
    attributes: dict[str, str]
    group_id: str

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


def group_id_of(event: StoredEvent) -> str:
    """FIFO ordering key: one entity's events stay in order; others run in parallel."""
    return f"{event.tenant}:{event.entity_type or ''}:{event.entity_id or event.id}"


def render(
    delivery_id: str,
    event: StoredEvent,
    cache: dict[tuple[str, str], tuple[str, dict[str, str], str]] | None = None,
) -> OutgoingMessage:
    """``cache`` (per claimed batch) renders an event once for all its deliveries."""
    key = (event.tenant, event.id)
    rendered = cache.get(key) if cache is not None else None
    if rendered is None:
        rendered = (render_body(event), attributes_of(event), group_id_of(event)[:128])
        if cache is not None:
            cache[key] = rendered
    body, attributes, group_id = rendered
    return OutgoingMessage(
        delivery_id=delivery_id, body=body, attributes=attributes, group_id=group_id
    )


def test_message(tenant: str, subscription_id: str, entity_type: str) -> OutgoingMessage:
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
    return OutgoingMessage(
        delivery_id=f"test-{uuid.uuid4()}",
        body=json.dumps(document, separators=(",", ":"), ensure_ascii=False),
        attributes={
            "tenant": tenant,
            "entity_type": entity_type,
            "operation": "CREATE",
            "event_type": entity_type,
            "event_id": event_id,
            "test": "true",
        },
        group_id=f"{tenant}:{entity_type}:test"[:128],
    )
