"""One row per wishlist item with everything the rules need, resolved in SQL.

Interim: the read model's own ``read_model.items.resolved_items`` (issue 9) replaces this module
when it lands; the column names below are what the rules read.

References are resolved as docs/read-model.md says (ids win over refs; an item without a variant
reference is a product sold without variants); variant fields fall back to the product's.
"""

from __future__ import annotations

from sqlalchemy import Subquery, and_, case, func, literal, not_, or_, select, true
from sqlalchemy.sql.elements import ColumnElement

from event_collector.models.catalog import (
    customer_table,
    price_table,
    product_table,
    stock_table,
    variant_table,
    wishlist_item_table,
    wishlist_table,
)


def consent() -> ColumnElement[bool]:
    """Marketing consent: optin_preferences.email.opt_in_active when known, else
    accepts_marketing; unknown is no consent."""
    c = customer_table
    return func.coalesce(c.c.opt_in_active, c.c.accepts_marketing, False)


def _flag(column: ColumnElement[bool | None]) -> ColumnElement[bool]:
    return func.coalesce(column, False)


def resolved_items(tenant: str) -> Subquery:
    """The tenant's wishlist items, one row each, joined to customer, variant, product, the
    price in the item's baseline currency and the stock."""
    i, w, c = wishlist_item_table, wishlist_table, customer_table
    v, p, pr, s = variant_table, product_table, price_table, stock_table

    wishlist_by_ref = (
        select(w.c.id)
        .where(w.c.tenant == i.c.tenant, w.c.ref == i.c.wishlist_ref)
        .limit(1)
        .scalar_subquery()
    )
    variant_by_ref = (
        select(v.c.id)
        .where(v.c.tenant == i.c.tenant, v.c.ref == i.c.variant_ref)
        .limit(1)
        .scalar_subquery()
    )
    base = select(
        i,
        func.coalesce(i.c.wishlist_id, wishlist_by_ref).label("wishlist_key"),
        func.coalesce(i.c.variant_id, variant_by_ref, i.c.product_id).label("sellable_id"),
        or_(i.c.variant_id.is_not(None), i.c.variant_ref.is_not(None)).label("has_variant_ref"),
    ).where(i.c.tenant == tenant)
    items = base.subquery("ri_item")

    customer_by_ref = (
        select(c.c.id)
        .where(c.c.tenant == w.c.tenant, c.c.ref == w.c.customer_ref)
        .limit(1)
        .scalar_subquery()
    )
    wishlists = (
        select(
            w.c.id,
            w.c.ref,
            w.c.deleted,
            func.coalesce(w.c.customer_id, customer_by_ref).label("customer_key"),
        )
        .where(w.c.tenant == tenant)
        .subquery("ri_wishlist")
    )
    product_by_ref = (
        select(p.c.id)
        .where(p.c.tenant == v.c.tenant, p.c.ref == v.c.base_product_ref)
        .limit(1)
        .scalar_subquery()
    )
    variants = (
        select(v, func.coalesce(v.c.base_product_id, product_by_ref).label("product_key"))
        .where(v.c.tenant == tenant)
        .subquery("ri_variant")
    )
    vv = variants
    product_key = func.coalesce(
        vv.c.product_key, items.c.product_id, case((vv.c.id.is_(None), items.c.sellable_id))
    )
    known = or_(vv.c.id.is_not(None), and_(not_(items.c.has_variant_ref), p.c.id.is_not(None)))
    unavailable = or_(
        _flag(vv.c.deleted), _flag(vv.c.disabled), _flag(p.c.deleted), _flag(p.c.disabled)
    )
    other = price_table.alias("other_price")
    other_currency_price = (
        select(literal(1))
        .where(
            other.c.tenant == tenant,
            other.c.variant_id == items.c.sellable_id,
            other.c.effective_price.is_not(None),
            other.c.currency != items.c.baseline_currency,
            other.c.deleted.is_not(true()),
        )
        .exists()
    )
    query = (
        select(
            items.c.id.label("item_id"),
            items.c.ref.label("item_ref"),
            wishlists.c.id.label("wishlist_id"),
            wishlists.c.ref.label("wishlist_ref"),
            c.c.id.label("customer_id"),
            c.c.ref.label("customer_ref"),
            c.c.email,
            c.c.first_name,
            c.c.last_name,
            _flag(c.c.deleted).label("customer_deleted"),
            consent().label("consent"),
            or_(_flag(items.c.deleted), _flag(wishlists.c.deleted)).label("item_deleted"),
            _flag(items.c.purchased).label("purchased"),
            _flag(items.c.disable_notification).label("disable_notification"),
            _flag(items.c.notify_me).label("notify_me"),
            items.c.added_at,
            items.c.sellable_id,
            known.label("sellable_known"),
            unavailable.label("sellable_unavailable"),
            func.coalesce(vv.c.title, p.c.title).label("title"),
            func.coalesce(vv.c.link, p.c.link).label("link"),
            func.coalesce(vv.c.image_link, p.c.image_link).label("image_link"),
            func.coalesce(vv.c.low_stock_threshold, p.c.low_stock_threshold).label(
                "low_stock_threshold"
            ),
            func.coalesce(vv.c.back_in_stock_threshold, p.c.back_in_stock_threshold).label(
                "back_in_stock_threshold"
            ),
            items.c.baseline_price,
            items.c.baseline_currency,
            pr.c.price,
            pr.c.sale_price,
            pr.c.effective_price,
            other_currency_price.label("other_currency_price"),
            s.c.available,
            s.c.out_of_stock,
            s.c.above_low,
            s.c.restock_cycle,
            s.c.low_stock_cycle,
        )
        .select_from(items)
        .outerjoin(wishlists, wishlists.c.id == items.c.wishlist_key)
        .outerjoin(c, and_(c.c.tenant == tenant, c.c.id == wishlists.c.customer_key))
        .outerjoin(vv, vv.c.id == items.c.sellable_id)
        .outerjoin(p, and_(p.c.tenant == tenant, p.c.id == product_key))
        .outerjoin(
            pr,
            and_(
                pr.c.tenant == tenant,
                pr.c.variant_id == items.c.sellable_id,
                pr.c.currency == items.c.baseline_currency,
                pr.c.deleted.is_not(true()),
            ),
        )
        .outerjoin(s, and_(s.c.tenant == tenant, s.c.variant_id == items.c.sellable_id))
    )
    return query.subquery("resolved_item")
