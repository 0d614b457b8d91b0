"""Shared bits of the job tests: the seed's bodies and a valid job."""

from __future__ import annotations

import uuid
from typing import Any

# The seed's "Create Notification Job" request, verbatim.
SEED_CREATE: dict[str, Any] = {
    "deleted": True,
    "id": "string",
    "is_active": True,
    "is_scheduled": True,
    "job_parameters": {"campaign_id": "string", "utm_medium": "string"},
    "notification": "BACK_IN_STOCK",
    "number_of_items_in_email": 0,
    "schedule": "string",
    "scheduleExpression": "string",
    "template_id": "string",
}

# The seed's "Update Notification Job" request, verbatim.
SEED_UPDATE: dict[str, Any] = {k: v for k, v in SEED_CREATE.items() if k != "id"}


def seed_shaped(**changes: Any) -> dict[str, Any]:
    """The seed's create body with usable values (and a fresh id)."""
    body = {
        **SEED_CREATE,
        "id": f"job-{uuid.uuid4().hex[:10]}",
        "deleted": False,
        "number_of_items_in_email": 5,
        "schedule": "30 1 * * *",
        "scheduleExpression": "cron(0 9 ? * 2 *)",
        "template_id": "d-123",
    }
    body.update(changes)
    return body
