"""Derived state (DESIGN §6.1): effective price, baseline at add time, available stock,
back-in-stock and low-stock episodes, threshold precedence; read through the API."""

from __future__ import annotations

from tests.read_model.helpers import customer_with_item, first_item, get, post


async def _level(client, tenant, variant: str, location: str, on_hand, **more) -> None:
    payload = {"productVariantId": variant, "locationId": location, "stockOnHand": on_hand}
    await post(client, tenant, "INVENTORY_LEVEL", "UPDATE", {**payload, **more})


async def _price(client, tenant, variant: str, price, sale=None, currency="AUD") -> None:
    payload = {"productVariantId": variant, "currencyCode": currency, "price": price}
    if sale is not None:
        payload["salePrice"] = sale
    await post(client, tenant, "PRICE", "UPDATE", payload)


async def test_baseline_is_price_at_add_time_and_current_price_moves(client, tenant) -> None:
    await _price(client, tenant, "v1", "50.00", "45.00")
    await customer_with_item(client, tenant, {"product": {"selectedVariantId": "v1"}})
    await _price(client, tenant, "v1", "50.00", "30.00")
    item = await first_item(client, tenant)
    assert item["baseline_price"] == "45.00"
    assert item["baseline_currency"] == "AUD"
    assert item["effective_price"] == "30.00"
    assert (item["price"], item["sale_price"], item["currency"]) == ("50.00", "30.00", "AUD")


async def test_baseline_is_first_price_after_add_when_none_known(client, tenant) -> None:
    await customer_with_item(client, tenant, {"product": {"selectedVariantId": "v1"}})
    assert (await first_item(client, tenant))["baseline_price"] is None
    await _price(client, tenant, "v1", "20")
    await _price(client, tenant, "v1", "10")
    item = await first_item(client, tenant)
    assert (item["baseline_price"], item["effective_price"]) == ("20.00", "10.00")


async def test_baseline_through_variant_ref_resolved_later(client, tenant) -> None:
    await customer_with_item(client, tenant, {"product": {"selectedVariantRef": "SKU-1"}})
    await _price(client, tenant, "v1", "20")
    assert (await first_item(client, tenant))["baseline_price"] is None
    await post(client, tenant, "VARIANT_PRODUCT", "CREATE", {"id": "v1", "productRef": "SKU-1"})
    item = await first_item(client, tenant)
    assert item["resolved_variant_id"] == "v1"
    assert item["baseline_price"] == "20.00"


async def test_product_level_item_uses_product_prices(client, tenant) -> None:
    await customer_with_item(client, tenant, {"product": {"productId": "p1"}})
    await post(
        client,
        tenant,
        "PRODUCT",
        "CREATE",
        {
            "id": "p1",
            "productRef": "P1",
            "title": "T",
            "price": {"currencyCode": "EUR", "price": 9, "salePrice": None},
            "stock": {"totalStock": "3"},
        },
    )
    item = await first_item(client, tenant)
    assert (item["baseline_price"], item["currency"], item["available_stock"]) == ("9.00", "EUR", 3)
    assert item["title"] == "T"


async def test_effective_price_rules(client, tenant) -> None:
    await _price(client, tenant, "v1", "10", "12")  # sale higher: price
    await _price(client, tenant, "v1", "10", "8", currency="USD")  # sale lower: sale
    await _price(client, tenant, "v2", None, "7")  # only a sale price
    v1 = await get(client, tenant, "/api/v1/variants/v1")
    assert {p["currency"]: p["effective_price"] for p in v1["prices"]} == {
        "AUD": "10.00",
        "USD": "8.00",
    }
    v2 = await get(client, tenant, "/api/v1/variants/v2")
    assert v2["kind"] == "unknown"
    assert v2["prices"][0]["effective_price"] == "7.00"


async def test_price_history_records_changes_only(client, tenant) -> None:
    await _price(client, tenant, "v1", "10")
    await _price(client, tenant, "v1", "10")
    await _price(client, tenant, "v1", "9")
    history = (await get(client, tenant, "/api/v1/variants/v1"))["price_history"]
    assert [h["effective_price"] for h in history] == ["10.00", "9.00"]


async def test_available_is_sum_over_locations_clamped(client, tenant) -> None:
    await _level(client, tenant, "v1", "L1", 10, reserved=3, excludedQuantity=1)
    await _level(client, tenant, "v1", "L2", 2, reserved=5)  # negative → 0
    await _level(client, tenant, "v1", "L3", "4")
    variant = await get(client, tenant, "/api/v1/variants/v1")
    assert variant["stock"]["available"] == 10
    assert variant["stock"]["source"] == "levels"
    assert len(variant["stock"]["levels"]) == 3
    await post(
        client, tenant, "INVENTORY_LEVEL", "DELETE", {"productVariantId": "v1", "locationId": "L3"}
    )
    assert (await get(client, tenant, "/api/v1/variants/v1"))["stock"]["available"] == 6


async def test_levels_win_over_total_stock(client, tenant) -> None:
    await post(
        client,
        tenant,
        "VARIANT_PRODUCT",
        "CREATE",
        {"id": "v1", "productRef": "S", "stock": {"totalStock": "40"}},
    )
    assert (await get(client, tenant, "/api/v1/variants/v1"))["stock"]["available"] == 40
    await _level(client, tenant, "v1", "L1", 3)
    stock = (await get(client, tenant, "/api/v1/variants/v1"))["stock"]
    assert (stock["available"], stock["source"], stock["total_stock"]) == (3, "levels", 40)


