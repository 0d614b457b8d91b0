"""Posting entity events and reading the read model back, for the read-model tests."""

from __future__ import annotations

import base64
from typing import Any

import httpx

from event_collector.read_model.repository import ReadModelRepository
from event_collector.runtime import Runtime
from tests.conftest import TenantFixture
from tests.factories import event_body

# Columns that record *when/by which event* a row was written, not what the model knows: they
# legitimately differ between arrival orders (but not between incremental and rebuild).
BOOKKEEPING = {"first_seq", "last_seq", "updated_at", "last_operation", "baseline_seq"}
# Surrogate keys of append-only tables (renumbered by a rebuild).
SURROGATE = {"id"}
APPEND_ONLY = {"rm_price_history", "rm_stock_history", "rm_stock_episode", "read_model_problem"}


async def post(
    client: httpx.AsyncClient,
    tenant: TenantFixture,
    event_type: str,
    operation: str,
    payload: Any,
    *,
    entity_id: str | None = None,
    expect: int = 201,
    **extra: Any,
) -> dict[str, Any]:
    body = event_body(
        event_type=event_type, operation=operation, payload=payload, entity_id=entity_id, **extra
    )
    response = await client.post("/api/v1/events", json=body, headers=tenant.headers)
    assert response.status_code == expect, response.text
    return body


async def post_raw_payload(
    client: httpx.AsyncClient, tenant: TenantFixture, event_type: str, raw: bytes
) -> dict[str, Any]:
    body = event_body(event_type=event_type, operation="CREATE")
    body["event_payload"]["base64_encoded_payload_json"] = base64.b64encode(raw).decode()
    response = await client.post("/api/v1/events", json=body, headers=tenant.headers)
    assert response.status_code == 201, response.text
    return body


async def get(client: httpx.AsyncClient, tenant: TenantFixture, path: str) -> Any:
    response = await client.get(path, headers=tenant.headers)
    assert response.status_code == 200, response.text
    return response.json()


async def customer_with_item(
    client: httpx.AsyncClient, tenant: TenantFixture, item: dict[str, Any]
) -> None:
    """Customer c1 with wishlist w1 holding item i1 (``item``: the rest of its payload)."""
    await post(client, tenant, "CUSTOMER", "CREATE", {"id": "c1", "email": "c1@example.com"})
    await post(client, tenant, "WISHLIST", "CREATE", {"id": "w1", "name": "W", "customerId": "c1"})
    await post(client, tenant, "WISHLIST_ITEM", "CREATE", {"id": "i1", "wishlistId": "w1", **item})


async def first_item(client: httpx.AsyncClient, tenant: TenantFixture) -> Any:
    """The first item of c1's first wishlist, as the read API shows it."""
    body = await get(client, tenant, "/api/v1/customers/c1/wishlists")
    return body["wishlists"][0]["items"][0]


async def dump(context: Runtime, tenant: str) -> dict[str, list[dict[str, Any]]]:
    async with context.db.read() as conn:
        return await ReadModelRepository(conn).dump(tenant)


def comparable(
    dumped: dict[str, list[dict[str, Any]]],
    *,
    drop: set[str] = frozenset(),  # type: ignore[assignment]
) -> dict[str, list[dict[str, Any]]]:
    """A dump without surrogate ids (and `drop` columns), append-only tables in a stable order."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name, rows in dumped.items():
        cleaned = [
            {
                k: v
                for k, v in row.items()
                if k not in drop and not (name in APPEND_ONLY and k in SURROGATE)
            }
            for row in rows
        ]
        if name in APPEND_ONLY:
            cleaned.sort(key=repr)
        out[name] = cleaned
    return out
