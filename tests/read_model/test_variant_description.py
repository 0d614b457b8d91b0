"""``GET /api/v1/variants/{id}``: title, link and image fall back per field from the variant to
its product by the rule resolved wishlist items use (read_model.items.variant_then_product)."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import TenantFixture
from tests.read_model.helpers import customer_with_item, first_item, get, post

SHIRT = {
    "id": "p1",
    "productRef": "P1",
    "title": "Shirt",
    "link": "https://shop.example/p1",
    "imageLink": "https://shop.example/p1.jpg",
}


def _described(variant: dict[str, Any]) -> tuple[Any, ...]:
    return (variant["title"], variant["link"], variant["image_link"], variant["field_sources"])


async def _item_of(client: httpx.AsyncClient, tenant: TenantFixture, variant_id: str) -> Any:
    """The resolved wishlist item of a new wishlist holding just this variant."""
    await customer_with_item(client, tenant, {"product": {"selectedVariantId": variant_id}})
    return await first_item(client, tenant)


async def _variant(
    client: httpx.AsyncClient, tenant: TenantFixture, payload: dict[str, Any], read_as: str
) -> Any:
    """Create the variant, then read it back by ``read_as`` (an id or ref)."""
    await post(client, tenant, "VARIANT_PRODUCT", "CREATE", payload)
    return await get(client, tenant, f"/api/v1/variants/{read_as}")


async def test_fields_the_variant_lacks_come_from_its_product(client, tenant) -> None:
    await post(client, tenant, "PRODUCT", "CREATE", SHIRT)
    payload = {"id": "v1", "productRef": "P1-S", "baseProductId": "p1", "title": "Shirt, S"}
    variant = await _variant(client, tenant, payload, "v1")
    assert _described(variant) == (
        "Shirt, S",
        "https://shop.example/p1",
        "https://shop.example/p1.jpg",
        {"title": "variant", "link": "product", "image_link": "product"},
    )
    assert variant["product"]["title"] == "Shirt"
    # The wishlist view resolves the same variant to the same values.
    item = await _item_of(client, tenant, "v1")
    assert (item["title"], item["link"], item["image_link"]) == _described(variant)[:3]
    # By ref, and with the product named by its ref, the same answer.
    payload = {"id": "v2", "productRef": "P1-M", "baseProductRef": "P1", "link": "https://m"}
    by_ref = await _variant(client, tenant, payload, "P1-M")
    assert _described(by_ref) == (
        "Shirt",
        "https://m",
        "https://shop.example/p1.jpg",
        {"title": "product", "link": "variant", "image_link": "product"},
    )


async def test_a_variant_with_its_own_fields_keeps_them(client, tenant) -> None:
    await post(client, tenant, "PRODUCT", "CREATE", SHIRT)
    payload = {
        "id": "v1",
        "baseProductId": "p1",
        "title": "Shirt, S",
        "link": "https://shop.example/v1",
        "imageLink": "https://shop.example/v1.jpg",
    }
    variant = await _variant(client, tenant, payload, "v1")
    assert _described(variant) == (
        "Shirt, S",
        "https://shop.example/v1",
        "https://shop.example/v1.jpg",
        {"title": "variant", "link": "variant", "image_link": "variant"},
    )


async def test_missing_product_gives_nulls_until_it_arrives(client, tenant, other_tenant) -> None:
    # Another tenant's product with that id lends nothing.
    await post(client, other_tenant, "PRODUCT", "CREATE", SHIRT)
    payload = {"id": "v1", "baseProductId": "p1", "title": "Shirt, S"}
    variant = await _variant(client, tenant, payload, "v1")
    assert _described(variant) == (
        "Shirt, S",
        None,
        None,
        {"title": "variant", "link": None, "image_link": None},
    )
    assert variant["product"] is None
    # Resolved when read: the product arriving later fills the gaps.
    await post(client, tenant, "PRODUCT", "CREATE", SHIRT)
    variant = await get(client, tenant, "/api/v1/variants/v1")
    assert (variant["link"], variant["field_sources"]["link"]) == (
        "https://shop.example/p1",
        "product",
    )


async def test_deleted_product_still_lends_its_fields_like_resolved_items(client, tenant) -> None:
    await post(client, tenant, "PRODUCT", "CREATE", SHIRT)
    await post(client, tenant, "VARIANT_PRODUCT", "CREATE", {"id": "v1", "baseProductId": "p1"})
    await post(client, tenant, "PRODUCT", "DELETE", {"id": "p1"})
    variant = await get(client, tenant, "/api/v1/variants/v1")
    assert _described(variant) == (
        "Shirt",
        "https://shop.example/p1",
        "https://shop.example/p1.jpg",
        {"title": "product", "link": "product", "image_link": "product"},
    )
    assert variant["product"]["deleted"] is True
    item = await _item_of(client, tenant, "v1")
    assert (item["title"], item["link"], item["image_link"]) == _described(variant)[:3]
    assert item["product_deleted"] is True


async def test_a_product_answers_with_its_own_fields(client, tenant) -> None:
    await post(client, tenant, "PRODUCT", "CREATE", {"id": "p1", "title": "Mug"})
    product = await get(client, tenant, "/api/v1/variants/p1")
    assert product["kind"] == "product"
    assert _described(product) == (
        "Mug",
        None,
        None,
        {"title": "product", "link": None, "image_link": None},
    )
