"""GET /api/v1/notifications and GET/PUT /api/v1/email-settings: filters, pages, scopes,
tenant isolation, the SendGrid key sealed and masked."""

from __future__ import annotations

import logging

from sqlalchemy import select

from event_collector.models.notifications import email_settings_table
from tests.conftest import make_tenant
from tests.notifications.helpers import Shop, job, notifications, run, seal_with_a_removed_key

KEY = "SG.secret-key-0123456789abcdef"


async def _two_runs(client, tenant, context) -> None:
    shop = Shop(client, tenant)
    await shop.product("p1")
    await shop.variant("v1")
    await shop.price("v1", "10.00")
    for customer in ("c1", "c2", "c3"):
        await shop.shopper(customer, ["v1"])
    await shop.price("v1", "10.00", "5.00")
    await run(context, tenant, job("PRICE_DROP"), run_id="r1")
    await run(context, tenant, job("REMINDER", job_id="job-2"), run_id="r2")


async def test_filters_and_cursor_pages(client, tenant, context) -> None:
    await _two_runs(client, tenant, context)
    assert len(await notifications(client, tenant)) == 6
    assert {n["customer_id"] for n in await notifications(client, tenant, job_id="job-1")} == {
        "c1",
        "c2",
        "c3",
    }
    assert [n["run_id"] for n in await notifications(client, tenant, customer_id="c2")] == [
        "r1",
        "r2",
    ]
    assert len(await notifications(client, tenant, run_id="r2", status="sent")) == 3
    assert await notifications(client, tenant, status="failed") == []
    seen, cursor = [], None
    while True:
        params = {"limit": 4, **({"cursor": cursor} if cursor else {})}
        response = await client.get("/api/v1/notifications", params=params, headers=tenant.headers)
        body = response.json()
        seen += [n["id"] for n in body["notifications"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert len(seen) == len(set(seen)) == 6


async def test_bad_queries_are_400(client, tenant) -> None:
    for params in ({"cursor": "nope"}, {"status": "lost"}, {"limit": 0}, {"limit": 9999}):
        response = await client.get("/api/v1/notifications", params=params, headers=tenant.headers)
        assert response.status_code == 400, params


async def test_tenants_see_only_their_own(client, tenant, other_tenant, context) -> None:
    await _two_runs(client, tenant, context)
    assert await notifications(client, other_tenant) == []
    assert await notifications(client, other_tenant, job_id="job-1") == []
    response = await client.get(
        "/api/v1/notifications",
        headers={**other_tenant.headers, "X-TWC-Tenant": tenant.name},
    )
    assert response.status_code == 403


async def test_scopes(client, context) -> None:
    events_only = await make_tenant(context, client, scopes=["events:read"])
    assert (
        await client.get("/api/v1/notifications", headers=events_only.headers)
    ).status_code == 403
    reader = await make_tenant(context, client, scopes=["jobs:read"])
    assert (await client.get("/api/v1/notifications", headers=reader.headers)).status_code == 200
    assert (await client.get("/api/v1/email-settings", headers=reader.headers)).status_code == 200
    put = await client.put("/api/v1/email-settings", json={}, headers=reader.headers)
    assert put.status_code == 403
    assert (await client.get("/api/v1/notifications")).status_code == 401


async def test_email_settings_key_sealed_masked_and_isolated(
    client, tenant, other_tenant, context, caplog
) -> None:
    caplog.set_level(logging.DEBUG)
    response = await client.get("/api/v1/email-settings", headers=tenant.headers)
    assert response.status_code == 200
    assert response.json()["effective"]["provider"] == context.settings.email_provider
    body = {
        "provider": "sendgrid",
        "sender_email": "shop@example.com",
        "sender_name": "Shop",
        "reply_to_email": "help@example.com",
        "sendgrid_api_key": KEY,
    }
    response = await client.put("/api/v1/email-settings", json=body, headers=tenant.headers)
    assert response.status_code == 200, response.text
    saved = response.json()
    assert saved["sendgrid_api_key"] == "********" + KEY[-4:]
    assert saved["effective"] == {
        "provider": "sendgrid",
        "sender_email": "shop@example.com",
        "sendgrid_api_key_set": True,
        "sendgrid_api_key_unreadable": False,
    }
    # A GET body sent back (masked key) keeps the key; other fields change.
    again = {**saved, "sender_name": "Shop 2"}
    for name in ("effective", "updated_at"):
        again.pop(name)
    response = await client.put("/api/v1/email-settings", json=again, headers=tenant.headers)
    assert response.status_code == 200
    assert response.json()["sender_name"] == "Shop 2"
    async with context.db.read() as conn:
        row = (
            (
                await conn.execute(
                    select(email_settings_table).where(email_settings_table.c.tenant == tenant.name)
                )
            )
            .mappings()
            .one()
        )
    assert KEY not in str(dict(row))
    sealed = row["sendgrid_api_key_sealed"]
    assert context.secrets.open(sealed, associated_data=f"email-settings:{tenant.name}") == KEY
    got = await client.get("/api/v1/email-settings", headers=tenant.headers)
    assert KEY not in got.text
    other = await client.get("/api/v1/email-settings", headers=other_tenant.headers)
    assert other.json()["provider"] is None
    assert other.json()["sendgrid_api_key"] is None
    assert KEY not in caplog.text
    # Clearing returns to the server default.
    response = await client.put(
        "/api/v1/email-settings",
        json={"provider": None, "sendgrid_api_key": None},
        headers=tenant.headers,
    )
    assert response.json()["effective"]["provider"] == context.settings.email_provider
    assert response.json()["sendgrid_api_key"] is None


async def test_email_settings_with_a_key_no_secret_key_opens_are_shown_flagged(
    client, tenant, context
) -> None:
    """The secret key that sealed the SendGrid key was removed: GET still answers (a bare mask
    and the flag), never 500; a new key PUT replaces it."""
    body = {"provider": "sendgrid", "sendgrid_api_key": KEY}
    assert (
        await client.put("/api/v1/email-settings", json=body, headers=tenant.headers)
    ).status_code == 200
    await seal_with_a_removed_key(context, tenant.name)
    response = await client.get("/api/v1/email-settings", headers=tenant.headers)
    assert response.status_code == 200, response.text
    shown = response.json()
    assert shown["sendgrid_api_key"] == "********"
    assert shown["effective"]["sendgrid_api_key_set"] is True
    assert shown["effective"]["sendgrid_api_key_unreadable"] is True
    # Another field changed (the unreadable key kept), then a new key: readable again.
    response = await client.put(
        "/api/v1/email-settings", json={"sender_name": "Shop"}, headers=tenant.headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["effective"]["sendgrid_api_key_unreadable"] is True
    response = await client.put("/api/v1/email-settings", json=body, headers=tenant.headers)
    assert response.json()["sendgrid_api_key"] == "********" + KEY[-4:]
    assert response.json()["effective"]["sendgrid_api_key_unreadable"] is False


async def test_email_settings_validation(client, tenant) -> None:
    for body in (
        {"provider": "pigeon"},
        {"sender_email": "not-an-address"},
        {"unknown": 1},
        {"sender_name": "x" * 300},
    ):
        response = await client.put("/api/v1/email-settings", json=body, headers=tenant.headers)
        assert response.status_code == 400, body
