"""The tenant's deliveries across subscriptions (GET /api/v1/deliveries) and replay by id
(POST /api/v1/deliveries/replay): what the console's dead-letter page uses."""

from __future__ import annotations

from event_collector.runtime import Runtime
from tests.conftest import TenantFixture
from tests.delivery.conftest import WebhookReceiver
from tests.delivery.helpers import create_subscription, post_events, route, wait_status

# The dispatcher runs in this module's app (tests/delivery/conftest.py).
DISPATCHER = True


async def test_list_filter_and_replay_by_id(
    context: Runtime,
    client,
    tenant: TenantFixture,
    other_tenant: TenantFixture,
    webhook_receiver: WebhookReceiver,
) -> None:
    failing = await create_subscription(
        context, tenant.name, "WEBHOOK", {"url": webhook_receiver.url("/status/500/tenant")}
    )
    working = await create_subscription(
        context, tenant.name, "WEBHOOK", {"url": webhook_receiver.url("/ok/tenant")}
    )
    events = await post_events(client, tenant, 2)
    event_ids = [e["id"] for e in events]
    dead = list((await route(context, tenant.name, [failing], event_ids)).values())
    fine = list((await route(context, tenant.name, [working], event_ids)).values())
    await wait_status(context, dead, "failed")
    await wait_status(context, fine, "delivered")

    async def listed(**query: str) -> set[str]:
        response = await client.get("/api/v1/deliveries", params=query, headers=tenant.headers)
        assert response.status_code == 200, response.text
        return {item["id"] for item in response.json()["items"]}

    assert await listed() == set(dead + fine)
    assert await listed(status="failed") == set(dead)
    assert await listed(subscription_id=working) == set(fine)
    by_event = await listed(event_id=event_ids[0])
    assert len(by_event) == 2
    assert by_event <= set(dead + fine)
    assert await listed(event_id="no-such-event") == set()
    # Another tenant sees none of them, and cannot replay them.
    other = await client.get("/api/v1/deliveries", headers=other_tenant.headers)
    assert other.json()["items"] == []
    stolen = await client.post(
        "/api/v1/deliveries/replay", json={"deliveryIds": dead}, headers=other_tenant.headers
    )
    assert stolen.status_code == 202
    assert stolen.json() == {"replayed": 0}

    # Replay one dead letter by id: only that one is queued again (and fails again).
    one = await client.post(
        "/api/v1/deliveries/replay", json={"deliveryIds": [dead[0]]}, headers=tenant.headers
    )
    assert one.json() == {"replayed": 1}
    rows = await wait_status(context, [dead[0]], "failed")
    assert rows[dead[0]]["attempts"] == 3
    # status=failed leaves the delivered ones alone; status=all takes them too.
    assert (
        await client.post(
            "/api/v1/deliveries/replay", json={"deliveryIds": fine}, headers=tenant.headers
        )
    ).json() == {"replayed": 0}
    everything = await client.post(
        "/api/v1/deliveries/replay",
        json={"deliveryIds": fine, "status": "all"},
        headers=tenant.headers,
    )
    assert everything.json() == {"replayed": 2}
    await wait_status(context, fine, "delivered")


async def test_bad_replay_requests_are_400(client, tenant: TenantFixture) -> None:
    for body in ({}, {"deliveryIds": []}, {"deliveryIds": ["x"], "since": "2000-01-01"}):
        response = await client.post("/api/v1/deliveries/replay", json=body, headers=tenant.headers)
        assert response.status_code == 400, body
    bad_status = await client.get(
        "/api/v1/deliveries", params={"status": "lost"}, headers=tenant.headers
    )
    assert bad_status.status_code == 400
