"""Webhooks end to end: signed, retried, dead-lettered, replayed, reported."""

from __future__ import annotations

import logging

import pytest
from standardwebhooks import Webhook

from event_collector.runtime import Runtime
from tests.conftest import TenantFixture
from tests.delivery.conftest import WebhookReceiver
from tests.delivery.helpers import (
    attempts,
    create_subscription,
    post_events,
    route,
    wait_status,
    webhook_secret,
)

# The dispatcher runs in this module's app (tests/delivery/conftest.py).
DISPATCHER = True


async def test_webhook_is_signed_and_carries_the_event(
    context: Runtime, client, tenant: TenantFixture, webhook_receiver: WebhookReceiver
) -> None:
    secret = webhook_secret()
    path = f"/ok/{tenant.name}"
    sub = await create_subscription(
        context,
        tenant.name,
        "WEBHOOK",
        {
            "url": webhook_receiver.url(path),
            # Custom headers cannot replace the signed ones.
            "headers": {"X-Custom": "yes", "Webhook-Id": "forged", "Content-Type": "text/plain"},
        },
        secret=secret,
    )
    events = await post_events(client, tenant, 3, payload={"id": "c-1", "email": "a@b.c"})
    made = await route(context, tenant.name, [sub], [e["id"] for e in events])
    await wait_status(context, list(made.values()), "delivered")

    received = webhook_receiver.for_path(path)
    assert len(received) == 3
    verifier = Webhook(secret)
    by_event = {}
    for event in events:
        fetched = await client.get(f"/api/v1/events/{event['id']}", headers=tenant.headers)
        by_event[event["id"]] = fetched.json()
    for request in received:
        body = verifier.verify(request.body, request.headers)  # raises when the signature is bad
        assert request.headers["webhook-id"] == made[(sub, body["id"])]
        assert request.headers["x-custom"] == "yes"
        assert request.headers["content-type"] == "application/json"
        assert {k: v for k, v in body.items() if k != "payload"} == by_event[body["id"]]
        assert body["payload"] == {"id": "c-1", "email": "a@b.c"}

    (attempt,) = await attempts(context, made[(sub, events[0]["id"])])
    assert attempt["outcome"] == "success"
    assert attempt["status_code"] == 204
    assert attempt["latency_ms"] >= 0


async def test_transient_failures_retry_then_succeed_honouring_retry_after(
    context: Runtime, client, tenant: TenantFixture, webhook_receiver: WebhookReceiver
) -> None:
    path = f"/flaky/2/{tenant.name}"
    sub = await create_subscription(
        context,
        tenant.name,
        "WEBHOOK",
        {"url": webhook_receiver.url(path)},
        secret=webhook_secret(),
    )
    (event,) = await post_events(client, tenant)
    made = await route(context, tenant.name, [sub], [event["id"]])
    delivery_id = made[(sub, event["id"])]
    rows = await wait_status(context, [delivery_id], "delivered")
    assert rows[delivery_id]["attempts"] == 3
    log = await attempts(context, delivery_id)
    assert [a["outcome"] for a in log] == ["retry", "retry", "success"]
    assert [a["status_code"] for a in log] == [503, 503, 200]
    # Retry-After: 1 wins over the 0.2 s schedule.
    gap = (log[1]["attempted_at"] - log[0]["attempted_at"]).total_seconds()
    assert gap >= 0.9


