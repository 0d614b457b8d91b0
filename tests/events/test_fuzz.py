"""Property tests: whatever a client sends to the ingest routes, the answer is a clear 4xx or a
success, never a 500, and a rejected request stores nothing."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from event_collector.events import service as event_service
from event_collector.events.schemas import EventIn
from tests.factories import event_body

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=12,
)
event_fields = st.sampled_from(
    ["id", "entity_id", "entity_name", "event_type", "event_source", "event_payload"]
)
payload_fields = st.sampled_from(
    [
        "operation",
        "entity_id",
        "key_attributes",
        "base64_encoded_payload_json",
        "base64_encoded_fault_json",
    ]
)


@st.composite
def mutated_events(draw: st.DrawFn) -> dict[str, Any]:
    """A valid event with a few fields replaced by arbitrary JSON (or removed)."""
    body = event_body(payload={"id": "x"})
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        payload = body.get("event_payload")
        if draw(st.booleans()) or not isinstance(payload, dict):
            target, field = body, draw(event_fields)
        else:
            target, field = payload, draw(payload_fields)
        if draw(st.booleans()):
            target[field] = draw(json_values)
        else:
            target.pop(field, None)
    return body


ACCEPTED = {200, 201, 400, 409, 413}
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))


@FUZZ
@given(body=mutated_events())
async def test_mutated_events_never_fail_the_server(client, tenant, body) -> None:
    response = await client.post("/api/v1/events", json=body, headers=tenant.headers)
    assert response.status_code in ACCEPTED, response.text
    error = response.json()
    if response.status_code >= 400:
        assert set(error) >= {"error", "detail"}


@FUZZ
@given(document=json_values)
async def test_any_json_document_gets_a_4xx_or_success(client, tenant, document) -> None:
    for path in ("/api/v1/events", "/api/v1/events/batch"):
        response = await client.post(
            path,
            content=json.dumps(document),
            headers={**tenant.headers, "Content-Type": "application/json"},
        )
        assert response.status_code in ACCEPTED, (path, response.text)


@FUZZ
@given(raw=st.binary(max_size=200))
async def test_arbitrary_bytes_get_a_4xx(client, tenant, raw) -> None:
    response = await client.post(
        "/api/v1/events",
        content=raw,
        headers={**tenant.headers, "Content-Type": "application/json"},
    )
    assert response.status_code in ACCEPTED, response.text


@FUZZ
@given(batch=st.lists(mutated_events(), min_size=1, max_size=5))
async def test_batches_report_every_item(client, tenant, batch) -> None:
    response = await client.post("/api/v1/events/batch", json=batch, headers=tenant.headers)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["index"] for r in results] == list(range(len(batch)))
    assert {r["status"] for r in results} <= {"created", "duplicate", "conflict", "invalid"}


@FUZZ
@given(
    batch=st.lists(mutated_events() | st.builds(event_body), min_size=1, max_size=5),
    envelope=st.booleans(),
)
def test_whole_batch_validation_agrees_with_item_by_item(batch, envelope) -> None:
    """The batch route validates a body in one pass when every item is valid, and item by item
    otherwise: the one pass must accept exactly the batches whose every item is valid, and read
    them the same."""
    context = {"max_decoded_payload_bytes": 1024}
    one_by_one: list[EventIn] | None = []
    for item in batch:
        try:
            one_by_one.append(EventIn.model_validate(item, context=context))  # type: ignore[union-attr]
        except ValidationError:
            one_by_one = None
            break
    body = json.dumps({"events": batch} if envelope else batch).encode()
    assert event_service._validate_whole(body, context) == one_by_one
