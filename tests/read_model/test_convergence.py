"""Out-of-order arrival: references resolve when the referenced entity arrives, and for event
sets whose outcome does not depend on order, every arrival order gives the same model."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import make_tenant
from tests.read_model.helpers import BOOKKEEPING, comparable, dump, get, post

Event = tuple[str, str, dict[str, Any]]


async def test_item_before_product_variant_price_and_stock(client, tenant) -> None:
    await post(
        client,
        tenant,
        "CUSTOMER",
        "CREATE",
        {"id": "c1", "customerRef": "CR1", "email": "a@example.com"},
    )
    await post(
        client,
        tenant,
        "WISHLIST_ITEM",
        "CREATE",
        {
            "id": "i1",
            "wishlistRef": "WR1",
            "product": {"productRef": "P1", "selectedVariantRef": "P1-RED"},
        },
    )
    await post(
        client,
        tenant,
        "PRICE",
        "CREATE",
        {"productVariantId": "v1", "currencyCode": "AUD", "price": "30"},
    )
    await post(
        client,
        tenant,
        "INVENTORY_LEVEL",
        "CREATE",
        {"productVariantId": "v1", "locationRef": "S1", "stockOnHand": 4},
    )
    # Nothing resolves yet: the wishlist (by ref) and the variant (by ref) are unknown.
    body = await get(client, tenant, "/api/v1/customers/CR1/wishlists")
    assert body["wishlists"] == []
    await post(
        client,
        tenant,
        "WISHLIST",
        "CREATE",
        {"id": "w1", "wishlistRef": "WR1", "name": "W", "customerRef": "CR1"},
    )
    item = (await get(client, tenant, "/api/v1/customers/c1/wishlists"))["wishlists"][0]["items"][0]
    assert item["resolved_variant_id"] is None
    assert item["effective_price"] is None
    await post(
        client,
        tenant,
        "VARIANT_PRODUCT",
        "CREATE",
        {"id": "v1", "productRef": "P1-RED", "baseProductRef": "P1", "title": "Red"},
    )
    await post(
        client, tenant, "PRODUCT", "CREATE", {"id": "p1", "productRef": "P1", "title": "Shirt"}
    )
    item = (await get(client, tenant, "/api/v1/customers/c1/wishlists"))["wishlists"][0]["items"][0]
    assert item["resolved_variant_id"] == "v1"
    assert item["resolved_product_id"] == "p1"
    assert (item["baseline_price"], item["effective_price"], item["available_stock"]) == (
        "30.00",
        "30.00",
        4,
    )


async def test_update_before_create_keeps_the_update(client, context, tenant) -> None:
    await post(client, tenant, "WISHLIST_ITEM", "UPDATE", {"id": "i1", "purchased": True})
    await post(
        client,
        tenant,
        "WISHLIST_ITEM",
        "CREATE",
        {"id": "i1", "wishlistId": "w1", "purchased": False, "notifyMe": True},
    )
    (row,) = (await dump(context, tenant.name))["rm_wishlist_item"]
    assert (row["purchased"], row["notify_me"], row["wishlist_id"]) == (True, True, "w1")


async def test_delete_is_sticky_against_a_late_create(client, context, tenant) -> None:
    await post(client, tenant, "CUSTOMER", "DELETE", {"id": "c1"})
    await post(
        client,
        tenant,
        "CUSTOMER",
        "CREATE",
        {"id": "c1", "email": "a@example.com", "deleted": False},
    )
    (row,) = (await dump(context, tenant.name))["rm_customer"]
    assert (row["deleted"], row["email"]) == (True, "a@example.com")
    # ... but an explicit un-delete by a later UPDATE is honoured.
    await post(client, tenant, "CUSTOMER", "UPDATE", {"id": "c1", "deleted": "false"})
    (row,) = (await dump(context, tenant.name))["rm_customer"]
    assert row["deleted"] is False


async def test_stale_update_does_not_overwrite(client, context, tenant) -> None:
    await post(
        client,
        tenant,
        "PRODUCT",
        "UPDATE",
        {"id": "p1", "title": "New", "lastModifiedDate": "2024-02-02T00:00:00.000Z"},
    )
    await post(
        client,
        tenant,
        "PRODUCT",
        "UPDATE",
        {
            "id": "p1",
            "title": "Old",
            "link": "https://x.example/p1",
            "lastModifiedDate": "2024-02-01T00:00:00.000Z",
        },
    )
    (row,) = (await dump(context, tenant.name))["rm_product"]
    assert (row["title"], row["link"]) == ("New", "https://x.example/p1")


# --- property: any arrival order gives the same model ------------------------------------------

_DROP = BOOKKEEPING | {"tenant", "event_seq", "recorded_at", "started_at"}


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[list[Event], list[int]]:
    """Distinct entities with references between them, at most one price and one stock source
    per variant, and per item at most one CREATE, one UPDATE and one DELETE."""
    events: list[Event] = []
    variants: list[tuple[str, str]] = []
    for p in range(draw(st.integers(1, 2))):
        product: dict[str, Any] = {"id": f"p{p}", "productRef": f"P{p}", "title": f"Product {p}"}
        if draw(st.booleans()):
            product["lowStockThreshold"] = draw(st.integers(1, 9))
        events.append(("PRODUCT", "CREATE", product))
        for v in range(draw(st.integers(1, 2))):
            vid, vref = f"v{p}{v}", f"P{p}-{v}"
            variants.append((vid, vref))
            variant: dict[str, Any] = {"id": vid, "productRef": vref, "title": f"V {vid}"}
            if draw(st.booleans()):
                variant["baseProductId"] = f"p{p}"
            else:
                variant["baseProductRef"] = f"P{p}"
            stock = draw(st.sampled_from(["none", "total", "level"]))
            if stock == "total":
                variant["stock"] = {"totalStock": str(draw(st.integers(0, 20)))}
            elif stock == "level":
                events.append(
                    (
                        "INVENTORY_LEVEL",
                        "CREATE",
                        {
                            "productVariantId": vid,
                            "locationId": "L1",
                            "stockOnHand": str(draw(st.integers(0, 20))),
                            "reserved": draw(st.integers(0, 3)),
                        },
                    )
                )
            events.append(("VARIANT_PRODUCT", "CREATE", variant))
            if draw(st.booleans()):
                price: dict[str, Any] = {
                    "productVariantId": vid,
                    "currencyCode": "AUD",
                    "price": f"{draw(st.integers(10, 99))}.95",
                }
                if draw(st.booleans()):
                    price["salePrice"] = draw(st.integers(5, 120))
                events.append(("PRICE", "CREATE", price))
    for c in range(draw(st.integers(1, 2))):
        events.append(
            (
                "CUSTOMER",
                "CREATE",
                {
                    "id": f"c{c}",
                    "customerRef": f"CR{c}",
                    "email": f"c{c}@example.com",
                    "firstName": "A",
                    "deleted": False,
                },
            )
        )
        if draw(st.booleans()):
            events.append(
                ("CUSTOMER", "UPDATE", {"id": f"c{c}", "firstName": "B", "accepts_marketing": True})
            )
        wishlist: dict[str, Any] = {"id": f"w{c}", "wishlistRef": f"WR{c}", "name": "W"}
        wishlist["customerId" if draw(st.booleans()) else "customerRef"] = (
            f"c{c}" if "customerId" not in wishlist else f"CR{c}"
        )
        if "customerRef" in wishlist:
            wishlist["customerRef"] = f"CR{c}"
        events.append(("WISHLIST", "CREATE", wishlist))
        for i in range(draw(st.integers(1, 3))):
            iid = f"i{c}{i}"
            vid, vref = draw(st.sampled_from([*variants, ("v-missing", "MISSING")]))
            item: dict[str, Any] = {
                "id": iid,
                "notifyMe": draw(st.booleans()),
                "purchased": False,
                "product": {"productId": f"p{vid[1]}"},
            }
            if draw(st.booleans()):
                item["wishlistId"] = f"w{c}"
            else:
                item["wishlistRef"] = f"WR{c}"
            if draw(st.booleans()):
                item["product"]["selectedVariantId"] = vid
            else:
                item["product"]["selectedVariantRef"] = vref
            events.append(("WISHLIST_ITEM", "CREATE", item))
            if draw(st.booleans()):
                events.append(("WISHLIST_ITEM", "UPDATE", {"id": iid, "purchased": True}))
            if draw(st.booleans()):
                events.append(("WISHLIST_ITEM", "DELETE", {"id": iid}))
    order = draw(st.permutations(range(len(events))))
    return events, list(order)


async def _model_after(client, context, events: list[Event]) -> dict[str, Any]:
    tenant = await make_tenant(context, client)
    for event_type, operation, payload in events:
        # A stable entity id (the event's own is random), so both orders learn the same ids.
        entity_id = payload.get("id") or f"{event_type}-{payload['productVariantId']}"
        await post(client, tenant, event_type, operation, payload, entity_id=entity_id)
    return comparable(await dump(context, tenant.name), drop=_DROP)


async def test_any_arrival_order_gives_the_same_model(client, context) -> None:
    loop = asyncio.get_running_loop()

    def run(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(timeout=120)

    @settings(
        max_examples=int(os.environ.get("RM_EXAMPLES", "12")),
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(scenarios())
    def check(scenario: tuple[list[Event], list[int]]) -> None:
        events, order = scenario
        expected = run(_model_after(client, context, events))
        actual = run(_model_after(client, context, [events[i] for i in order]))
        assert actual == expected
        assert expected["read_model_problem"] == []

    # Hypothesis drives the examples from a worker thread; the app keeps running on this loop.
    await asyncio.to_thread(check)