async def test_exhausted_retries_dead_letter_then_replay_delivers(
    context: Runtime, client, tenant: TenantFixture, webhook_receiver: WebhookReceiver
) -> None:
    sub = await create_subscription(
        context,
        tenant.name,
        "WEBHOOK",
        {"url": webhook_receiver.url(f"/status/500/{tenant.name}")},
        secret=webhook_secret(),
    )
    events = await post_events(client, tenant, 2)
    made = await route(context, tenant.name, [sub], [e["id"] for e in events])
    ids = list(made.values())
    rows = await wait_status(context, ids, "failed")
    assert all(r["attempts"] == 3 for r in rows.values())  # 1 + len(schedule)
    assert all("HTTP 500" in (r["last_error"] or "") for r in rows.values())

    listed = await client.get(
        f"/api/v1/event-subscription/{sub}/deliveries?status=failed", headers=tenant.headers
    )
    assert listed.status_code == 200
    page = listed.json()
    assert {item["id"] for item in page["items"]} == set(ids)
    item = page["items"][0]
    assert [a["outcome"] for a in item["attemptLog"]] == ["retry", "retry", "failed"]
    assert item["attemptLog"][0]["statusCode"] == 500

    # The receiver is fixed; replay the dead letters.
    from sqlalchemy import update

    from event_collector.models import subscription_table

    async with context.db.write() as conn:
        await conn.execute(
            update(subscription_table)
            .where(subscription_table.c.tenant == tenant.name, subscription_table.c.id == sub)
            .values(destination={"url": webhook_receiver.url(f"/ok/{tenant.name}")})
        )
    replayed = await client.post(
        f"/api/v1/event-subscription/{sub}/replay",
        json={"since": "2000-01-01T00:00:00Z"},
        headers=tenant.headers,
    )
    assert replayed.status_code == 202, replayed.text
    assert replayed.json() == {"replayed": 2}
    await wait_status(context, ids, "delivered")
    assert len(webhook_receiver.for_path(f"/ok/{tenant.name}")) == 2

    # Nothing failed is left; replaying "all" re-sends the delivered ones too.
    again = await client.post(
        f"/api/v1/event-subscription/{sub}/replay",
        json={"since": "2000-01-01T00:00:00Z", "status": "failed"},
        headers=tenant.headers,
    )
    assert again.json() == {"replayed": 0}
    everything = await client.post(
        f"/api/v1/event-subscription/{sub}/replay",
        json={"since": "2000-01-01T00:00:00Z", "status": "all"},
        headers=tenant.headers,
    )
    assert everything.json() == {"replayed": 2}
    await wait_status(context, ids, "delivered")


async def test_deliveries_pagination(
    context: Runtime, client, tenant: TenantFixture, webhook_receiver: WebhookReceiver
) -> None:
    sub = await create_subscription(
        context, tenant.name, "WEBHOOK", {"url": webhook_receiver.url("/ok/page")}
    )
    events = await post_events(client, tenant, 5)
    made = await route(context, tenant.name, [sub], [e["id"] for e in events])
    await wait_status(context, list(made.values()), "delivered")
    seen: list[str] = []
    cursor = None
    while True:
        params = {"limit": 2} | ({"cursor": cursor} if cursor else {})
        response = await client.get(
            f"/api/v1/event-subscription/{sub}/deliveries", params=params, headers=tenant.headers
        )
        assert response.status_code == 200
        page = response.json()
        seen += [item["id"] for item in page["items"]]
        assert all(item["eventId"] in {e["id"] for e in events} for item in page["items"])
        cursor = page["nextCursor"]
        if not cursor:
            break
    assert sorted(seen) == sorted(made.values())
    assert len(seen) == len(set(seen))
    bad = await client.get(
        f"/api/v1/event-subscription/{sub}/deliveries?cursor=nonsense", headers=tenant.headers
    )
    assert bad.status_code == 400


async def test_test_endpoint_reports_success_and_failure_truthfully(
    context: Runtime, client, tenant: TenantFixture, webhook_receiver: WebhookReceiver
) -> None:
    secret = webhook_secret()
    good = await create_subscription(
        context,
        tenant.name,
        "WEBHOOK",
        {"url": webhook_receiver.url(f"/ok/t/{tenant.name}")},
        secret=secret,
    )
    response = await client.post(f"/api/v1/event-subscription/{good}/test", headers=tenant.headers)
    assert response.status_code == 200
    result = response.json()
    assert result["success"] is True
    assert result["statusCode"] == 204
    assert "error" not in result
    assert isinstance(result["latencyMs"], int)
    (request,) = webhook_receiver.for_path(f"/ok/t/{tenant.name}")
    body = Webhook(secret).verify(request.body, request.headers)
    assert body["test"] is True
    assert body["tenant"] == tenant.name

    gone = await create_subscription(
        context, tenant.name, "WEBHOOK", {"url": webhook_receiver.url("/status/410/t")}
    )
    result = (
        await client.post(f"/api/v1/event-subscription/{gone}/test", headers=tenant.headers)
    ).json()
    assert result["success"] is False
    assert result["statusCode"] == 410
    assert "410" in result["error"]

    closed = await create_subscription(
        context, tenant.name, "WEBHOOK", {"url": "http://127.0.0.1:9/nothing-listens"}
    )
    result = (
        await client.post(f"/api/v1/event-subscription/{closed}/test", headers=tenant.headers)
    ).json()
    assert result["success"] is False
    assert "connection failed" in result["error"]
    assert "statusCode" not in result

    private = await create_subscription(
        context, tenant.name, "WEBHOOK", {"url": "http://10.1.2.3/hook"}
    )
    result = (
        await client.post(f"/api/v1/event-subscription/{private}/test", headers=tenant.headers)
    ).json()
    assert result["success"] is False
    # refused without saying where the name pointed (no internal DNS oracle)
    assert result["error"] == "refused: not a public address"

    missing = await client.post("/api/v1/event-subscription/nope/test", headers=tenant.headers)
    assert missing.status_code == 404


