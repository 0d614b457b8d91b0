"""The read API: what the collector learned from the events, as the endpoints return it.

Wishlist items are read resolved (``read_model.items``); the rules that derive the model live in
``read_model.apply`` and ``docs/read-model.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from event_collector.kit.cursors import decode_seq_cursor, encode_seq_cursor
from event_collector.kit.db import AnyConnection
from event_collector.kit.errors import NotFound
from event_collector.kit.money import format_amount
from event_collector.kit.timefmt import isoformat_z
from event_collector.read_model.apply.rules import (
    DEFAULT_BACK_IN_STOCK_THRESHOLD,
    DEFAULT_LOW_STOCK_THRESHOLD,
    thresholds,
)
from event_collector.read_model.items import DESCRIPTION_FIELDS
from event_collector.read_model.repository import ReadModelRepository, Row

HISTORY_LIMIT = 100


def _time(value: datetime | None) -> str | None:
    return isoformat_z(value) if value is not None else None


def customer_out(customer: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": customer["id"],
        "ref": customer["ref"],
        "email": customer["email"],
        "first_name": customer["first_name"],
        "last_name": customer["last_name"],
        "active": customer["active"],
        "deleted": customer["deleted"],
        "consent": {
            "email_opt_in_active": customer["opt_in_active"],
            "accepts_marketing": customer["accepts_marketing"],
            "marketing_consent": customer["marketing_consent"],
            "updated_at": _time(customer["consent_updated_at"]),
        },
        "updated_at": _time(customer["updated_at"]),
    }


async def get_customer(conn: AnyConnection, tenant: str, id_or_ref: str) -> dict[str, Any]:
    customer = await ReadModelRepository(conn).customer(tenant, id_or_ref)
    if customer is None:
        raise NotFound(f"no customer with id or ref {id_or_ref!r}")
    return customer_out(customer)


def _price_out(price: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "currency": price["currency"],
        "price": format_amount(price["price"], price["currency"]),
        "sale_price": format_amount(price["sale_price"], price["currency"]),
        "effective_price": format_amount(price["effective_price"], price["currency"]),
        "active": price["active"],
        "deleted": price["deleted"],
        "updated_at": _time(price["updated_at"]),
    }


async def get_customer_wishlists(
    conn: AnyConnection, tenant: str, id_or_ref: str
) -> dict[str, Any]:
    repo = ReadModelRepository(conn)
    customer = await repo.customer(tenant, id_or_ref)
    if customer is None:
        raise NotFound(f"no customer with id or ref {id_or_ref!r}")
    wishlists = await repo.wishlists_of(tenant, customer)
    items_by_wishlist: dict[str, list[dict[str, Any]]] = {w["id"]: [] for w in wishlists}
    for item in await repo.resolved_items_of(tenant, wishlists):
        items_by_wishlist[item["wishlist_id"]].append(_item_out(item))
    return {
        "customer": customer_out(customer),
        "wishlists": [
            {
                "id": w["id"],
                "ref": w["ref"],
                "name": w["name"],
                "customer_id": w["customer_id"],
                "customer_ref": w["customer_ref"],
                "deleted": w["deleted"],
                "created_time": _time(w["created_time"]),
                "items": items_by_wishlist[w["id"]],
            }
            for w in wishlists
        ],
    }


def _item_out(item: Mapping[str, Any]) -> dict[str, Any]:
    """A resolved item (``read_model.items``) as the read API shows it."""
    low = item["low_stock_threshold"]
    back_in_stock = item["back_in_stock_threshold"]
    return {
        "id": item["item_id"],
        "ref": item["item_ref"],
        "wishlist_id": item["item_wishlist_id"],
        "wishlist_ref": item["item_wishlist_ref"],
        "product_id": item["item_product_id"],
        "product_ref": item["item_product_ref"],
        "variant_id": item["item_variant_id"],
        "variant_ref": item["item_variant_ref"],
        "resolved_variant_id": item["variant_id"],
        "resolved_product_id": item["product_id"],
        "purchased": item["purchased"],
        "disable_notification": item["disable_notification"],
        "notify_me": item["notify_me"],
        "deleted": item["item_deleted"],
        "added_at": _time(item["item_created_time"]),
        "title": item["title"],
        "link": item["link"],
        "image_link": item["image_link"],
        "product_deleted": item["unavailable"],
        "baseline_price": format_amount(item["baseline_price"], item["baseline_currency"]),
        "baseline_currency": item["baseline_currency"],
        "currency": item["currency"],
        "price": format_amount(item["price"], item["currency"]),
        "sale_price": format_amount(item["sale_price"], item["currency"]),
        "effective_price": format_amount(item["effective_price"], item["currency"]),
        "available_stock": item["available_stock"],
        "low_stock_threshold": DEFAULT_LOW_STOCK_THRESHOLD if low is None else low,
        "back_in_stock_threshold": (
            DEFAULT_BACK_IN_STOCK_THRESHOLD if back_in_stock is None else back_in_stock
        ),
    }


def _field_sources(variant: Row | None, product: Row | None) -> dict[str, str | None]:
    """Where the answer's title, link and image came from: a variant's are its own else its
    product's (the repository says which); a product's are its own."""
    if variant is not None:
        return {name: variant[f"{name}_source"] for name in DESCRIPTION_FIELDS}
    return {
        name: "product" if product is not None and product[name] is not None else None
        for name in DESCRIPTION_FIELDS
    }


async def get_variant(conn: AnyConnection, tenant: str, id_or_ref: str) -> dict[str, Any]:
    repo = ReadModelRepository(conn)
    variant = await repo.variant(tenant, id_or_ref)
    product: Row | None
    if variant is not None:
        product = await repo.product_of(tenant, variant)
        sellable_id = variant["id"]
    else:
        product = await repo.product(tenant, id_or_ref)
        sellable_id = product["id"] if product else id_or_ref
    prices = await repo.prices_for(tenant, [sellable_id])
    stocks = await repo.stocks_for(tenant, [sellable_id])
    stock = stocks[0] if stocks else None
    if variant is None and product is None and not prices and stock is None:
        raise NotFound(f"no variant with id or ref {id_or_ref!r}")
    described = variant or product
    low, bis = thresholds(variant, product)
    levels = await repo.levels_for(tenant, sellable_id)
    return {
        "id": sellable_id,
        "kind": "variant" if variant else ("product" if product else "unknown"),
        "ref": described["ref"] if described else None,
        "title": described["title"] if described else None,
        "link": described["link"] if described else None,
        "image_link": described["image_link"] if described else None,
        "field_sources": _field_sources(variant, product),
        "base_product_id": variant["base_product_id"] if variant else None,
        "base_product_ref": variant["base_product_ref"] if variant else None,
        "product": (
            {
                "id": product["id"],
                "ref": product["ref"],
                "title": product["title"],
                "deleted": product["deleted"],
                "disabled": bool(product["disabled"]),
            }
            if product and variant
            else None
        ),
        "deleted": described["deleted"] if described else None,
        "disabled": bool(described["disabled"]) if described else None,
        "low_stock_threshold": low,
        "back_in_stock_threshold": bis,
        "prices": [_price_out(p) for p in prices],
        "price_history": [
            {
                "currency": h["currency"],
                "price": format_amount(h["price"], h["currency"]),
                "sale_price": format_amount(h["sale_price"], h["currency"]),
                "effective_price": format_amount(h["effective_price"], h["currency"]),
                "event_seq": h["event_seq"],
                "recorded_at": _time(h["recorded_at"]),
            }
            for h in await repo.price_history(tenant, sellable_id, HISTORY_LIMIT)
        ],
        "stock": {
            "available": stock["available"] if stock else None,
            "source": stock["source"] if stock else None,
            "out_of_stock": stock["out_of_stock"] if stock else None,
            "restock_cycle": stock["restock_cycle"] if stock else 0,
            "low_stock_cycle": stock["low_stock_cycle"] if stock else 0,
            "total_stock": described["total_stock"] if described else None,
            "levels": [
                {
                    "location_id": level["location_id"],
                    "location_ref": level["location_ref"],
                    "stock_on_hand": level["stock_on_hand"],
                    "reserved": level["reserved"],
                    "excluded_quantity": level["excluded_quantity"],
                    "deleted": level["deleted"],
                }
                for level in levels
            ],
        },
        "stock_history": [
            {
                "available_before": h["available_before"],
                "available": h["available"],
                "event_seq": h["event_seq"],
                "recorded_at": _time(h["recorded_at"]),
            }
            for h in await repo.stock_history(tenant, sellable_id, HISTORY_LIMIT)
        ],
        "stock_episodes": [
            {
                "kind": e["kind"],
                "episode": e["episode"],
                "threshold": e["threshold"],
                "available_before": e["available_before"],
                "available": e["available"],
                "event_seq": e["event_seq"],
                "started_at": _time(e["started_at"]),
            }
            for e in await repo.stock_episodes(tenant, sellable_id, HISTORY_LIMIT)
        ],
    }


def _encode_cursor(value: int) -> str:
    return encode_seq_cursor("p", value)


def _decode_cursor(cursor: str) -> int:
    return decode_seq_cursor(cursor, "p")


async def list_problems(
    conn: AnyConnection, tenant: str, *, cursor: str | None, limit: int
) -> dict[str, Any]:
    after = _decode_cursor(cursor) if cursor else None
    rows = await ReadModelRepository(conn).problems(tenant, after_id=after, limit=limit + 1)
    page, more = rows[:limit], len(rows) > limit
    return {
        "items": [
            {
                "event_id": row["event_id"],
                "entity_type": row["entity_type"],
                "operation": row["operation"],
                "problem": row["problem"],
                "recorded_at": _time(row["recorded_at"]),
            }
            for row in page
        ],
        "next_cursor": _encode_cursor(page[-1]["id"]) if more else None,
    }