async def test_back_in_stock_and_low_stock_episodes(client, tenant) -> None:
    await post(client, tenant, "VARIANT_PRODUCT", "CREATE", {"id": "v1", "productRef": "S"})
    sequence = [10, 4, 3, 0, 2, 8, 5, 0, 1]
    for on_hand in sequence:
        await _level(client, tenant, "v1", "L1", on_hand)
    variant = await get(client, tenant, "/api/v1/variants/v1")
    episodes = [
        (e["kind"], e["episode"], e["available_before"], e["available"])
        for e in variant["stock_episodes"]
    ]
    assert episodes == [
        ("low_stock", 1, 10, 4),  # 10 → 4 crosses below 5
        ("back_in_stock", 1, 0, 2),  # 0 → 2 (≥ 1)
        ("low_stock", 2, 8, 5),  # re-armed by 8, crosses at 5
        ("back_in_stock", 2, 0, 1),
    ]
    assert [h["available"] for h in variant["stock_history"]] == sequence
    assert variant["stock"]["restock_cycle"] == 2
    assert variant["stock"]["low_stock_cycle"] == 2


async def test_first_known_stock_is_no_episode(client, tenant) -> None:
    await _level(client, tenant, "v1", "L1", 3)
    await _level(client, tenant, "v2", "L1", 0)
    assert (await get(client, tenant, "/api/v1/variants/v1"))["stock_episodes"] == []
    assert (await get(client, tenant, "/api/v1/variants/v2"))["stock"]["out_of_stock"] is True


async def test_thresholds_variant_then_product_then_default(client, tenant) -> None:
    await post(
        client,
        tenant,
        "PRODUCT",
        "CREATE",
        {"id": "p1", "productRef": "P", "lowStockThreshold": 8, "backInStockThreshold": 3},
    )
    await post(
        client,
        tenant,
        "VARIANT_PRODUCT",
        "CREATE",
        {"id": "v1", "productRef": "V1", "baseProductRef": "P", "lowStockThreshold": "2"},
    )
    await post(client, tenant, "VARIANT_PRODUCT", "CREATE", {"id": "v2", "productRef": "V2"})
    v1 = await get(client, tenant, "/api/v1/variants/v1")
    assert (v1["low_stock_threshold"], v1["back_in_stock_threshold"]) == (2, 3)
    assert v1["product"]["id"] == "p1"
    v2 = await get(client, tenant, "/api/v1/variants/V2")
    assert (v2["low_stock_threshold"], v2["back_in_stock_threshold"]) == (5, 1)
    # Back in stock needs ≥ 3 for v1: 0 → 2 is no episode, 2 → 3 is.
    for on_hand in (0, 2, 3):
        await _level(client, tenant, "v1", "L1", on_hand)
    episodes = (await get(client, tenant, "/api/v1/variants/v1"))["stock_episodes"]
    assert [(e["kind"], e["available"], e["threshold"]) for e in episodes] == [
        ("back_in_stock", 3, 3)
    ]


async def test_item_flags_and_stock_in_wishlist_view(client, tenant) -> None:
    await customer_with_item(
        client,
        tenant,
        {
            "product": {"productId": "p1", "selectedVariantId": "v1"},
            "notifyMe": "true",
            "purchased": False,
            "createdTime": "2024-05-01T00:00:00Z",
        },
    )
    await post(
        client,
        tenant,
        "VARIANT_PRODUCT",
        "CREATE",
        {
            "id": "v1",
            "productRef": "V1",
            "baseProductId": "p1",
            "title": "Blue",
            "link": "https://x.example/v1",
            "imageLink": "https://x.example/v1.jpg",
            "disabled": True,
        },
    )
    await _level(client, tenant, "v1", "L1", 6, reserved=1)
    item = await first_item(client, tenant)
    assert item["notify_me"] is True
    assert item["purchased"] is False
    assert item["added_at"] == "2024-05-01T00:00:00.000000Z"
    assert item["available_stock"] == 5
    assert item["title"] == "Blue"
    assert item["product_deleted"] is True


async def test_amounts_keep_the_currency_precision_or_more(client, tenant) -> None:
    # "100.00" used to come back as "100" (issue 13 item 6): the currency's minor units, or the
    # digits sent when there are more.
    await _price(client, tenant, "v1", "100.00", currency="EUR")
    await _price(client, tenant, "v1", "500", currency="JPY")
    await _price(client, tenant, "v1", "1.5", currency="KWD")
    await _price(client, tenant, "v1", "19.999", "19.5", currency="USD")
    v1 = await get(client, tenant, "/api/v1/variants/v1")
    shown = {p["currency"]: (p["price"], p["sale_price"]) for p in v1["prices"]}
    assert shown == {
        "EUR": ("100.00", None),
        "JPY": ("500", None),
        "KWD": ("1.500", None),
        "USD": ("19.999", "19.50"),
    }
    assert {h["currency"]: h["price"] for h in v1["price_history"]}["USD"] == "19.999"
