"""Test helpers: subscriptions written straight to the table (any destination, including
loopback ones the API refuses), events posted through the API, deliveries looked up."""

from __future__ import annotations

import base64
import secrets
import uuid
from collections.abc import Sequence
from typing import Any

import httpx
from sqlalchemy import insert, select

from event_collector.kit.db import utcnow
from event_collector.models import delivery_attempt_table, delivery_table
from event_collector.models import subscription_table as s
from event_collector.runtime import Runtime
from event_collector.subscriptions.service import seal_headers, secret_associated_data
from tests.conftest import TenantFixture, wait_until
from tests.factories import event_body


def webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


async def create_subscription(
    context: Runtime,
    tenant: str,
    destination_type: str,
    destination: dict[str, Any],
    *,
    secret: str | None = None,
    entity_type: str = "CUSTOMER",
    active: bool = True,
) -> str:
    subscription_id = f"sub-{uuid.uuid4().hex[:10]}"
    sealed = (
        context.secrets.seal(
            secret, associated_data=secret_associated_data(tenant, subscription_id)
        )
        if secret
        else None
    )
    # Stored as the service stores them: custom headers sealed, out of the destination JSON.
    destination = dict(destination)
    headers = destination.pop("headers", None) or {}
    now = utcnow()
    async with context.db.write() as conn:
        await conn.execute(
            insert(s).values(
                tenant=tenant,
                id=subscription_id,
                entity_type=entity_type,
                active=active,
                subscribe_create=True,
                subscribe_change=True,
                subscribe_delete=True,
                destination_type=destination_type,
                destination=destination,
                secret_sealed=sealed,
                headers_sealed=seal_headers(context.secrets, tenant, subscription_id, headers),
                created_at=now,
                updated_at=now,
            )
        )
    return subscription_id


async def post_events(
    client: httpx.AsyncClient, tenant: TenantFixture, count: int = 1, **kwargs: Any
) -> list[dict[str, Any]]:
    bodies = [event_body(**kwargs) for _ in range(count)]
    stored = []
    for start in range(0, count, 500):
        chunk = bodies[start : start + 500]
        if len(chunk) == 1:
            response = await client.post("/api/v1/events", json=chunk[0], headers=tenant.headers)
            assert response.status_code == 201, response.text
            stored.append(response.json())
        else:
            response = await client.post("/api/v1/events/batch", json=chunk, headers=tenant.headers)
            assert response.status_code == 200, response.text
            stored.extend(chunk)
    return stored


async def route(
    context: Runtime, tenant: str, subscription_ids: Sequence[str], event_ids: Sequence[str]
) -> dict[tuple[str, str], str]:
    """The delivery rows the routing hook wrote for these events and subscriptions, as
    (subscription, event) → delivery id; every pair must have one."""
    async with context.db.read() as conn:
        rows = await conn.execute(
            select(
                delivery_table.c.id, delivery_table.c.subscription_id, delivery_table.c.attributes
            ).where(
                delivery_table.c.tenant == tenant,
                delivery_table.c.subscription_id.in_(list(subscription_ids)),
            )
        )
        wanted = set(event_ids)
        made = {
            (row.subscription_id, row.attributes["event_id"]): row.id
            for row in rows
            if row.attributes["event_id"] in wanted
        }
    expected = {(sub, event) for sub in subscription_ids for event in event_ids}
    assert set(made) == expected, f"routing made {len(made)} of {len(expected)} deliveries"
    return made


async def deliveries(context: Runtime, ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    async with context.db.read() as conn:
        rows = await conn.execute(select(delivery_table).where(delivery_table.c.id.in_(list(ids))))
        return {row.id: dict(row._mapping) for row in rows}


async def attempts(context: Runtime, delivery_id: str) -> list[dict[str, Any]]:
    async with context.db.read() as conn:
        rows = await conn.execute(
            select(delivery_attempt_table)
            .where(delivery_attempt_table.c.delivery_id == delivery_id)
            .order_by(delivery_attempt_table.c.id)
        )
        return [dict(row._mapping) for row in rows]


async def wait_status(
    context: Runtime, ids: Sequence[str], status: str, within: float = 20.0
) -> dict[str, dict[str, Any]]:
    result: dict[str, dict[str, Any]] = {}

    async def done() -> bool:
        nonlocal result
        result = await deliveries(context, ids)
        return len(result) == len(ids) and all(r["status"] == status for r in result.values())

    try:
        await wait_until(done, f"{len(ids)} deliveries to be {status}", within=within)
    except AssertionError:
        states = {k: (v["status"], v["attempts"], v["last_error"]) for k, v in result.items()}
        raise AssertionError(f"not all {status}: {states}") from None
    return result
