"""Routing: events become delivery rows in their own transaction, by DESIGN §3.2's rules."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from event_collector.app import create_app
from event_collector.delivery.messages import event_message
from event_collector.delivery.routing import route_events
from event_collector.events.model import StoredEvent
from event_collector.events.repository import EventRepository
from event_collector.kit.db import utcnow
from event_collector.kit.settings import Settings
from event_collector.models import delivery_table
from event_collector.runtime import Runtime
from tests.conftest import TenantFixture
from tests.factories import event_body
from tests.subscriptions.helpers import URL, subscription_body

EVENTS = "/api/v1/events"


async def subscribe(
    client: httpx.AsyncClient, tenant: TenantFixture, entity_type: str = "CUSTOMER", **fields: Any
) -> str:
    response = await client.post(
        URL, json=subscription_body(entity_type=entity_type, **fields), headers=tenant.headers
    )
    assert response.status_code == 201, response.text
    subscription_id: str = response.json()["id"]
    return subscription_id


async def post_event(client: httpx.AsyncClient, tenant: TenantFixture, **kwargs: Any) -> str:
    body = event_body(**kwargs)
    response = await client.post(EVENTS, json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    event_id: str = body["id"]
    return event_id


async def deliveries(context: Runtime, tenant: str) -> list[dict[str, Any]]:
    """The tenant's delivery rows with the id of the event whose message each one carries."""
    async with context.db.read() as conn:
        result = await conn.execute(
            select(delivery_table)
            .where(delivery_table.c.tenant == tenant)
            .order_by(delivery_table.c.created_at, delivery_table.c.subscription_id)
        )
        rows = [dict(row._mapping) for row in result]
    for row in rows:
        row["event_id"] = row["attributes"]["event_id"]
    return rows


FLAGS = ("subscribeCreate", "subscribeChange", "subscribeDelete")


@pytest.mark.parametrize(
    ("flags", "operation", "routed"),
    [
        ((True, True, True), "CREATE", True),
        ((True, True, True), "BULK_CREATE", True),
        ((True, True, True), "UPDATE", True),
        ((True, True, True), "BULK_UPDATE", True),
        ((True, True, True), "DELETE", True),
        ((True, True, True), "READ", False),
        ((False, True, True), "CREATE", False),
        ((False, True, True), "BULK_CREATE", False),
        ((False, True, True), "UPDATE", True),
        ((True, False, True), "UPDATE", False),
        ((True, False, True), "BULK_UPDATE", False),
        ((True, False, True), "DELETE", True),
        ((True, True, False), "DELETE", False),
        ((True, True, False), "CREATE", True),
        ((False, False, False), "CREATE", False),
    ],
)
async def test_operation_flags(
    client,
    tenant: TenantFixture,
    context: Runtime,
    flags: tuple[bool, bool, bool],
    operation: str,
    routed: bool,
) -> None:
    subscription_id = await subscribe(client, tenant, **dict(zip(FLAGS, flags, strict=True)))
    event_id = await post_event(client, tenant, event_type="CUSTOMER", operation=operation)
    rows = await deliveries(context, tenant.name)
    assert [(r["subscription_id"], r["event_id"]) for r in rows] == (
        [(subscription_id, event_id)] if routed else []
    )


