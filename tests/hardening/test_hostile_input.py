"""Hostile input (issue 12, item 1): every input the probe answered with a 500 (or a 503 that
clients retry forever) is a clear 400 on both databases, stores nothing, and leaves the
connection usable. A NUL inside an event's payload is the exception: the event is kept and the
read model records a problem."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from event_collector.kit.cursors import MAX_SEQ
from event_collector.models import event_table, read_model_problem_table
from event_collector.runtime import Runtime
from tests.conftest import TenantFixture
from tests.delivery.helpers import create_subscription
from tests.factories import event_body
from tests.jobs.helpers import seed_shaped
from tests.subscriptions.helpers import (
    QUEUE_URL,
    URL,
    sqs_destination,
    subscription_body,
    webhook_destination,
)

HUGE = "99999999999999999999"  # beyond 2**64


def cursor_of(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


async def stored_events(context: Runtime, tenant: str) -> int:
    async with context.db.read() as conn:
        query = select(func.count()).select_from(event_table).where(event_table.c.tenant == tenant)
        return int((await conn.execute(query)).scalar_one())


async def assert_refused(response: httpx.Response, *fragments: str) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    body: dict[str, Any] = response.json()
    assert body["error"] in ("BadRequest", "ValidationFailed"), body
    text = json.dumps(body)
    for fragment in fragments:
        assert fragment in text, (fragment, body)
    return body


async def assert_still_usable(client: httpx.AsyncClient, tenant: TenantFixture) -> None:
    """The follow-up: a valid event is stored and listed (the connection and the database
    session behind it were not left broken)."""
    body = event_body()
    created = await client.post("/api/v1/events", json=body, headers=tenant.headers)
    assert created.status_code == 201, created.text
    listed = await client.get(
        "/api/v1/events", params={"entity_id": body["entity_id"]}, headers=tenant.headers
    )
    assert listed.status_code == 200, listed.text
    assert [item["id"] for item in listed.json()["items"]] == [body["id"]]


# --- cursors beyond 64 bits ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "cursor", "next_field"),
    [
        ("/api/v1/events", cursor_of(f"s{HUGE}"), "next_cursor"),
        ("/api/v1/events", cursor_of(f"f{HUGE}.1"), "next_cursor"),
        ("/api/v1/events", cursor_of(f"f1.{HUGE}"), "next_cursor"),
        ("/api/v1/events", cursor_of("f1.9223372036854775808"), "next_cursor"),  # 2**63
        ("/api/v1/events", cursor_of("s-1"), "next_cursor"),
        ("/api/v1/events", cursor_of("s+1"), "next_cursor"),
        ("/api/v1/events", cursor_of("s1\x00"), "next_cursor"),
        ("/api/v1/read-model/problems", cursor_of(f"p{HUGE}"), "next_cursor"),
        ("/api/v1/read-model/problems", cursor_of("p-5"), "next_cursor"),
        ("/api/v1/notifications", cursor_of(f"n:{HUGE}"), "next_cursor"),
        ("/api/v1/jobs", cursor_of(f"s{HUGE}"), "next_cursor"),
    ],
)
async def test_a_cursor_out_of_range_is_a_400(
    client: httpx.AsyncClient,
    tenant: TenantFixture,
    path: str,
    cursor: str,
    next_field: str,
) -> None:
    response = await client.get(path, params={"cursor": cursor}, headers=tenant.headers)
    await assert_refused(response, f"cursor is not valid; pass the {next_field}")
    await assert_still_usable(client, tenant)


@pytest.mark.parametrize(
    ("path", "cursor"),
    [
        ("/api/v1/events", cursor_of(f"f{MAX_SEQ}.{MAX_SEQ}")),
        ("/api/v1/events", cursor_of(f"s{MAX_SEQ}")),
        ("/api/v1/read-model/problems", cursor_of(f"p{MAX_SEQ}")),
        ("/api/v1/notifications", cursor_of(f"n:{MAX_SEQ}")),
        ("/api/v1/jobs", cursor_of(f"s{MAX_SEQ}")),
    ],
)
async def test_the_largest_cursor_is_still_answered(
    client: httpx.AsyncClient, tenant: TenantFixture, path: str, cursor: str
) -> None:
    response = await client.get(path, params={"cursor": cursor}, headers=tenant.headers)
    assert response.status_code == 200, response.text


async def test_job_runs_and_delivery_cursors_out_of_range_are_400(
    client: httpx.AsyncClient, context: Runtime, tenant: TenantFixture
) -> None:
    job = seed_shaped()
    created = await client.post("/api/v1/jobs", json=job, headers=tenant.headers)
    assert created.status_code == 201, created.text
    runs = await client.get(
        f"/api/v1/jobs/{job['id']}/runs",
        params={"cursor": cursor_of(f"s{HUGE}")},
        headers=tenant.headers,
    )
    await assert_refused(runs, "cursor is not valid")

    sub = await create_subscription(
        context, tenant.name, "WEBHOOK", {"url": "https://hooks.example.com/x"}
    )
    for forged in (
        f"0001-01-01T00:00:00+14:00|d-{HUGE}",
        "9999-12-31T23:59:59-23:59|d-1",
        "2024-01-01T00:00:00Z|d\x00",
        "not a cursor",
    ):
        deliveries = await client.get(
            f"/api/v1/event-subscription/{sub}/deliveries",
            params={"cursor": cursor_of(forged)},
            headers=tenant.headers,
        )
        await assert_refused(deliveries, "cursor is not valid; pass the nextCursor")
    await assert_still_usable(client, tenant)


# --- timestamps at the edges of the calendar -------------------------------------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [("since", "0001-01-01T00:00:00+14:00"), ("until", "9999-12-31T23:59:59-23:59")],
)
async def test_a_time_filter_outside_utc_range_is_a_400(
    client: httpx.AsyncClient, tenant: TenantFixture, name: str, value: str
) -> None:
    response = await client.get("/api/v1/events", params={name: value}, headers=tenant.headers)
    await assert_refused(response, f"{name} is out of range", "0001-01-01 and 9999-12-31")
    await assert_still_usable(client, tenant)


async def test_the_calendar_edges_themselves_are_fine(
    client: httpx.AsyncClient, tenant: TenantFixture
) -> None:
    await assert_still_usable(client, tenant)
    response = await client.get(
        "/api/v1/events",
        params={"since": "0001-01-01T00:00:00Z", "until": "9999-12-31T23:59:59.999999Z"},
        headers=tenant.headers,
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["items"]) == 1


@pytest.mark.parametrize("since", ["0001-01-01T00:00:00+14:00", "9999-12-31T23:59:59-23:59"])
async def test_a_replay_since_outside_utc_range_is_a_400(
    client: httpx.AsyncClient, context: Runtime, tenant: TenantFixture, since: str
) -> None:
    sub = await create_subscription(
        context, tenant.name, "WEBHOOK", {"url": "https://hooks.example.com/x"}
    )
    response = await client.post(
        f"/api/v1/event-subscription/{sub}/replay",
        json={"since": since, "status": "all"},
        headers=tenant.headers,
    )
    await assert_refused(response, "since", "is out of range")
    fine = await client.post(
        f"/api/v1/event-subscription/{sub}/replay",
        json={"since": "0001-01-01T00:00:00Z", "status": "all"},
        headers=tenant.headers,
    )
    assert fine.status_code == 202, fine.text


# --- deep nesting ----------------------------------------------------------------------------


@pytest.mark.parametrize("depth", [1_000, 100_000])
@pytest.mark.parametrize(
    ("path", "wrap"),
    [
        ("/api/v1/events/batch", lambda nested: nested),
        ("/api/v1/events/batch", lambda nested: '{"events": ' + nested + "}"),
        ("/api/v1/events", lambda nested: nested),
    ],
)
async def test_a_body_nested_too_deeply_is_a_400(
    client: httpx.AsyncClient,
    context: Runtime,
    tenant: TenantFixture,
    path: str,
    wrap: Any,
    depth: int,
) -> None:
    body = wrap("[" * depth + "]" * depth)
    response = await client.post(
        path,
        content=body,
        headers={**tenant.headers, "Content-Type": "application/json"},
    )
    await assert_refused(response, "nested too deeply")
    assert await stored_events(context, tenant.name) == 0
    await assert_still_usable(client, tenant)


# Deeper than ~900 the JSON parser itself gives up, how soon depending on the stack in use:
# still a 400, with the parser's generic message (covered by the batch tests above).
@pytest.mark.parametrize("depth", [40, 500])
async def test_free_form_job_parameters_nested_too_deeply_are_a_400(
    client: httpx.AsyncClient, tenant: TenantFixture, depth: int
) -> None:
    # Under the JSON parser's limit, but failed when stored or answered (a 500).
    body = json.dumps(seed_shaped(job_parameters={"x": "HERE"}))
    body = body.replace('"HERE"', "[" * depth + "]" * depth)
    response = await client.post(
        "/api/v1/jobs", content=body, headers={**tenant.headers, "Content-Type": "application/json"}
    )
    await assert_refused(response, "job_parameters", "nested more than 32 levels deep")
    listed = await client.get("/api/v1/jobs", headers=tenant.headers)
    assert listed.json()["items"] == []
    await assert_still_usable(client, tenant)


async def test_one_deeply_nested_item_does_not_sink_its_batch(
    client: httpx.AsyncClient, context: Runtime, tenant: TenantFixture
) -> None:
    good = event_body()
    deep = "[" * 150 + "]" * 150  # under the parser's limit: the item itself is invalid
    body = f'[{json.dumps(good)}, {{"id": "deep", "event_type": "ORDER", "event_payload": {deep}}}]'
    response = await client.post(
        "/api/v1/events/batch",
        content=body,
        headers={**tenant.headers, "Content-Type": "application/json"},
    )
    assert response.status_code == 200, response.text
    result = response.json()
    assert [r["status"] for r in result["results"]] == ["created", "invalid"]
    assert await stored_events(context, tenant.name) == 1


async def test_a_lone_surrogate_is_refused_as_invalid_json(
    client: httpx.AsyncClient, context: Runtime, tenant: TenantFixture
) -> None:
    good = json.dumps(event_body())
    bad = json.dumps(event_body(entity_id="x")).replace('"x"', '"\\ud800"')
    for path, body in (("/api/v1/events", bad), ("/api/v1/events/batch", f"[{good}, {bad}]")):
        response = await client.post(
            path, content=body, headers={**tenant.headers, "Content-Type": "application/json"}
        )
        await assert_refused(response, "not valid JSON")
    assert await stored_events(context, tenant.name) == 0
    await assert_still_usable(client, tenant)


# --- NUL characters --------------------------------------------------------------------------


def _with_nul(where: str) -> dict[str, Any]:
    body = event_body()
    if where == "event_payload.entity_id":
        body["event_payload"]["entity_id"] = "c\x001"
    elif where == "key_attributes":
        body["event_payload"]["key_attributes"] = {"correlation\x00Id": "x"}
    elif where == "key_attributes value":
        body["event_payload"]["key_attributes"] = {"correlationId": "x\x00"}
    else:
        body[where] = f"x\x00{where}"
    return body


NUL_FIELDS = [
    "entity_id",
    "entity_name",
    "id",
    "event_payload.entity_id",
    "key_attributes",
    "key_attributes value",
]


@pytest.mark.parametrize("where", NUL_FIELDS)
async def test_a_nul_in_an_identifier_is_a_400(
    client: httpx.AsyncClient, context: Runtime, tenant: TenantFixture, where: str
) -> None:
    response = await client.post("/api/v1/events", json=_with_nul(where), headers=tenant.headers)
    await assert_refused(response)
    assert response.json()["error"] == "ValidationFailed"
    assert await stored_events(context, tenant.name) == 0
    await assert_still_usable(client, tenant)


@pytest.mark.parametrize("where", NUL_FIELDS)
async def test_a_nul_in_one_batch_item_does_not_sink_the_others(
    client: httpx.AsyncClient, context: Runtime, tenant: TenantFixture, where: str
) -> None:
    items = [event_body(), _with_nul(where), event_body()]
    response = await client.post("/api/v1/events/batch", json=items, headers=tenant.headers)
    assert response.status_code == 200, response.text
    result = response.json()
    assert [r["status"] for r in result["results"]] == ["created", "invalid", "created"]
    invalid = result["results"][1]
    if where != "id":
        assert "NUL" in invalid["error"], invalid
    assert await stored_events(context, tenant.name) == 2
    await assert_still_usable(client, tenant)


async def test_a_nul_in_a_path_id_or_filter_is_a_400(
    client: httpx.AsyncClient, context: Runtime, tenant: TenantFixture
) -> None:
    sub = await create_subscription(
        context, tenant.name, "WEBHOOK", {"url": "https://hooks.example.com/x"}
    )
    urls = [
        "/api/v1/events/ev%00x",
        "/api/v1/events?entity_id=a%00b",
        "/api/v1/customers/c%001",
        "/api/v1/customers/c%001/wishlists",
        "/api/v1/variants/v%001",
        "/api/v1/event-subscription/s%001",
        f"/api/v1/event-subscription/{sub}/deliveries?status=failed%00",
        "/api/v1/jobs/j%001",
        "/api/v1/jobs/j%001/runs",
        "/api/v1/jobs/j/runs/r%001",
        "/api/v1/notifications?customer_id=c%001",
        "/api/v1/notifications?job_id=%00",
    ]
    for url in urls:
        response = await client.get(url, headers=tenant.headers)
        await assert_refused(response, "must not contain a NUL character")
    for method, url in (
        ("PUT", "/api/v1/event-subscription/s%001"),
        ("PUT", "/api/v1/event-subscription/s%001/deactivate"),
        ("DELETE", "/api/v1/jobs/j%001"),
        ("PUT", "/api/v1/jobs/j%001"),
        ("POST", "/auth/realms/t%00/protocol/openid-connect/token"),
        ("POST", "/api/v1/event-subscription/s%001/replay"),
        ("POST", "/api/v1/jobs/j%001/run"),
    ):
        response = await client.request(method, url, headers=tenant.headers, json={})
        await assert_refused(response, "must not contain a NUL character")
    await assert_still_usable(client, tenant)


async def test_a_nul_inside_a_payload_keeps_the_event_and_records_a_problem(
    client: httpx.AsyncClient, context: Runtime, tenant: TenantFixture
) -> None:
    payload = {"id": "c-nul", "email": "a@b.c", "firstName": "Ann\x00"}
    body = event_body(event_type="CUSTOMER", payload=payload, entity_id="c-nul")
    created = await client.post("/api/v1/events", json=body, headers=tenant.headers)
    assert created.status_code == 201, created.text
    fetched = await client.get(f"/api/v1/events/{body['id']}", headers=tenant.headers)
    stored_payload = fetched.json()["event_payload"]["base64_encoded_payload_json"]
    assert json.loads(base64.b64decode(stored_payload)) == payload  # kept as sent

    problems = await client.get("/api/v1/read-model/problems", headers=tenant.headers)
    assert problems.status_code == 200, problems.text
    [problem] = problems.json()["items"]
    assert problem["event_id"] == body["id"]
    assert "NUL" in problem["problem"]
    customer = await client.get("/api/v1/customers/c-nul", headers=tenant.headers)
    assert customer.status_code == 404  # not applied

    # In a batch too, next to events that apply.
    batch = [
        event_body(event_type="CUSTOMER", payload={"id": "c-ok", "email": "o@k.c"}),
        event_body(event_type="CUSTOMER", payload={"id": "c-nul2", "note\x00": "x"}),
    ]
    response = await client.post("/api/v1/events/batch", json=batch, headers=tenant.headers)
    assert response.status_code == 200, response.text
    assert [r["status"] for r in response.json()["results"]] == ["created", "created"]
    assert (await client.get("/api/v1/customers/c-ok", headers=tenant.headers)).status_code == 200
    async with context.db.read() as conn:
        problem_count = (
            await conn.execute(
                select(func.count())
                .select_from(read_model_problem_table)
                .where(read_model_problem_table.c.tenant == tenant.name)
            )
        ).scalar_one()
    assert problem_count == 2
    await assert_still_usable(client, tenant)


@pytest.mark.parametrize(
    ("path", "body", "fragment"),
    [
        ("/api/v1/jobs", seed_shaped(id="j\x001"), "id: "),
        ("/api/v1/jobs", seed_shaped(template_id="d\x00"), "template_id: "),
        # Free-form, but rendered into emails stored as text: refused too.
        ("/api/v1/jobs", seed_shaped(job_parameters={"campaign_id": "c\x00"}), "NUL"),
        ("/api/v1/jobs", seed_shaped(job_parameters={"utm\x00": "x"}), "NUL"),
        ("/api/v1/jobs", seed_shaped(job_parameters={"t": [{"deep": "\x00"}]}), "NUL"),
        (URL, subscription_body(subscription_id="s\x001"), "id"),
        (URL, subscription_body(entity_type="CUSTOMER\x00"), "entityType"),
        (
            URL,
            subscription_body(destination=sqs_destination(queueUrl=QUEUE_URL + "\x00")),
            "queueUrl",
        ),
        (
            URL,
            subscription_body(destination=webhook_destination(url="https://a.example/\x00")),
            "url",
        ),
        (
            URL,
            subscription_body(destination=webhook_destination(headers={"X-Key": "v\x00"})),
            "headers",
        ),
        ("/api/v1/email-settings", {"provider": "outbox", "sender_name": "n\x00"}, "NUL"),
        (
            "/api/v1/email-settings",
            {"provider": "outbox", "sender_email": "a\x00@b.c"},
            "sender_email",
        ),
    ],
)
async def test_a_nul_in_a_body_of_the_other_apis_is_never_a_5xx_and_both_databases_agree(
    client: httpx.AsyncClient,
    tenant: TenantFixture,
    path: str,
    body: dict[str, Any],
    fragment: str,
) -> None:
    method = "PUT" if path.endswith("email-settings") else "POST"
    response = await client.request(method, path, json=body, headers=tenant.headers)
    await assert_refused(response, fragment)
    listed = await client.get(path, headers=tenant.headers)  # nothing stored
    assert listed.status_code == 200, listed.text
    assert "\\u0000" not in listed.text
    if path == "/api/v1/jobs":
        assert listed.json()["items"] == []
    elif path == URL:
        assert listed.json() == []
    await assert_still_usable(client, tenant)


@pytest.mark.parametrize(
    ("data", "basic"),
    [
        ({"client_id": "c\x00", "client_secret": "s"}, None),
        ({"client_id": "c", "client_secret": "s\x00"}, None),
        ({}, "c\x00:s"),
    ],
)
async def test_a_nul_in_token_credentials_is_refused_not_a_5xx(
    client: httpx.AsyncClient, tenant: TenantFixture, data: dict[str, str], basic: str | None
) -> None:
    headers = {}
    if basic is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(basic.encode()).decode()
    response = await client.post(
        "/oauth/token", data={"grant_type": "client_credentials", **data}, headers=headers
    )
    assert response.status_code in (400, 401), response.text
    await assert_still_usable(client, tenant)


async def test_a_payload_timestamp_outside_utc_range_is_a_warning_not_a_failed_ingest(
    client: httpx.AsyncClient, tenant: TenantFixture
) -> None:
    payload = {"id": "c-edge", "email": "e@d.ge", "updatedAt": "0001-01-01T00:00:00+14:00"}
    body = event_body(event_type="CUSTOMER", payload=payload, entity_id="c-edge")
    created = await client.post("/api/v1/events", json=body, headers=tenant.headers)
    assert created.status_code == 201, created.text
    customer = await client.get("/api/v1/customers/c-edge", headers=tenant.headers)
    assert customer.status_code == 200, customer.text
    problems = (await client.get("/api/v1/read-model/problems", headers=tenant.headers)).json()
    assert [p["event_id"] for p in problems["items"]] == [body["id"]]
    assert "modified time: not a timestamp" in problems["items"][0]["problem"]
    await assert_still_usable(client, tenant)
