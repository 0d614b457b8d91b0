"""Table-driven: realistic payloads (platform-notes §2) for every entity type and operation,
posted through the real API, checked against the stored read-model rows."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from tests.read_model.helpers import dump, post

CUSTOMER = {
    "id": "5f0c8a8e-0000-4000-8000-000000000001",
    "customerRef": "CUST-1001",
    "email": "ada@example.com",
    "firstName": "Ada",
    "lastName": "Lovelace",
    "optin_preferences": {
        "email": {
            "opt_in_active": True,
            "opted_in_at": "2024-01-02T03:04:05.000Z",
            "opt_in_updated_at": "2024-01-02T03:04:05.000Z",
        },
        "sms": {"opt_in_active": False},
    },
    "accepts_marketing": False,
    "active": True,
    "customer_state": "enabled",
    "deleted": False,
    "createdDate": "2024-01-02T03:04:05.000Z",
    "lastModifiedDate": "2024-01-02T03:04:05.000Z",
}
CUSTOMER_SNAKE = {
    "id": "c-snake",
    "customer_ref": "CUST-SNAKE",
    "email": "snake@example.com",
    "first_name": "Sam",
    "last_name": "Snake",
    "accepts_marketing": "true",
    "active": "1",
}
WISHLIST = {
    "id": "wl-1",
    "wishlistRef": "WL-REF-1",
    "name": "Birthday",
    "description": "",
    "isPrivate": False,
    "customerId": "5f0c8a8e-0000-4000-8000-000000000001",
    "customerRef": "CUST-1001",
    "deleted": False,
    "createdTime": "2024-02-01T10:00:00.123456Z",
    "modifiedTime": "2024-02-01T10:00:00.123456Z",
    "attributeGroups": {},
}
ITEM = {
    "id": "wi-1",
    "wishlistItemRef": "WI-REF-1",
    "wishlistId": "wl-1",
    "product": {
        "productId": "prod-1",
        "productRef": "PRD01011",
        "selectedVariantId": "var-1",
        "selectedVariantRef": "PRD01011-037",
    },
    "purchased": False,
    "disableNotification": False,
    "notifyMe": True,
    "prerelease": False,
    "deleted": False,
    "createdTime": "2024-02-01T10:05:00.000000Z",
    "modifiedTime": "2024-02-01T10:05:00.000000Z",
}
PRODUCT = {
    "id": "prod-1",
    "productRef": "PRD01011",
    "title": "Linen shirt",
    "description": "A shirt",
    "link": "https://shop.example.com/p/PRD01011?color=blue",
    "imageLink": "https://cdn.example.com/PRD01011.jpg",
    "availability": "available",
    "status": "ACTIVE",
    "deleted": False,
    "disabled": False,
    "lowStockThreshold": "3",
    "backInStockThreshold": 2,
    "lastModifiedDate": "2024-02-01T09:00:00.000Z",
}
VARIANT = {
    "id": "var-1",
    "productRef": "PRD01011-037",
    "baseProductId": "prod-1",
    "baseProductRef": "PRD01011",
    "title": "Linen shirt, blue, M",
    "link": "https://shop.example.com/p/PRD01011-037",
    "imageLink": "https://cdn.example.com/PRD01011-037.jpg",
    "price": {"currencyCode": "AUD", "price": "79.95", "salePrice": "59.95"},
    "stock": {
        "stockLevels": [{"locationRef": "S1", "locationid": "loc-1", "stock": "4"}],
        "totalStock": "4",
    },
    "lowStockThreshold": None,
    "deleted": False,
    "disabled": False,
}
PRICE = {
    "id": "price-1",
    "priceRef": "PR-1",
    "productVariantId": "var-9",
    "currencyCode": "aud",
    "price": "100.00",
    "salePrice": "120.00",
    "sale": False,
    "active": True,
    "deleted": False,
}
LEVEL = {
    "id": "lvl-1",
    "stockRef": "SR-1",
    "productVariantId": "var-9",
    "locationId": "loc-1",
    "stockOnHand": "12",
    "reserved": "2",
    "excludedQuantity": 1,
    "futureStock": False,
    "status": "IN_STOCK",
    "deleted": False,
    "createdTime": "2022-08-24T07:28:12.000+0000",
    "modifiedTime": "2022-08-24T07:28:12.000+0000",
}


def _t(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


Case = tuple[str, list[tuple[str, str, Any]], str, dict[str, Any], dict[str, Any]]

CASES: list[Case] = [
    (
        "customer-create",
        [("CUSTOMER", "CREATE", CUSTOMER)],
        "rm_customer",
        {"id": CUSTOMER["id"]},
        {
            "ref": "CUST-1001",
            "email": "ada@example.com",
            "first_name": "Ada",
            "last_name": "Lovelace",
            "opt_in_active": True,
            "accepts_marketing": False,
            "consent_updated_at": _t("2024-01-02T03:04:05Z"),
            "active": True,
            "deleted": False,
        },
    ),
    (
        "customer-snake-case-and-strings",
        [("CUSTOMER", "CREATE", CUSTOMER_SNAKE)],
        "rm_customer",
        {"id": "c-snake"},
        {"ref": "CUST-SNAKE", "first_name": "Sam", "accepts_marketing": True, "active": True},
    ),
    (
        "customer-update-merges-fields",
        [
            ("CUSTOMER", "CREATE", CUSTOMER),
            ("CUSTOMER", "UPDATE", {"id": CUSTOMER["id"], "lastName": "King"}),
        ],
        "rm_customer",
        {"id": CUSTOMER["id"]},
        {"first_name": "Ada", "last_name": "King", "email": "ada@example.com"},
    ),
    (
        "customer-delete-soft",
        [("CUSTOMER", "CREATE", CUSTOMER), ("CUSTOMER", "DELETE", {"id": CUSTOMER["id"]})],
        "rm_customer",
        {"id": CUSTOMER["id"]},
        {"deleted": True, "email": "ada@example.com"},
    ),
    (
        "customer-bulk-create",
        [("CUSTOMER", "BULK_CREATE", [CUSTOMER, CUSTOMER_SNAKE])],
        "rm_customer",
        {"id": "c-snake"},
        {"email": "snake@example.com"},
    ),
    (
        "customer-read-changes-nothing",
        [
            ("CUSTOMER", "CREATE", CUSTOMER),
            ("CUSTOMER", "READ", {**CUSTOMER, "email": "changed@example.com"}),
        ],
        "rm_customer",
        {"id": CUSTOMER["id"]},
        {"email": "ada@example.com"},
    ),
    (
        "wishlist-create",
        [("WISHLIST", "CREATE", WISHLIST)],
        "rm_wishlist",
        {"id": "wl-1"},
        {
            "ref": "WL-REF-1",
            "name": "Birthday",
            "customer_id": CUSTOMER["id"],
            "customer_ref": "CUST-1001",
            "created_time": _t("2024-02-01T10:00:00.123456Z"),
            "deleted": False,
        },
    ),
    (
        "wishlist-embedded-items",
        [("WISHLIST", "CREATE", {**WISHLIST, "wishlistItems": [ITEM]})],
        "rm_wishlist_item",
        {"id": "wi-1"},
        {"wishlist_id": "wl-1", "wishlist_ref": "WL-REF-1", "variant_ref": "PRD01011-037"},
    ),
    (
        "wishlist-update",
        [
            ("WISHLIST", "CREATE", WISHLIST),
            ("WISHLIST", "UPDATE", {"id": "wl-1", "name": "Christmas"}),
        ],
        "rm_wishlist",
        {"id": "wl-1"},
        {"name": "Christmas", "ref": "WL-REF-1"},
    ),
    (
        "wishlist-delete-by-entity-id-without-payload",
        [("WISHLIST", "CREATE", WISHLIST), ("WISHLIST", "DELETE", None)],
        "rm_wishlist",
        {"id": "wl-1"},
        {"deleted": True},
    ),
    (
        "item-create",
        [("WISHLIST_ITEM", "CREATE", ITEM)],
        "rm_wishlist_item",
        {"id": "wi-1"},
        {
            "ref": "WI-REF-1",
            "wishlist_id": "wl-1",
            "product_id": "prod-1",
            "product_ref": "PRD01011",
            "variant_id": "var-1",
            "variant_ref": "PRD01011-037",
            "purchased": False,
            "disable_notification": False,
            "notify_me": True,
            "added_at": _t("2024-02-01T10:05:00Z"),
            "deleted": False,
        },
    ),
    (
        "item-update-flags",
        [
            ("WISHLIST_ITEM", "CREATE", ITEM),
            ("WISHLIST_ITEM", "UPDATE", {"id": "wi-1", "purchased": "true", "notify_me": False}),
        ],
        "rm_wishlist_item",
        {"id": "wi-1"},
        {"purchased": True, "notify_me": False, "variant_id": "var-1"},
    ),
    (
        "item-bulk-update",
        [
            ("WISHLIST_ITEM", "CREATE", ITEM),
            ("WISHLIST_ITEM", "BULK_UPDATE", [{"id": "wi-1", "disableNotification": True}]),
        ],
        "rm_wishlist_item",
        {"id": "wi-1"},
        {"disable_notification": True},
    ),
    (
        "item-delete",
        [("WISHLIST_ITEM", "CREATE", ITEM), ("WISHLIST_ITEM", "DELETE", {"id": "wi-1"})],
        "rm_wishlist_item",
        {"id": "wi-1"},
        {"deleted": True, "variant_id": "var-1"},
    ),
    (
        "product-create",
        [("PRODUCT", "CREATE", PRODUCT)],
        "rm_product",
        {"id": "prod-1"},
        {
            "ref": "PRD01011",
            "title": "Linen shirt",
            "link": "https://shop.example.com/p/PRD01011?color=blue",
            "image_link": "https://cdn.example.com/PRD01011.jpg",
            "low_stock_threshold": 3,
            "back_in_stock_threshold": 2,
            "disabled": False,
            "modified_at": _t("2024-02-01T09:00:00Z"),
        },
    ),
    (
        "product-update-disable",
        [("PRODUCT", "CREATE", PRODUCT), ("PRODUCT", "UPDATE", {"id": "prod-1", "disabled": True})],
        "rm_product",
        {"id": "prod-1"},
        {"disabled": True, "title": "Linen shirt"},
    ),
    (
        "product-delete",
        [("PRODUCT", "CREATE", PRODUCT), ("PRODUCT", "DELETE", {"id": "prod-1"})],
        "rm_product",
        {"id": "prod-1"},
        {"deleted": True},
    ),
    (
        "product-embedded-variants",
        [("PRODUCT", "CREATE", {**PRODUCT, "variants": [{**VARIANT, "baseProductId": None}]})],
        "rm_variant",
        {"id": "var-1"},
        {"ref": "PRD01011-037", "base_product_ref": "PRD01011"},
    ),
    (
        "variant-create",
        [("VARIANT_PRODUCT", "CREATE", VARIANT)],
        "rm_variant",
        {"id": "var-1"},
        {
            "ref": "PRD01011-037",
            "base_product_id": "prod-1",
            "base_product_ref": "PRD01011",
            "title": "Linen shirt, blue, M",
            "total_stock": 4,
            "price_currency": "AUD",
            "price": Decimal("79.95"),
            "sale_price": Decimal("59.95"),
            "low_stock_threshold": None,
        },
    ),
    (
        "variant-embedded-price-goes-to-prices",
        [("VARIANT_PRODUCT", "CREATE", VARIANT)],
        "rm_price",
        {"variant_id": "var-1", "currency": "AUD"},
        {
            "price": Decimal("79.95"),
            "sale_price": Decimal("59.95"),
            "effective_price": Decimal("59.95"),
        },
    ),
    (
        "variant-total-stock-is-available",
        [("VARIANT_PRODUCT", "CREATE", VARIANT)],
        "rm_stock",
        {"variant_id": "var-1"},
        {"available": 4, "source": "total"},
    ),
    (
        "variant-bulk-update",
        [
            ("VARIANT_PRODUCT", "CREATE", VARIANT),
            ("VARIANT_PRODUCT", "BULK_UPDATE", [{"id": "var-1", "lowStockThreshold": "7"}]),
        ],
        "rm_variant",
        {"id": "var-1"},
        {"low_stock_threshold": 7, "title": "Linen shirt, blue, M"},
    ),
    (
        "variant-delete",
        [("VARIANT_PRODUCT", "CREATE", VARIANT), ("VARIANT_PRODUCT", "DELETE", {"id": "var-1"})],
        "rm_variant",
        {"id": "var-1"},
        {"deleted": True},
    ),
    (
        "price-create-sale-not-lower",
        [("PRICE", "CREATE", PRICE)],
        "rm_price",
        {"variant_id": "var-9", "currency": "AUD"},
        {
            "price_id": "price-1",
            "price": Decimal("100"),
            "sale_price": Decimal("120"),
            "effective_price": Decimal("100"),
            "active": True,
        },
    ),
    (
        "price-update-sale",
        [("PRICE", "CREATE", PRICE), ("PRICE", "UPDATE", {**PRICE, "salePrice": 80.5})],
        "rm_price",
        {"variant_id": "var-9", "currency": "AUD"},
        {"sale_price": Decimal("80.5"), "effective_price": Decimal("80.5")},
    ),
    (
        "price-inactive-has-no-effective-price",
        [("PRICE", "CREATE", {**PRICE, "active": "false"})],
        "rm_price",
        {"variant_id": "var-9", "currency": "AUD"},
        {"effective_price": None, "active": False},
    ),
    (
        "price-bulk-snake-case",
        [
            (
                "PRICE",
                "BULK_CREATE",
                [
                    {"product_variant_id": "var-9", "currency_code": "USD", "price": "10"},
                    {"product_variant_id": "var-9", "currency_code": "EUR", "price": "9"},
                ],
            )
        ],
        "rm_price",
        {"variant_id": "var-9", "currency": "EUR"},
        {"effective_price": Decimal("9")},
    ),
    (
        "price-delete-by-id-only",
        [("PRICE", "CREATE", PRICE), ("PRICE", "DELETE", {"id": "price-1"})],
        "rm_price",
        {"variant_id": "var-9", "currency": "AUD"},
        {"deleted": True, "effective_price": None},
    ),
    (
        "level-create",
        [("INVENTORY_LEVEL", "CREATE", LEVEL)],
        "rm_stock_level",
        {"variant_id": "var-9", "location": "loc-1"},
        {
            "level_id": "lvl-1",
            "stock_on_hand": 12,
            "reserved": 2,
            "excluded_quantity": 1,
            "modified_at": _t("2022-08-24T07:28:12Z"),
        },
    ),
    (
        "level-derived-available",
        [("INVENTORY_LEVEL", "CREATE", LEVEL)],
        "rm_stock",
        {"variant_id": "var-9"},
        {"available": 9, "source": "levels", "out_of_stock": False},
    ),
    (
        "level-update",
        [
            ("INVENTORY_LEVEL", "CREATE", LEVEL),
            (
                "INVENTORY_LEVEL",
                "UPDATE",
                {"productVariantId": "var-9", "locationId": "loc-1", "stockOnHand": 3},
            ),
        ],
        "rm_stock",
        {"variant_id": "var-9"},
        {"available": 0},
    ),
    (
        "level-bulk-two-locations",
        [
            (
                "INVENTORY_LEVEL",
                "BULK_UPDATE",
                [
                    LEVEL,
                    {
                        **LEVEL,
                        "id": "lvl-2",
                        "locationId": None,
                        "locationRef": "S2",
                        "stockOnHand": 5,
                        "reserved": 0,
                        "excludedQuantity": 0,
                    },
                ],
            )
        ],
        "rm_stock",
        {"variant_id": "var-9"},
        {"available": 14},
    ),
    (
        "level-delete-by-entity-id",
        [("INVENTORY_LEVEL", "CREATE", LEVEL), ("INVENTORY_LEVEL", "DELETE", None)],
        "rm_stock",
        {"variant_id": "var-9"},
        {"available": None},
    ),
]


@pytest.mark.parametrize(
    ("steps", "table", "key", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
async def test_apply(client, context, tenant, steps, table, key, expected) -> None:
    for event_type, operation, payload in steps:
        entity_id = None
        if payload is None:  # a DELETE naming the entity by the event's entity_id only
            entity_id = {"WISHLIST": "wl-1", "INVENTORY_LEVEL": "lvl-1"}[event_type]
        await post(client, tenant, event_type, operation, payload, entity_id=entity_id)
    rows = (await dump(context, tenant.name))[table]
    matching = [row for row in rows if all(row[k] == v for k, v in key.items())]
    assert len(matching) == 1, rows
    row = matching[0]
    assert {name: row[name] for name in expected} == expected
    problems = (await dump(context, tenant.name))["read_model_problem"]
    assert problems == []


@pytest.mark.parametrize("event_type", ["FAULT", "SYSTEM", "WARNING"])
async def test_fault_system_warning_events_change_nothing(
    client, context, tenant, event_type
) -> None:
    await post(client, tenant, event_type, "CREATE", PRICE, entity_name="PRICE")
    dumped = await dump(context, tenant.name)
    assert all(rows == [] for rows in dumped.values()), dumped


async def test_entity_event_with_entity_name_is_applied(client, context, tenant) -> None:
    await post(client, tenant, "ENTITY_EVENT", "CREATE", PRICE, entity_name="PRICE")
    assert len((await dump(context, tenant.name))["rm_price"]) == 1


async def test_plain_events_change_nothing(client, context, tenant) -> None:
    await post(client, tenant, "ORDER", "CREATE", {"id": "o-1", "total": "10"})
    await post(client, tenant, "ADDRESS", "UPDATE", {"id": "a-1"})
    dumped = await dump(context, tenant.name)
    assert all(rows == [] for rows in dumped.values())


async def test_repeated_event_id_changes_nothing(client, context, tenant) -> None:
    body = await post(client, tenant, "PRICE", "CREATE", PRICE)
    before = await dump(context, tenant.name)
    again = await client.post("/api/v1/events", json=body, headers=tenant.headers)
    assert again.status_code == 200
    assert await dump(context, tenant.name) == before
