"""The events API: every status code of DESIGN §3.1, idempotency, validation, isolation."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid

import httpx
import pytest

from tests.conftest import TenantFixture
from tests.factories import b64json, event_body

SEED_EXAMPLE = {
    "entity_id": "string",
    "entity_name": "string",
    "event_payload": {
        "base64_encoded_fault_json": base64.b64encode(b'{"fault": "timeout"}').decode(),
        "base64_encoded_payload_json": base64.b64encode(b'{"id": "string"}').decode(),
        "entity_id": "string",
        "key_attributes": {
            "additionalProp1": "string",
            "additionalProp2": "string",
            "additionalProp3": "string",
        },
        "operation": "BULK_CREATE",
    },
    "event_source": "APPLICATION",
    "event_type": "ENTITY_EVENT",
    "id": "string",
}


async def post(client: httpx.AsyncClient, tenant: TenantFixture, body: object) -> httpx.Response:
    return await client.post("/api/v1/events", json=body, headers=tenant.headers)


async def test_seed_example_is_accepted_and_read_back_field_for_field(client, tenant) -> None:
    created = await post(client, tenant, SEED_EXAMPLE)
    assert created.status_code == 201, created.text
    fetched = await client.get("/api/v1/events/string", headers=tenant.headers)
    assert fetched.status_code == 200
    stored = fetched.json()
    for field, value in SEED_EXAMPLE.items():
        assert stored[field] == value, field
    assert stored["tenant"] == tenant.name
    assert stored["entity_type"] is None  # ENTITY_EVENT and entity_name "string" name no entity
    assert stored["received_at"].endswith("Z")


async def test_identical_repost_answers_200_with_the_stored_event(client, tenant) -> None:
    body = event_body()
    first = await post(client, tenant, body)
    again = await post(client, tenant, body)
    assert (first.status_code, again.status_code) == (201, 200)
    assert again.json() == first.json()


async def test_same_id_with_different_content_is_a_conflict(client, tenant) -> None:
    body = event_body()
    assert (await post(client, tenant, body)).status_code == 201
    body["entity_name"] = "changed"
    response = await post(client, tenant, body)
    assert response.status_code == 409
    assert response.json()["error"] == "Conflict"
    stored = await client.get(f"/api/v1/events/{body['id']}", headers=tenant.headers)
    assert stored.json()["entity_name"] is None


async def test_concurrent_posts_of_one_id_store_it_once(client, tenant) -> None:
    body = event_body()
    other = {**body, "entity_name": "different"}
    responses = await asyncio.gather(
        *[post(client, tenant, body) for _ in range(10)],
        *[post(client, tenant, other) for _ in range(5)],
    )
    codes = [r.status_code for r in responses]
    assert codes.count(201) == 1
    winner = next(r for r in responses if r.status_code == 201).json()
    losers_code = 409 if winner["entity_name"] is None else 200
    assert codes.count(409) == (5 if losers_code == 409 else 10)
    listing = await client.get(
        "/api/v1/events", params={"entity_id": body["entity_id"]}, headers=tenant.headers
    )
    assert len(listing.json()["items"]) == 1


async def test_server_generates_an_id_when_absent(client, tenant) -> None:
    response = await post(client, tenant, event_body(event_id=None))
    assert response.status_code == 201
    assert uuid.UUID(response.json()["id"])


async def test_enums_are_case_insensitive_and_stored_upper_case(client, tenant) -> None:
    body = event_body(event_type=" wishlist_item", operation="Update ")
    body["event_source"] = "serverless"
    stored = (await post(client, tenant, body)).json()
    assert (stored["event_type"], stored["event_source"]) == ("WISHLIST_ITEM", "SERVERLESS")
    assert stored["event_payload"]["operation"] == "UPDATE"
    assert stored["entity_type"] == "WISHLIST_ITEM"


@pytest.mark.parametrize(
    ("event_type", "entity_name", "expected"),
    [
        ("PRICE", None, "PRICE"),
        ("ENTITY_EVENT", "customer", "CUSTOMER"),
        ("ENTITY_EVENT", "variant-product", "VARIANT_PRODUCT"),
        ("FAULT", "Order", "ORDER"),
        ("OTHER", "something", None),
        ("EVENT", None, None),
    ],
)
async def test_entity_type_is_derived(client, tenant, event_type, entity_name, expected) -> None:
    body = event_body(event_type=event_type)
    if entity_name:
        body["entity_name"] = entity_name
    stored = (await post(client, tenant, body)).json()
    assert stored["entity_type"] == expected


async def test_entity_ids_default_to_each_other(client, tenant) -> None:
    body = event_body()
    del body["entity_id"]
    body["event_payload"]["entity_id"] = "from-payload"
    assert (await post(client, tenant, body)).json()["entity_id"] == "from-payload"
    body = event_body(entity_id="top-level")
    del body["event_payload"]["entity_id"]
    stored = (await post(client, tenant, body)).json()
    assert stored["event_payload"]["entity_id"] == "top-level"


async def test_payload_that_is_not_json_is_stored_as_is(client, tenant) -> None:
    body = event_body()
    body["event_payload"]["base64_encoded_payload_json"] = base64.b64encode(b"not json").decode()
    response = await post(client, tenant, body)
    assert response.status_code == 201
    encoded = response.json()["event_payload"]["base64_encoded_payload_json"]
    assert base64.b64decode(encoded) == b"not json"


@pytest.mark.parametrize(
    ("mutate", "loc"),
    [
        (lambda b: b.update(event_type="BOGUS"), ["event_type"]),
        (lambda b: b.update(event_source="NOWHERE"), ["event_source"]),
        (lambda b: b["event_payload"].update(operation="MERGE"), ["event_payload", "operation"]),
        (lambda b: b["event_payload"].pop("operation"), ["event_payload", "operation"]),
        (lambda b: b.pop("event_payload"), ["event_payload"]),
        (lambda b: b.pop("event_type"), ["event_type"]),
        (
            lambda b: b["event_payload"].update(base64_encoded_payload_json="***not base64***"),
            ["event_payload", "base64_encoded_payload_json"],
        ),
        (
            lambda b: b["event_payload"].update(key_attributes={"a": 1}),
            ["event_payload", "key_attributes", "a"],
        ),
        (lambda b: b["event_payload"].update(key_attributes=["x"]), None),
        (lambda b: b.update(id="has/slash"), ["id"]),
        (lambda b: b.update(id=""), ["id"]),
        (lambda b: b.update(id=12), ["id"]),
        (lambda b: b.update(entity_id="x" * 256), ["entity_id"]),
    ],
)
async def test_invalid_events_get_400_with_the_location(client, tenant, mutate, loc) -> None:
    body = event_body()
    mutate(body)
    response = await post(client, tenant, body)
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["error"] == "ValidationFailed"
    assert error["detail"]
    if loc is not None:
        assert any(item["loc"][: len(loc)] == loc for item in error["errors"]), error
    if isinstance(body.get("id"), str) and body["id"] and "/" not in body["id"]:
        fetched = await client.get(f"/api/v1/events/{body['id']}", headers=tenant.headers)
        assert fetched.status_code == 404  # nothing was stored


@pytest.mark.parametrize("raw", [b"{", b"[]", b"null", b'"x"', b"{}"])
async def test_malformed_json_is_400(client, tenant, raw) -> None:
    response = await client.post(
        "/api/v1/events",
        content=raw,
        headers={**tenant.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"] in ("BadRequest", "ValidationFailed")


async def test_non_json_body_is_415(client, tenant) -> None:
    response = await client.post(
        "/api/v1/events", content=b"a=b", headers={**tenant.headers, "Content-Type": "text/plain"}
    )
    assert response.status_code == 415
    assert response.json()["error"] == "UnsupportedMediaType"


async def test_body_too_large_is_413(client, tenant, settings) -> None:
    body = event_body()
    body["entity_name"] = "x" * (settings.max_body_bytes + 1)
    assert (await post(client, tenant, body)).status_code == 413


async def test_decoded_payload_too_large_is_413(client, tenant, settings) -> None:
    body = event_body()
    body["event_payload"]["base64_encoded_payload_json"] = base64.b64encode(
        b"x" * (settings.max_decoded_payload_bytes + 1)
    ).decode()
    response = await post(client, tenant, body)
    assert response.status_code == 413
    assert "limit" in response.json()["detail"]


async def test_unknown_event_is_404_and_method_not_allowed_is_405(client, tenant) -> None:
    assert (await client.get("/api/v1/events/nope", headers=tenant.headers)).status_code == 404
    response = await client.delete("/api/v1/events/nope", headers=tenant.headers)
    assert response.status_code == 405
    assert response.json()["error"] == "MethodNotAllowed"


async def test_tenants_never_see_each_others_events(client, tenant, other_tenant) -> None:
    body = event_body()
    assert (await post(client, tenant, body)).status_code == 201
    assert (
        await client.get(f"/api/v1/events/{body['id']}", headers=other_tenant.headers)
    ).status_code == 404
    listing = await client.get("/api/v1/events", headers=other_tenant.headers)
    assert listing.json()["items"] == []
    # The same id is free in another tenant.
    assert (await post(client, other_tenant, body)).status_code == 201


async def test_list_filters_and_cursor_pagination(client, tenant) -> None:
    ids = []
    for index in range(7):
        body = event_body(
            event_type="ORDER" if index % 2 else "CUSTOMER",
            operation="UPDATE" if index < 3 else "CREATE",
            entity_id=f"ent-{index % 3}",
        )
        ids.append(body["id"])
        assert (await post(client, tenant, body)).status_code == 201

    async def collect(**params: object) -> list[str]:
        seen, cursor = [], None
        while True:
            query = {**params, **({"cursor": cursor} if cursor else {})}
            page = (await client.get("/api/v1/events", params=query, headers=tenant.headers)).json()
            seen += [item["id"] for item in page["items"]]
            cursor = page["next_cursor"]
            if not page["has_more"]:
                return seen

    assert await collect(limit=2) == ids
    assert await collect(entity_type="order") == [i for n, i in enumerate(ids) if n % 2]
    assert await collect(event_type="CUSTOMER", operation="UPDATE") == [ids[0], ids[2]]
    assert await collect(entity_id="ent-1") == [ids[1], ids[4]]
    assert await collect(since="2000-01-01T00:00:00Z", until="2999-01-01T00:00:00Z") == ids
    assert await collect(until="2000-01-01T00:00:00Z") == []


@pytest.mark.parametrize(
    "params",
    [
        {"limit": 0},
        {"limit": 501},
        {"cursor": "garbage!"},
        {"since": "yesterday"},
        {"entity_type": "SPACESHIP"},
        {"operation": "MERGE"},
    ],
)
async def test_bad_list_parameters_are_400(client, tenant, params) -> None:
    response = await client.get("/api/v1/events", params=params, headers=tenant.headers)
    assert response.status_code == 400
    assert response.json()["detail"]


async def test_batch_stores_valid_items_and_reports_each(client, tenant) -> None:
    existing = event_body()
    assert (await post(client, tenant, existing)).status_code == 201
    conflicting = {**existing, "entity_name": "other"}
    fresh = event_body()
    invalid = event_body(event_type="NOPE")
    response = await client.post(
        "/api/v1/events/batch",
        json=[fresh, existing, conflicting, invalid, fresh],
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert [r["status"] for r in result["results"]] == [
        "created",
        "duplicate",
        "conflict",
        "invalid",
        "duplicate",
    ]
    assert result["results"][3]["error"].startswith("event_type")
    assert (result["created"], result["duplicate"], result["conflict"], result["invalid"]) == (
        1,
        2,
        1,
        1,
    )
    fetched = await client.get(f"/api/v1/events/{fresh['id']}", headers=tenant.headers)
    assert fetched.status_code == 200


async def test_batch_accepts_an_events_envelope(client, tenant) -> None:
    response = await client.post(
        "/api/v1/events/batch", json={"events": [event_body()]}, headers=tenant.headers
    )
    assert response.json()["created"] == 1


async def test_batch_limits(client, tenant, settings) -> None:
    too_many = [event_body() for _ in range(settings.max_batch_events + 1)]
    response = await client.post("/api/v1/events/batch", json=too_many, headers=tenant.headers)
    assert response.status_code == 413
    for bad in ([], {"nope": 1}, "x"):
        response = await client.post("/api/v1/events/batch", json=bad, headers=tenant.headers)
        assert response.status_code == 400


async def test_batch_of_500_is_stored(client, tenant) -> None:
    bodies = [event_body(payload={"n": n}) for n in range(500)]
    response = await client.post("/api/v1/events/batch", json=bodies, headers=tenant.headers)
    assert response.json()["created"] == 500
    page = await client.get("/api/v1/events", params={"limit": 500}, headers=tenant.headers)
    assert [item["id"] for item in page.json()["items"]] == [b["id"] for b in bodies]
    payload = page.json()["items"][42]["event_payload"]["base64_encoded_payload_json"]
    assert json.loads(base64.b64decode(payload)) == {"n": 42}
    assert payload == b64json({"n": 42})