async def test_other_tenants_subscriptions_are_not_found(
    context: Runtime,
    client,
    tenant: TenantFixture,
    other_tenant: TenantFixture,
    webhook_receiver: WebhookReceiver,
) -> None:
    sub = await create_subscription(
        context, tenant.name, "WEBHOOK", {"url": webhook_receiver.url("/ok/iso")}
    )
    base = f"/api/v1/event-subscription/{sub}"
    headers = other_tenant.headers
    assert (await client.post(f"{base}/test", headers=headers)).status_code == 404
    assert (await client.get(f"{base}/deliveries", headers=headers)).status_code == 404
    replay = await client.post(
        f"{base}/replay", json={"since": "2000-01-01T00:00:00Z"}, headers=headers
    )
    assert replay.status_code == 404
    assert webhook_receiver.for_path("/ok/iso") == []
    # And the owner sees it.
    assert (await client.get(f"{base}/deliveries", headers=tenant.headers)).status_code == 200
    bad = await client.post(f"{base}/replay", json={"since": "yesterday"}, headers=tenant.headers)
    assert bad.status_code == 400


async def test_secrets_and_payloads_never_logged(
    context: Runtime,
    client,
    tenant: TenantFixture,
    webhook_receiver: WebhookReceiver,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="event_collector")
    caplog.set_level(logging.INFO)
    secret = webhook_secret()
    marker = "payload-marker-7f3a"
    ok = await create_subscription(
        context,
        tenant.name,
        "WEBHOOK",
        {"url": webhook_receiver.url("/ok/log")},
        secret=secret,
    )
    failing = await create_subscription(
        context,
        tenant.name,
        "WEBHOOK",
        {"url": webhook_receiver.url("/status/500/log")},
        secret=secret,
    )
    aws_secret = "aws-secret-value-9c1e"
    sqs = await create_subscription(
        context,
        tenant.name,
        "SQS",
        {
            "queueUrl": "http://127.0.0.1:9/000000000000/none",
            "region": "us-east-1",
            "accessKey": "AKIDLOG",
        },
        secret=aws_secret,
    )
    events = await post_events(client, tenant, 2, payload={"note": marker})
    made = await route(context, tenant.name, [ok, failing, sqs], [e["id"] for e in events])
    await wait_status(context, [made[(ok, e["id"])] for e in events], "delivered")
    await wait_status(context, [made[(failing, e["id"])] for e in events], "failed")
    await wait_status(context, [made[(sqs, e["id"])] for e in events], "failed")
    for sub in (ok, failing, sqs):
        await client.post(f"/api/v1/event-subscription/{sub}/test", headers=tenant.headers)
    text = caplog.text
    for needle in (secret, secret.removeprefix("whsec_"), aws_secret, marker):
        assert needle not in text


async def test_scopes_are_enforced(
    context: Runtime, client, webhook_receiver: WebhookReceiver
) -> None:
    from tests.conftest import make_tenant

    reader = await make_tenant(context, client, scopes=["subscriptions:read"])
    sub = await create_subscription(
        context, reader.name, "WEBHOOK", {"url": webhook_receiver.url("/ok/scopes")}
    )
    base = f"/api/v1/event-subscription/{sub}"
    assert (await client.get(f"{base}/deliveries", headers=reader.headers)).status_code == 200
    assert (await client.post(f"{base}/test", headers=reader.headers)).status_code == 403
    replay = await client.post(
        f"{base}/replay", json={"since": "2000-01-01T00:00:00Z"}, headers=reader.headers
    )
    assert replay.status_code == 403
    anonymous = await client.get(f"{base}/deliveries")
    assert anonymous.status_code == 401
    assert webhook_receiver.for_path("/ok/scopes") == []
