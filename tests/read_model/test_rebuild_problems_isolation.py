"""Rebuild equals incremental; unusable payloads are recorded, never fatal; every read endpoint
is tenant-scoped."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from event_collector.read_model import rebuild
from event_collector.read_model.apply import rules
from tests.factories import event_body
from tests.read_model.helpers import comparable, dump, get, post, post_raw_payload


async def _history(client, tenant) -> None:
    await post(
        client,
        tenant,
        "CUSTOMER",
        "CREATE",
        {
            "id": "c1",
            "customerRef": "CR1",
            "email": "a@example.com",
            "optin_preferences": {"email": {"opt_in_active": True}},
        },
    )
    await post(
        client,
        tenant,
        "WISHLIST",
        "CREATE",
        {
            "id": "w1",
            "name": "W",
            "customerRef": "CR1",
            "wishlistItems": [{"id": "i1", "product": {"selectedVariantRef": "V1"}}],
        },
    )
    await post(
        client,
        tenant,
        "WISHLIST_ITEM",
        "CREATE",
        {"id": "i2", "wishlistId": "w1", "product": {"selectedVariantId": "v2"}},
    )
    await post(
        client,
        tenant,
        "PRODUCT",
        "CREATE",
        {"id": "p1", "productRef": "P1", "lowStockThreshold": 4},
    )
    await post(
        client,
        tenant,
        "VARIANT_PRODUCT",
        "BULK_CREATE",
        [
            {
                "id": "v1",
                "productRef": "V1",
                "baseProductId": "p1",
                "price": {"currencyCode": "AUD", "price": "10"},
            },
            {"id": "v2", "productRef": "V2", "baseProductRef": "P1", "stock": {"totalStock": 9}},
        ],
    )
    for on_hand in (8, 3, 0, 6):
        await post(
            client,
            tenant,
            "INVENTORY_LEVEL",
            "UPDATE",
            {"productVariantId": "v1", "locationId": "L1", "stockOnHand": on_hand},
        )
    await post(
        client,
        tenant,
        "PRICE",
        "UPDATE",
        {"productVariantId": "v1", "currencyCode": "AUD", "price": "10", "salePrice": 7},
    )
    await post(
        client,
        tenant,
        "PRICE",
        "CREATE",
        {"productVariantId": "v2", "currencyCode": "NZD", "price": "12"},
    )
    await post(client, tenant, "WISHLIST_ITEM", "DELETE", {"id": "i2"})
    await post_raw_payload(client, tenant, "PRICE", b"not json")


async def test_rebuild_equals_incremental(client, context, tenant, other_tenant) -> None:
    await _history(client, tenant)
    await _history(client, other_tenant)
    incremental = comparable(await dump(context, tenant.name))
    other_before = await dump(context, other_tenant.name)
    assert incremental["rm_stock_episode"]  # the history did produce episodes

    seen: list[tuple[int, int]] = []
    replayed = await rebuild.rebuild(
        context.db,
        tenant.name,
        progress=lambda done, total: seen.append((done, total)),
        page_size=5,
    )
    assert replayed == 13
    assert seen[-1] == (13, 13)
    assert comparable(await dump(context, tenant.name)) == incremental
    # The other tenant's rows were not touched (not even renumbered).
    assert await dump(context, other_tenant.name) == other_before


def test_rebuild_cli(settings, monkeypatch) -> None:
    from event_collector import cli

    monkeypatch.setattr(cli.maintenance, "cli_settings", lambda: settings)
    result = CliRunner().invoke(cli.app, ["rebuild-read-model", "--tenant", "nobody", "--yes"])
    assert result.exit_code == 0, result.output
    assert "from 0 events" in result.output


async def test_unusable_payloads_are_recorded_not_fatal(client, context, tenant) -> None:
    await post_raw_payload(client, tenant, "CUSTOMER", b"{not json")
    anonymous = event_body(event_type="WISHLIST_ITEM", payload={"wishlistId": "w1"})
    del anonymous["entity_id"], anonymous["event_payload"]["entity_id"]
    assert (
        await client.post("/api/v1/events", json=anonymous, headers=tenant.headers)
    ).status_code == 201
    await post(client, tenant, "PRICE", "CREATE", {"productVariantId": "v1", "price": "1"})
    await post(client, tenant, "INVENTORY_LEVEL", "CREATE", ["not an object"])
    await post(
        client,
        tenant,
        "PRICE",
        "BULK_CREATE",
        [
            {"productVariantId": "v1", "currencyCode": "AUD", "price": "abc"},
            {"productVariantId": "v1", "currencyCode": "USD", "price": "2"},
        ],
    )
    await post(
        client,
        tenant,
        "VARIANT_PRODUCT",
        "UPDATE",
        {"id": "v1", "lowStockThreshold": "many", "title": "Kept"},
    )
    no_payload = event_body(event_type="CUSTOMER", operation="UPDATE")
    assert (
        await client.post("/api/v1/events", json=no_payload, headers=tenant.headers)
    ).status_code == 201

    page = await get(client, tenant, "/api/v1/read-model/problems?limit=3")
    assert len(page["items"]) == 3
    assert page["next_cursor"]
    rest = await get(client, tenant, f"/api/v1/read-model/problems?cursor={page['next_cursor']}")
    problems = [(p["entity_type"], p["problem"]) for p in page["items"] + rest["items"]]
    assert problems == [
        ("CUSTOMER", "the payload is not valid JSON"),
        ("WISHLIST_ITEM", "missing id"),
        ("PRICE", "missing currencyCode"),
        ("INVENTORY_LEVEL", "[0] the payload is not a JSON object"),
        ("PRICE", "[0] price and salePrice are both empty or not numbers"),
        ("VARIANT_PRODUCT", "lowStockThreshold: not a number; ignored"),
        ("CUSTOMER", "the event has no payload"),
    ]
    assert rest["next_cursor"] is None
    # What could be used was used.
    variant = await get(client, tenant, "/api/v1/variants/v1")
    assert variant["title"] == "Kept"
    assert {p["currency"] for p in variant["prices"]} == {"USD"}
    bad = await client.get("/api/v1/read-model/problems?cursor=zzz", headers=tenant.headers)
    assert bad.status_code == 400


async def test_large_bulk_payload_through_batch(client, context, tenant) -> None:
    items = [
        {"productVariantId": f"v{i}", "currencyCode": "AUD", "price": str(i + 1)}
        for i in range(200)
    ]
    body = [
        event_body(event_type="PRICE", operation="BULK_CREATE", payload=items[:100]),
        event_body(event_type="PRICE", operation="BULK_UPDATE", payload=items[100:]),
    ]
    response = await client.post("/api/v1/events/batch", json=body, headers=tenant.headers)
    assert response.json()["created"] == 2
    assert len((await dump(context, tenant.name))["rm_price"]) == 200


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/customers/c1",
        "/api/v1/customers/CR1",
        "/api/v1/customers/c1/wishlists",
        "/api/v1/variants/v1",
        "/api/v1/variants/V1",
        "/api/v1/variants/p1",
    ],
)
async def test_read_endpoints_are_tenant_scoped(client, tenant, other_tenant, path) -> None:
    await _history(client, tenant)
    assert (await client.get(path, headers=tenant.headers)).status_code == 200
    response = await client.get(path, headers=other_tenant.headers)
    assert response.status_code == 404, response.text
    assert response.json()["error"] == "NotFound"


async def test_problems_are_tenant_scoped(client, tenant, other_tenant) -> None:
    await post_raw_payload(client, tenant, "PRICE", b"nope")
    assert len((await get(client, tenant, "/api/v1/read-model/problems"))["items"]) == 1
    assert (await get(client, other_tenant, "/api/v1/read-model/problems"))["items"] == []


async def test_read_endpoints_need_a_token_with_events_read(client, context) -> None:
    from tests.conftest import make_tenant

    writer_only = await make_tenant(context, client, scopes=["events:write"])
    for path in ("/api/v1/customers/x", "/api/v1/variants/x", "/api/v1/read-model/problems"):
        assert (await client.get(path)).status_code == 401
        assert (await client.get(path, headers=writer_only.headers)).status_code == 403


async def test_openapi_documents_the_read_model(client) -> None:
    paths = (await client.get("/openapi.json")).json()["paths"]
    for path in (
        "/api/v1/customers/{customer_id}",
        "/api/v1/customers/{customer_id}/wishlists",
        "/api/v1/variants/{variant_id}",
        "/api/v1/read-model/problems",
    ):
        assert "get" in paths[path]


async def test_a_bug_while_applying_is_contained(client, context, tenant, monkeypatch) -> None:
    original = rules.apply_entity

    async def flaky(ctx, entity_type, entity):
        if entity.key.get("id") == "boom":
            raise RuntimeError("bug")
        await original(ctx, entity_type, entity)

    monkeypatch.setattr(rules, "apply_entity", flaky)
    batch = [
        event_body(event_type="CUSTOMER", payload={"id": "ok-1", "email": "a@example.com"}),
        event_body(event_type="CUSTOMER", payload={"id": "boom", "email": "b@example.com"}),
        event_body(event_type="CUSTOMER", payload={"id": "ok-2", "email": "c@example.com"}),
    ]
    response = await client.post("/api/v1/events/batch", json=batch, headers=tenant.headers)
    assert response.json()["created"] == 3
    dumped = await dump(context, tenant.name)
    assert sorted(row["id"] for row in dumped["rm_customer"]) == ["ok-1", "ok-2"]
    assert [p["problem"] for p in dumped["read_model_problem"]] == [
        "internal error while applying: RuntimeError"
    ]
