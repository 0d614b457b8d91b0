"""Builders for request bodies used across the suite."""

from __future__ import annotations

import base64
import json
import uuid
from typing import Any


def b64json(value: Any) -> str:
    return base64.b64encode(json.dumps(value).encode()).decode()


def event_body(
    *,
    event_type: str = "CUSTOMER",
    operation: str = "CREATE",
    payload: Any = None,
    entity_id: str | None = None,
    event_id: str | None = "auto",
    **extra: Any,
) -> dict[str, Any]:
    """An event as a client posts it; ``payload`` is JSON-encoded then base64-encoded."""
    entity_id = entity_id or f"e-{uuid.uuid4().hex[:8]}"
    body: dict[str, Any] = {
        "entity_id": entity_id,
        "event_type": event_type,
        "event_source": "CONNECTOR",
        "event_payload": {
            "operation": operation,
            "entity_id": entity_id,
            "key_attributes": {"correlationId": uuid.uuid4().hex},
        },
    }
    if event_id == "auto":
        body["id"] = f"ev-{uuid.uuid4().hex}"
    elif event_id is not None:
        body["id"] = event_id
    if payload is not None:
        body["event_payload"]["base64_encoded_payload_json"] = b64json(payload)
    body.update(extra)
    return body
