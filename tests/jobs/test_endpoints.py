"""The Jobs API over HTTP on both databases: the seed's bodies verbatim, every endpoint and
status code, validation messages that name the field, tenant isolation."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from event_collector.runtime import Runtime
from tests.conftest import TenantFixture, make_tenant
from tests.jobs.helpers import SEED_CREATE, SEED_UPDATE, seed_shaped

JOBS = "/api/v1/jobs"


async def _create(client: httpx.AsyncClient, tenant: TenantFixture, **changes: Any) -> Any:
    response = await client.post(JOBS, json=seed_shaped(**changes), headers=tenant.headers)
    assert response.status_code == 201, response.text
    return response.json()


def _problem(response: httpx.Response) -> tuple[list[Any], str]:
    assert response.status_code == 400, response.text
    body = response.json()
    return body["errors"][0]["loc"], body["detail"]


async def test_seed_create_body_verbatim_is_a_400_naming_the_item_count(
    client: httpx.AsyncClient, tenant: TenantFixture
) -> None:
    response = await client.post(JOBS, json=SEED_CREATE, headers=tenant.headers)
    loc, detail = _problem(response)
    assert loc == ["number_of_items_in_email"]
    assert "-1" in detail
    # With a usable item count the seed's "string" schedules are the next problem.
    response = await client.post(
        JOBS, json={**SEED_CREATE, "number_of_items_in_email": 1}, headers=tenant.headers
    )
    loc, detail = _problem(response)
    assert loc == ["schedule"]
    assert "5 fields" in detail


async def test_seed_update_body_verbatim_is_a_400(
    client: httpx.AsyncClient, tenant: TenantFixture
) -> None:
    job = await _create(client, tenant)
    response = await client.put(f"{JOBS}/{job['id']}", json=SEED_UPDATE, headers=tenant.headers)
    loc, _ = _problem(response)
    assert loc == ["number_of_items_in_email"]


async def test_create_get_update_delete_by_post(
    client: httpx.AsyncClient, tenant: TenantFixture
) -> None:
    body = seed_shaped(notification="back_in_stock", timezone="America/New_York")
    created = await client.post(JOBS, json=body, headers=tenant.headers)
    assert created.status_code == 201, created.text
    job = created.json()
    assert job["id"] == body["id"]
    assert job["notification"] == "BACK_IN_STOCK"
    assert job["deleted"] is False
    assert job["job_parameters"] == {"campaign_id": "string", "utm_medium": "string"}
    # scheduleExpression wins: AWS day-of-week 2 is Monday, 09:00 New York time.
    assert job["schedule_description"] == "At 09:00 on Monday (America/New_York time)"
    local = datetime.fromisoformat(job["next_run_at_local"])
    assert (local.weekday(), local.hour, local.minute) == (0, 9, 0)
    assert str(local.tzinfo) != "UTC"
    utc = datetime.fromisoformat(job["next_run_at"].replace("Z", "+00:00"))
    assert utc == local.astimezone(UTC)
    assert utc > datetime.now(UTC)
    assert job["last_run"] is None

    again = await client.post(JOBS, json=body, headers=tenant.headers)
    assert again.status_code == 409

    fetched = await client.get(f"{JOBS}/{body['id']}", headers=tenant.headers)
    assert fetched.status_code == 200
    assert fetched.json() == job

    # The seed's update shape: fields present replace, job_parameters merge key by key.
    update = {k: v for k, v in body.items() if k != "id"}
    update.update(
        number_of_items_in_email=-1,
        job_parameters={"utm_medium": "email", "min_pct": 10},
        scheduleExpression="rate(15 minutes)",
    )
    updated = await client.put(f"{JOBS}/{body['id']}", json=update, headers=tenant.headers)
    assert updated.status_code == 200, updated.text
    assert updated.json()["job_parameters"] == {
        "campaign_id": "string",
        "utm_medium": "email",
        "min_pct": 10,
    }
    assert updated.json()["number_of_items_in_email"] == -1
    assert updated.json()["schedule_description"].startswith("Every 15 minutes")

    # Only one field: the rest is kept.
    partial = await client.put(
        f"{JOBS}/{body['id']}", json={"is_active": False}, headers=tenant.headers
    )
    assert partial.status_code == 200
    assert partial.json()["is_active"] is False
    assert partial.json()["next_run_at"] is None  # an inactive job does not run
    assert partial.json()["scheduleExpression"] == "rate(15 minutes)"

    deleted = await client.post(f"{JOBS}/{body['id']}", headers=tenant.headers)
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert (await client.post(f"{JOBS}/{body['id']}", headers=tenant.headers)).status_code == 204
    assert (await client.delete(f"{JOBS}/{body['id']}", headers=tenant.headers)).status_code == 204
    gone = await client.get(f"{JOBS}/{body['id']}", headers=tenant.headers)
    assert gone.status_code == 404
    shown = await client.get(
        f"{JOBS}/{body['id']}", params={"include_deleted": "true"}, headers=tenant.headers
    )
    assert shown.status_code == 200
    assert shown.json()["deleted"] is True
    assert shown.json()["next_run_at"] is None
    # A deleted job never runs.
    run = await client.post(f"{JOBS}/{body['id']}/run", headers=tenant.headers)
    assert run.status_code == 409
    dry = await client.post(
        f"{JOBS}/{body['id']}/run", params={"dry_run": "true"}, headers=tenant.headers
    )
    assert dry.status_code == 409


async def test_delete_verb_and_unknown_ids(
    client: httpx.AsyncClient, tenant: TenantFixture
) -> None:
    job = await _create(client, tenant)
    assert (await client.delete(f"{JOBS}/{job['id']}", headers=tenant.headers)).status_code == 204
    for method, path in (
        ("GET", f"{JOBS}/nope"),
        ("PUT", f"{JOBS}/nope"),
        ("POST", f"{JOBS}/nope"),
        ("DELETE", f"{JOBS}/nope"),
        ("POST", f"{JOBS}/nope/run"),
        ("GET", f"{JOBS}/nope/runs"),
        ("GET", f"{JOBS}/{job['id']}/runs/nope"),
    ):
        response = await client.request(
            method, path, json={} if method == "PUT" else None, headers=tenant.headers
        )
        assert response.status_code == 404, (method, path, response.text)


async def test_created_without_id_gets_one(
    client: httpx.AsyncClient, tenant: TenantFixture
) -> None:
    body = seed_shaped()
    del body["id"]
    response = await client.post(JOBS, json=body, headers=tenant.headers)
    assert response.status_code == 201
    assert len(response.json()["id"]) == 36


async def test_put_with_a_different_id_is_a_400(
    client: httpx.AsyncClient, tenant: TenantFixture
) -> None:
    job = await _create(client, tenant)
    response = await client.put(
        f"{JOBS}/{job['id']}", json={"id": "other", "is_active": False}, headers=tenant.headers
    )
    loc, _ = _problem(response)
    assert loc == ["id"]
    same = await client.put(
        f"{JOBS}/{job['id']}", json={"id": job["id"], "is_active": False}, headers=tenant.headers
    )
    assert same.status_code == 200


@pytest.mark.parametrize(
    ("changes", "field", "words"),
    [
        ({"notification": "SOMETIMES"}, "notification", "REMINDER"),
        ({"number_of_items_in_email": 0}, "number_of_items_in_email", "-1"),
        ({"number_of_items_in_email": -2}, "number_of_items_in_email", "-1"),
        ({"number_of_items_in_email": "many"}, "number_of_items_in_email", "integer"),
        ({"number_of_items_in_email": 2**70}, "number_of_items_in_email", "1000"),
        ({"template_id": "d-\u0000"}, "template_id", "control characters"),
        ({"schedule": "61 * * * *", "scheduleExpression": None}, "schedule", "minute"),
        ({"schedule": "0 9 * *", "scheduleExpression": None}, "schedule", "5 fields"),
        ({"schedule": "0 0 9 * * *", "scheduleExpression": None}, "schedule", "5 fields"),
        ({"schedule": "rate(5 minutes)", "scheduleExpression": None}, "schedule", "5-field"),
        ({"scheduleExpression": "string"}, "scheduleExpression", "5 fields"),
        ({"scheduleExpression": "cron(0 9 * * 1 *)"}, "scheduleExpression", "'?'"),
        ({"scheduleExpression": "cron(0 9 ? * 8 *)"}, "scheduleExpression", "1 = SUN"),
        ({"scheduleExpression": "cron(0 9 ? * 2)"}, "scheduleExpression", "6 fields"),
        ({"scheduleExpression": "cron(0 9 ? * 2 1999)"}, "scheduleExpression", "never fires"),
        ({"scheduleExpression": "cron(0 9 ? * 2 3000)"}, "scheduleExpression", "year"),
        ({"scheduleExpression": "rate(0 minutes)"}, "scheduleExpression", "N >= 1"),
        ({"scheduleExpression": "rate(5 weeks)"}, "scheduleExpression", "rate(N"),
        ({"timezone": "Mars/Olympus"}, "timezone", "IANA"),
        ({"timezone": "../etc/passwd"}, "timezone", "IANA"),
        ({"template_id": None}, "template_id", "required"),
        ({"schedule": None, "scheduleExpression": None}, "schedule", "required"),
    ],
)
async def test_validation_names_the_field(
    client: httpx.AsyncClient,
    tenant: TenantFixture,
    changes: dict[str, Any],
    field: str,
    words: str,
) -> None:
    response = await client.post(JOBS, json=seed_shaped(**changes), headers=tenant.headers)
    loc, detail = _problem(response)
    assert loc == [field]
    assert field in detail, detail
    assert words in detail, detail


@pytest.mark.parametrize(
    "changes",
    [
        {"scheduleExpression": "cron(0/15 * ? * MON-FRI *)"},
        {"scheduleExpression": "cron(15 10 L * ? *)"},
        {"scheduleExpression": "cron(0 9 ? * 6#3 2026-2030)"},
        {"scheduleExpression": "rate(1 minute)"},
        {"scheduleExpression": "rate(2 hours)"},
        {"scheduleExpression": "rate(1 day)"},
        {"scheduleExpression": "*/5 * * * *"},
        {"scheduleExpression": ""},  # blank: absent, `schedule` applies
        {"timezone": "Australia/Sydney"},
        {"number_of_items_in_email": -1},
        {"template_id": None, "job_parameters": {"output": "message"}},
        {"is_scheduled": False, "schedule": None, "scheduleExpression": None},
        {"notification": "price_drop"},
    ],
)
async def test_valid_variants_are_accepted(
    client: httpx.AsyncClient, tenant: TenantFixture, changes: dict[str, Any]
) -> None:
    response = await client.post(JOBS, json=seed_shaped(**changes), headers=tenant.headers)
    assert response.status_code == 201, response.text


async def test_list_filters_and_cursor_pages(
    client: httpx.AsyncClient, tenant: TenantFixture
) -> None:
    ids = []
    for index in range(5):
        job = await _create(
            client,
            tenant,
            notification="REMINDER" if index % 2 else "LOW_STOCK",
            is_active=index != 4,
        )
        ids.append(job["id"])
    await client.delete(f"{JOBS}/{ids[0]}", headers=tenant.headers)

    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = await client.get(JOBS, params=params, headers=tenant.headers)
        assert page.status_code == 200
        seen += [item["id"] for item in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[1:]

    everything = await client.get(JOBS, params={"include_deleted": "true"}, headers=tenant.headers)
    assert [item["id"] for item in everything.json()["items"]] == ids
    reminders = await client.get(JOBS, params={"notification": "reminder"}, headers=tenant.headers)
    assert [item["id"] for item in reminders.json()["items"]] == [ids[1], ids[3]]
    inactive = await client.get(JOBS, params={"active": "false"}, headers=tenant.headers)
    assert [item["id"] for item in inactive.json()["items"]] == [ids[4]]
    bad = await client.get(JOBS, params={"notification": "NEVER"}, headers=tenant.headers)
    assert _problem(bad)[0] == ["notification"]
    bad_cursor = await client.get(JOBS, params={"cursor": "!!"}, headers=tenant.headers)
    assert bad_cursor.status_code == 400


async def test_runs_manual_and_dry(
    client: httpx.AsyncClient, tenant: TenantFixture, context: Runtime
) -> None:
    job = await _create(client, tenant)
    dry = await client.post(
        f"{JOBS}/{job['id']}/run", params={"dry_run": "true"}, headers=tenant.headers
    )
    assert dry.status_code == 200
    # The notification rules over a tenant with no wishlists: nothing to send, every count 0.
    assert dry.json()["messages"] == []
    assert "considered" in dry.json()["counts"], dry.json()
    assert set(dry.json()["counts"].values()) == {0}
    runs = await client.get(f"{JOBS}/{job['id']}/runs", headers=tenant.headers)
    assert runs.json() == {"items": [], "next_cursor": None}  # a dry run records nothing

    accepted = await client.post(f"{JOBS}/{job['id']}/run", headers=tenant.headers)
    assert accepted.status_code == 202
    assert accepted.json()["status"] == "queued"
    run_id = accepted.json()["run_id"]
    run = await client.get(f"{JOBS}/{job['id']}/runs/{run_id}", headers=tenant.headers)
    assert run.status_code == 200
    assert run.json()["trigger"] == "manual"
    assert run.json()["scheduled_for"] is None
    assert run.json()["status"] == "queued"
    fetched = await client.get(f"{JOBS}/{job['id']}", headers=tenant.headers)
    assert fetched.json()["last_run"]["id"] == run_id

    second = await client.post(f"{JOBS}/{job['id']}/run", headers=tenant.headers)
    page = await client.get(f"{JOBS}/{job['id']}/runs", params={"limit": 1}, headers=tenant.headers)
    assert [r["id"] for r in page.json()["items"]] == [second.json()["run_id"]]
    rest = await client.get(
        f"{JOBS}/{job['id']}/runs",
        params={"cursor": page.json()["next_cursor"]},
        headers=tenant.headers,
    )
    assert [r["id"] for r in rest.json()["items"]] == [run_id]


async def test_tenant_isolation(
    client: httpx.AsyncClient, tenant: TenantFixture, other_tenant: TenantFixture
) -> None:
    job = await _create(client, tenant)
    run = await client.post(f"{JOBS}/{job['id']}/run", headers=tenant.headers)
    run_id = run.json()["run_id"]
    # The same id is free in another tenant.
    theirs = await client.post(JOBS, json=seed_shaped(id=job["id"]), headers=other_tenant.headers)
    assert theirs.status_code == 201
    await client.delete(f"{JOBS}/{job['id']}", headers=other_tenant.headers)
    mine = await client.get(f"{JOBS}/{job['id']}", headers=tenant.headers)
    assert mine.status_code == 200
    assert mine.json()["deleted"] is False

    hidden = await _create(client, tenant)
    for method, path in (
        ("GET", f"{JOBS}/{hidden['id']}"),
        ("PUT", f"{JOBS}/{hidden['id']}"),
        ("POST", f"{JOBS}/{hidden['id']}"),
        ("DELETE", f"{JOBS}/{hidden['id']}"),
        ("POST", f"{JOBS}/{hidden['id']}/run"),
        ("GET", f"{JOBS}/{hidden['id']}/runs"),
        ("GET", f"{JOBS}/{job['id']}/runs/{run_id}"),
    ):
        response = await client.request(
            method,
            path,
            json={"is_active": False} if method == "PUT" else None,
            headers=other_tenant.headers,
        )
        assert response.status_code == 404, (method, path)
    listed = await client.get(
        JOBS, params={"include_deleted": "true"}, headers=other_tenant.headers
    )
    assert [item["id"] for item in listed.json()["items"]] == [job["id"]]
    assert listed.json()["items"][0]["deleted"] is True
    still = await client.get(f"{JOBS}/{hidden['id']}", headers=tenant.headers)
    assert still.json()["is_active"] is True


async def test_auth_and_scopes(
    client: httpx.AsyncClient, context: Runtime, tenant: TenantFixture
) -> None:
    job = await _create(client, tenant)
    assert (await client.get(JOBS)).status_code == 401
    no_tenant = {"Authorization": tenant.headers["Authorization"]}
    assert (await client.get(JOBS, headers=no_tenant)).status_code == 400
    reader = await make_tenant(context, client, scopes=["jobs:read"])
    assert (await client.get(JOBS, headers=reader.headers)).status_code == 200
    denied = await client.post(JOBS, json=seed_shaped(), headers=reader.headers)
    assert denied.status_code == 403
    events_only = await make_tenant(context, client, scopes=["events:read"])
    assert (await client.get(JOBS, headers=events_only.headers)).status_code == 403
    wrong_tenant = {**tenant.headers, "X-TWC-Tenant": reader.name}
    assert (await client.get(f"{JOBS}/{job['id']}", headers=wrong_tenant)).status_code == 403


async def test_malformed_bodies_are_400(client: httpx.AsyncClient, tenant: TenantFixture) -> None:
    not_json = await client.post(
        JOBS,
        content=b"{not json",
        headers={**tenant.headers, "Content-Type": "application/json"},
    )
    assert not_json.status_code == 400
    not_object = await client.post(JOBS, json=[1, 2], headers=tenant.headers)
    assert not_object.status_code == 400
    missing = await client.post(JOBS, json={"schedule": "* * * * *"}, headers=tenant.headers)
    assert _problem(missing)[0] == ["notification"]


async def test_seed_shaped_create_with_deleted_true_stores_a_deleted_job(
    client: httpx.AsyncClient, tenant: TenantFixture
) -> None:
    body = seed_shaped(deleted=True)
    created = await client.post(JOBS, json=body, headers=tenant.headers)
    assert created.status_code == 201
    assert created.json()["deleted"] is True
    assert created.json()["next_run_at"] is None  # never runs
    assert (await client.get(f"{JOBS}/{body['id']}", headers=tenant.headers)).status_code == 404
    listed = await client.get(JOBS, headers=tenant.headers)
    assert body["id"] not in [item["id"] for item in listed.json()["items"]]
    restored = await client.put(
        f"{JOBS}/{body['id']}", json={"deleted": False}, headers=tenant.headers
    )
    assert restored.status_code == 200
    assert restored.json()["next_run_at"] is not None
