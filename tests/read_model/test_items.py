"""The resolved-item query (read_model.items) and the consent expression, in SQL on both
databases, and through the read API that uses them."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sqlalchemy import select

from event_collector.models import customer_table
from event_collector.read_model.items import marketing_consent, resolved_items
from event_collector.runtime import Runtime
from tests.conftest import TenantFixture
from tests.read_model.helpers import get, post


async def _resolved(context: Runtime, tenant: str) -> dict[str, dict[str, Any]]:
    items = resolved_items(tenant)
    async with context.db.read() as conn:
        result = await conn.execute(select(items).order_by(items.c.item_first_seq))
        return {row.item_id: dict(row._mapping) for row in result}


async def test_title_link_image_and_thresholds_fall_back_per_field(client, tenant) -> None:
    await post(
        client,
        tenant,
        "PRODUCT",
        "CREATE",
        {
            "id": "p1",
            "productRef": "P1",
            "title": "Shirt",
            "link": "https://shop.example/p1",
            "imageLink": "https://shop.example/p1.jpg",
            "lowStockThreshold": 8,
            "backInStockThreshold": 3,
        },
    )
    # The variant has its own title and low-stock threshold, but no link, image or
    # back-in-stock threshold: those come from its product, field by field.
    await post(
        client,
        tenant,
        "VARIANT_PRODUCT",
        "CREATE",
        {"id": "v1", "productRef": "P1-S", "baseProductId": "p1", "title": "Shirt, S"},
    )
    await post(
        client,
        tenant,
        "VARIANT_PRODUCT",
        "UPDATE",
        {"id": "v1", "lowStockThreshold": 2},
    )
    await post(client, tenant, "CUSTOMER", "CREATE", {"id": "c1", "email": "c1@example.com"})
    await post(client, tenant, "WISHLIST", "CREATE", {"id": "w1", "customerId": "c1"})
    await post(
        client,
        tenant,
        "WISHLIST_ITEM",
        "CREATE",
        {"id": "i1", "wishlistId": "w1", "product": {"selectedVariantId": "v1"}},
    )
    body = await get(client, tenant, "/api/v1/customers/c1/wishlists")
    item = body["wishlists"][0]["items"][0]
    assert (item["resolved_variant_id"], item["resolved_product_id"]) == ("v1", "p1")
    assert item["title"] == "Shirt, S"
    assert item["link"] == "https://shop.example/p1"
    assert item["image_link"] == "https://shop.example/p1.jpg"
    assert (item["low_stock_threshold"], item["back_in_stock_threshold"]) == (2, 3)


async def test_every_reference_followed_by_id_or_ref(client, context, tenant) -> None:
    await post(
        client,
        tenant,
        "CUSTOMER",
        "CREATE",
        {
            "id": "c1",
            "customerRef": "CREF",
            "email": "ada@example.com",
            "firstName": "Ada",
            "lastName": "L",
            "accepts_marketing": True,
        },
    )
    await post(client, tenant, "WISHLIST", "CREATE", {"id": "w1", "wishlistRef": "WREF"})
    await post(client, tenant, "WISHLIST", "UPDATE", {"id": "w1", "customerRef": "CREF"})
    await post(client, tenant, "PRODUCT", "CREATE", {"id": "p1", "productRef": "PREF"})
    # Two variants share a ref; the deleted one must not be chosen.
    await post(client, tenant, "VARIANT_PRODUCT", "CREATE", {"id": "v0", "productRef": "VREF"})
    await post(client, tenant, "VARIANT_PRODUCT", "DELETE", {"id": "v0"})
    await post(
        client,
        tenant,
        "VARIANT_PRODUCT",
        "CREATE",
        {"id": "v1", "productRef": "VREF", "baseProductRef": "PREF", "disabled": True},
    )
    for currency, amount in (("EUR", "30"), ("AUD", "50")):
        await post(
            client,
            tenant,
            "PRICE",
            "UPDATE",
            {"productVariantId": "v1", "currencyCode": currency, "price": amount},
        )
    await post(
        client,
        tenant,
        "WISHLIST_ITEM",
        "CREATE",
        {
            "id": "i1",
            "wishlistItemRef": "IREF",
            "wishlistRef": "WREF",
            "product": {"selectedVariantRef": "VREF"},
            "notifyMe": True,
            "createdTime": "2024-05-01T00:00:00Z",
        },
    )
    # Later prices: the current price stays in the baseline currency (AUD, the most recent
    # when the item was added) although EUR is written last.
    await post(
        client,
        tenant,
        "PRICE",
        "UPDATE",
        {"productVariantId": "v1", "currencyCode": "AUD", "price": "50", "salePrice": "40"},
    )
    await post(
        client,
        tenant,
        "PRICE",
        "UPDATE",
        {"productVariantId": "v1", "currencyCode": "EUR", "price": "25"},
    )
    await post(
        client,
        tenant,
        "INVENTORY_LEVEL",
        "UPDATE",
        {"productVariantId": "v1", "locationId": "L1", "stockOnHand": 7, "reserved": 2},
    )

    row = (await _resolved(context, tenant.name))["i1"]
    assert row["item_created_time"] is not None
    row.pop("item_created_time")
    row.pop("item_first_seq")
    assert row == {
        "customer_id": "c1",
        "customer_ref": "CREF",
        "customer_email": "ada@example.com",
        "customer_first_name": "Ada",
        "customer_last_name": "L",
        "customer_consent": True,
        "customer_deleted": False,
        "wishlist_id": "w1",
        "wishlist_ref": "WREF",
        "wishlist_name": None,
        "wishlist_deleted": False,
        "item_id": "i1",
        "item_ref": "IREF",
        "purchased": False,
        "disable_notification": False,
        "notify_me": True,
        "item_deleted": False,
        "item_wishlist_id": None,
        "item_wishlist_ref": "WREF",
        "item_product_id": None,
        "item_product_ref": None,
        "item_variant_id": None,
        "item_variant_ref": "VREF",
        "variant_id": "v1",
        "variant_ref": "VREF",
        "product_id": "p1",
        "product_ref": "PREF",
        "sellable_id": "v1",
        "title": None,
        "link": None,
        "image_link": None,
        "currency": "AUD",
        "price": Decimal("50"),
        "sale_price": Decimal("40"),
        "effective_price": Decimal("40"),
        "baseline_price": Decimal("50"),
        "baseline_currency": "AUD",
        "available_stock": 5,
        "low_stock_threshold": None,
        "back_in_stock_threshold": None,
        "variant_deleted": False,
        "variant_disabled": True,
        "product_deleted": False,
        "product_disabled": False,
        "unavailable": True,
    }


async def test_an_item_whose_references_are_unknown_is_one_row_of_nulls(
    client, context, tenant
) -> None:
    await post(
        client,
        tenant,
        "WISHLIST_ITEM",
        "CREATE",
        {"id": "i1", "wishlistId": "w-unknown", "product": {"productId": "p-unknown"}},
    )
    await post(
        client,
        tenant,
        "WISHLIST_ITEM",
        "CREATE",
        {"id": "i2", "product": {"selectedVariantRef": "no-such-ref"}},
    )
    rows = await _resolved(context, tenant.name)
    assert set(rows) == {"i1", "i2"}
    product_item, ref_item = rows["i1"], rows["i2"]
    assert product_item["sellable_id"] == "p-unknown"  # prices may name it before it arrives
    assert ref_item["sellable_id"] is None
    for row in rows.values():
        assert row["wishlist_id"] is row["customer_id"] is row["variant_id"] is None
        assert row["customer_consent"] is False
        assert row["unavailable"] is False
        assert row["low_stock_threshold"] is row["effective_price"] is None


async def test_resolved_items_are_tenant_scoped(
    client, context, tenant, other_tenant: TenantFixture
) -> None:
    for owner in (tenant, other_tenant):
        await post(client, owner, "WISHLIST_ITEM", "CREATE", {"id": "shared-id"})
    await post(client, other_tenant, "VARIANT_PRODUCT", "CREATE", {"id": "v1", "title": "X"})
    await post(
        client,
        tenant,
        "WISHLIST_ITEM",
        "CREATE",
        {"id": "mine", "product": {"selectedVariantId": "v1"}},
    )
    rows = await _resolved(context, tenant.name)
    assert set(rows) == {"shared-id", "mine"}
    assert rows["mine"]["variant_id"] is None  # the other tenant's variant is not seen


async def test_marketing_consent_in_a_where_clause(client, context, tenant) -> None:
    customers = {
        "opt-in-wins": {"optin_preferences": {"email": {"opt_in_active": True}}},
        "opt-out-wins": {
            "optin_preferences": {"email": {"opt_in_active": False}},
            "accepts_marketing": True,
        },
        "accepts": {"accepts_marketing": True},
        "declines": {"accepts_marketing": False},
        "unknown": {},
    }
    for customer_id, consent in customers.items():
        await post(client, tenant, "CUSTOMER", "CREATE", {"id": customer_id, **consent})
    c = customer_table.c
    async with context.db.read() as conn:
        result = await conn.execute(
            select(c.id).where(c.tenant == tenant.name, marketing_consent()).order_by(c.id)
        )
        consenting = [row.id for row in result]
    assert consenting == ["accepts", "opt-in-wins"]
    for customer_id in customers:
        shown = await get(client, tenant, f"/api/v1/customers/{customer_id}")
        assert shown["consent"]["marketing_consent"] is (customer_id in consenting)