@pytest.mark.parametrize(
    ("subscribed", "event", "routed"),
    [
        ("CUSTOMER", {"event_type": "CUSTOMER"}, True),
        ("CUSTOMER", {"event_type": "customer"}, True),
        ("CUSTOMER", {"event_type": "ORDER"}, False),
        ("WISHLIST", {"event_type": "WISHLIST"}, True),
        ("WISHLIST", {"event_type": "WISHLIST_ITEM"}, True),
        ("WISHLIST_ITEM", {"event_type": "WISHLIST_ITEM"}, True),
        ("WISHLIST_ITEM", {"event_type": "WISHLIST"}, False),
        ("PRICE", {"event_type": "PRICE"}, True),
        # entity type from entity_name when event_type names no entity
        ("PRODUCT", {"event_type": "ENTITY_EVENT", "entity_name": "product"}, True),
        ("PRODUCT", {"event_type": "ENTITY_EVENT", "entity_name": "gadget"}, False),
        # no entity type at all: stored, never routed
        ("CUSTOMER", {"event_type": "OTHER"}, False),
        ("NOTIFICATION", {"event_type": "EVENT"}, False),
    ],
)
async def test_entity_type_matching(
    client,
    tenant: TenantFixture,
    context: Runtime,
    subscribed: str,
    event: dict[str, Any],
    routed: bool,
) -> None:
    subscription_id = await subscribe(client, tenant, subscribed)
    event_id = await post_event(client, tenant, **event)
    rows = await deliveries(context, tenant.name)
    assert [(r["subscription_id"], r["event_id"]) for r in rows] == (
        [(subscription_id, event_id)] if routed else []
    )


async def test_delivery_row_shape_and_one_row_per_subscription(
    client, tenant: TenantFixture, other_tenant: TenantFixture, context: Runtime
) -> None:
    first = await subscribe(client, tenant)
    second = await subscribe(client, tenant)
    await subscribe(client, tenant, "ORDER")
    await subscribe(client, other_tenant)  # another tenant's subscription gets nothing
    event_id = await post_event(client, tenant)
    rows = await deliveries(context, tenant.name)
    assert sorted(r["subscription_id"] for r in rows) == sorted([first, second])
    async with context.db.read() as conn:
        stored = await EventRepository(conn).get(tenant.name, event_id)
    assert stored is not None
    message = event_message(stored)
    for row in rows:
        assert row["body"] == message.body
        assert row["attributes"] == message.attributes
        assert row["ordering_key"] == message.ordering_key
        assert row["deduplication_id"] == row["id"]
        assert row["entity_type"] == "CUSTOMER"
        assert row["tenant"] == tenant.name
        assert row["status"] == "pending"
        assert row["attempts"] == 0
        assert row["next_attempt_at"] == row["created_at"]
        assert row["lease_owner"] is None
        assert len(row["id"]) == 36
    assert len({row["id"] for row in rows}) == 2
    assert await deliveries(context, other_tenant.name) == []


async def test_inactive_subscriptions_get_nothing_and_reactivated_ones_resume(
    client, tenant: TenantFixture, context: Runtime
) -> None:
    subscription_id = await subscribe(client, tenant)
    never = await subscribe(client, tenant, active=False)
    path = f"{URL}/{subscription_id}"
    assert (await client.put(f"{path}/deactivate", headers=tenant.headers)).status_code == 202
    await post_event(client, tenant)
    assert await deliveries(context, tenant.name) == []
    assert (await client.put(f"{path}/activate", headers=tenant.headers)).status_code == 200
    event_id = await post_event(client, tenant)
    rows = await deliveries(context, tenant.name)
    assert [(r["subscription_id"], r["event_id"]) for r in rows] == [(subscription_id, event_id)]
    assert never not in {r["subscription_id"] for r in rows}


async def test_idempotent_repost_creates_no_delivery(
    client, tenant: TenantFixture, context: Runtime
) -> None:
    await subscribe(client, tenant)
    body = event_body()
    assert (await client.post(EVENTS, json=body, headers=tenant.headers)).status_code == 201
    assert (await client.post(EVENTS, json=body, headers=tenant.headers)).status_code == 200
    batch = await client.post(f"{EVENTS}/batch", json=[body], headers=tenant.headers)
    assert batch.json()["duplicate"] == 1
    assert len(await deliveries(context, tenant.name)) == 1


