"""The transactional outbox: an event and what its ingest hooks write commit together or not at
all, on both databases (DESIGN §2 durability rule)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from event_collector.events.model import StoredEvent
from event_collector.kit.db import AnyConnection
from event_collector.runtime import Runtime
from tests.conftest import TenantFixture
from tests.factories import event_body


@pytest.mark.parametrize("path", ["/api/v1/events", "/api/v1/events/batch"])
async def test_an_event_whose_hook_fails_is_not_stored(
    client, tenant: TenantFixture, context: Runtime, path: str
) -> None:
    async def failing_hook(conn: AnyConnection, created: Sequence[StoredEvent]) -> None:
        if any(event.tenant == tenant.name for event in created):
            raise RuntimeError("hook failed")

    body = event_body()
    context.writer.add_hook(failing_hook)
    try:
        response = await client.post(
            path, json=body if path.endswith("events") else [body], headers=tenant.headers
        )
    finally:
        context.writer._hooks.remove(failing_hook)
    assert response.status_code == 503, response.text

    fetched = await client.get(f"/api/v1/events/{body['id']}", headers=tenant.headers)
    assert fetched.status_code == 404, "the event committed without its hook's rows"
    # Once the hook works again the same event is new (201), not an idempotent re-post (200).
    again = await client.post("/api/v1/events", json=body, headers=tenant.headers)
    assert again.status_code == 201, again.text