async def test_batch_routes_every_valid_event(
    client, tenant: TenantFixture, context: Runtime
) -> None:
    customers = await subscribe(client, tenant, "CUSTOMER", subscribeDelete=False)
    wishlists = await subscribe(client, tenant, "WISHLIST")
    items = [
        event_body(event_type="CUSTOMER", operation="CREATE"),
        event_body(event_type="CUSTOMER", operation="DELETE"),  # flag off
        event_body(event_type="WISHLIST_ITEM", operation="BULK_CREATE"),
        event_body(event_type="CUSTOMER", operation="READ"),  # never
        {"event_type": "NOPE"},  # invalid
        event_body(event_type="CUSTOMER", operation="UPDATE"),
    ]
    response = await client.post(f"{EVENTS}/batch", json={"events": items}, headers=tenant.headers)
    assert response.status_code == 200, response.text
    assert (response.json()["created"], response.json()["invalid"]) == (5, 1)
    rows = await deliveries(context, tenant.name)
    assert sorted((r["event_id"], r["subscription_id"]) for r in rows) == sorted(
        [
            (items[0]["id"], customers),
            (items[2]["id"], wishlists),
            (items[5]["id"], customers),
        ]
    )


async def test_concurrent_requests_of_many_tenants_share_a_group(
    client, tenant: TenantFixture, other_tenant: TenantFixture, context: Runtime
) -> None:
    mine = await subscribe(client, tenant)
    theirs = await subscribe(client, other_tenant, "ORDER")
    posts = [
        client.post(
            EVENTS,
            json=event_body(event_type="CUSTOMER" if i % 2 else "ORDER"),
            headers=(tenant if i % 3 else other_tenant).headers,
        )
        for i in range(60)
    ]
    responses = await asyncio.gather(*posts)
    assert all(r.status_code == 201 for r in responses)
    expected_mine = sum(1 for i in range(60) if i % 2 and i % 3)
    expected_theirs = sum(1 for i in range(60) if not i % 2 and not i % 3)
    rows_mine = await deliveries(context, tenant.name)
    rows_theirs = await deliveries(context, other_tenant.name)
    assert len(rows_mine) == expected_mine
    assert {r["subscription_id"] for r in rows_mine} == {mine}
    assert len(rows_theirs) == expected_theirs
    assert {r["subscription_id"] for r in rows_theirs} == {theirs}


async def test_a_subscription_made_in_one_process_routes_the_next_event_of_another(
    client, tenant: TenantFixture, context: Runtime, settings: Settings
) -> None:
    """Routing reads the subscriptions in the event's own transaction: nothing cached per
    process, so an API process sees a subscription another one just created."""
    other_process = create_app(settings)
    async with other_process.router.lifespan_context(other_process):
        transport = httpx.ASGITransport(app=other_process)
        async with httpx.AsyncClient(transport=transport, base_url="http://other") as other:
            # Warm the other process's routing path first: a cache would now hold "none".
            before = await post_event(other, tenant, event_type="CUSTOMER")
            subscription_id = await subscribe(client, tenant)
            after = await post_event(other, tenant, event_type="CUSTOMER")
            batch = [event_body(event_type="CUSTOMER") for _ in range(3)]
            response = await other.post(EVENTS + "/batch", json=batch, headers=tenant.headers)
            assert response.json()["created"] == 3, response.text
    rows = await deliveries(context, tenant.name)
    assert {r["event_id"] for r in rows} == {after, *(item["id"] for item in batch)}
    assert before not in {r["event_id"] for r in rows}
    assert {r["subscription_id"] for r in rows} == {subscription_id}


async def test_hook_without_routable_events_queries_nothing() -> None:
    """Events nothing could match (READ, no entity type) never touch the database."""

    def stored(operation: str, entity_type: str | None) -> StoredEvent:
        return StoredEvent(
            seq=1,
            tenant="t",
            id="e",
            entity_id=None,
            entity_name=None,
            event_type="OTHER",
            event_source=None,
            operation=operation,
            entity_type=entity_type,
            payload_entity_id=None,
            key_attributes=None,
            payload_b64=None,
            fault_b64=None,
            content_hash="x",
            received_at=utcnow(),
        )

    class NoQueries:
        async def execute(self, *args: Any, **kwargs: Any) -> None:
            raise AssertionError("no query expected")

    await route_events(NoQueries(), [stored("READ", "CUSTOMER"), stored("CREATE", None)])  # type: ignore[arg-type]
    await route_events(NoQueries(), [])  # type: ignore[arg-type]
