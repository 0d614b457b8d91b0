"""The resolved wishlist item: one query that follows every reference of a wishlist item.

:func:`resolved_items` is a SQLAlchemy Core selectable with one row per wishlist item of a
tenant, whatever is known or missing (outer joins: an unknown variant, product, wishlist or
customer gives NULL columns, never a lost row). The read API
(``GET /api/v1/customers/{id}/wishlists``) reads it; the notification rules filter and join it
set-wise in SQL::

    items = resolved_items(tenant)
    select(items.c.customer_id, items.c.item_id).where(
        items.c.customer_consent, items.c.available_stock > 0
    )

Columns (names are stable; notification code depends on them):

======================== ===============================================================
customer_id, customer_ref the wishlist's customer (wishlist ``customerId``, else by ref)
customer_email,           its fields; NULL when the customer is not known
customer_first_name,
customer_last_name
customer_consent          :func:`marketing_consent` (false when the customer is not known)
customer_deleted          NULL when the customer is not known
wishlist_id, wishlist_ref the item's wishlist (item ``wishlistId``, else by ref); NULL when
wishlist_name,            not known
wishlist_deleted
item_id, item_ref         the item
item_created_time         ``createdTime``, else the arrival of the first event naming it
item_first_seq            the event that first wrote the item (arrival order)
purchased,                the item's flags, false when absent
disable_notification,
notify_me
item_deleted              the item is (soft-)deleted
item_wishlist_id,         the references as the item carries them (before resolution)
item_wishlist_ref,
item_product_id,
item_product_ref,
item_variant_id,
item_variant_ref
variant_id, variant_ref   the known variant: ``selectedVariantId``, else by
                          ``selectedVariantRef`` (the variant's own ``productRef``)
product_id, product_ref   the known product: the variant's ``baseProductId``, else
                          ``baseProductRef``, else the item's ``productId``, else
                          ``productRef``
sellable_id               the id prices, stock and stock episodes are keyed by: the
                          item's ``selectedVariantId``, else the variant found by ref, else
                          (no variant reference: a product sold as is) its ``productId``
title, link, image_link   each the variant's value, else the product's (per field,
                          :func:`variant_then_product`)
currency, price,          the current price: the sellable's live price in the baseline
sale_price,               currency, else its most recently written live price; NULL
effective_price           when it has no live price
baseline_price,           the effective price when the item was added (stored when the item
baseline_currency         is applied, see ``apply/rules.py``); NULL until a price is known
available_stock           the sellable's available quantity; NULL when unknown
low_stock_threshold,      the variant's value, else the product's; NULL when neither has
back_in_stock_threshold   one (the caller applies its own default)
variant_deleted,          flags of the known variant/product; false when it is not known
variant_disabled,         (test ``variant_id`` / ``product_id`` for "known")
product_deleted,
product_disabled
unavailable               the variant or its product is deleted or disabled
======================== ===============================================================

Joins that may match several rows (a ref shared by several rows) take a live row before a
deleted one, then the lowest id, so every item yields exactly one row.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Subquery, Table, case, false, func, literal, select
from sqlalchemy.sql.elements import ColumnElement
from sqlalchemy.sql.expression import ScalarSelect
from sqlalchemy.sql.selectable import FromClause

from event_collector.models import (
    customer_table,
    price_table,
    product_table,
    stock_table,
    variant_table,
    wishlist_item_table,
    wishlist_table,
)

# The lookups below read these aliases, one per table: each lookup is a subquery of its own, so
# they can share one (built once: an alias copies every column). Never nest a lookup in another
# of the same table: the inner one would correlate to the outer one's alias.
_LOOKUP = {
    table: table.alias(f"{table.name}_lookup")
    for table in (customer_table, wishlist_table, variant_table, product_table, price_table)
}


def marketing_consent(customer: FromClause = customer_table) -> ColumnElement[bool]:
    """A customer's marketing consent, for WHERE clauses and selects (DESIGN §6.2):
    ``optin_preferences.email.opt_in_active`` when present, else ``accepts_marketing``;
    neither known means no consent. ``customer`` may be an alias of ``rm_customer``."""
    return func.coalesce(customer.c.opt_in_active, customer.c.accepts_marketing, false())


def id_by_ref(table: Table, tenant: str, ref: ColumnElement[str] | str) -> ScalarSelect[str]:
    """The id of the row of ``table`` with this ref: a live one first, then the lowest id (the
    one rule for refs that several rows share)."""
    candidate = _LOOKUP[table]
    return (
        select(candidate.c.id)
        .where(candidate.c.tenant == tenant, candidate.c.ref == ref)
        .order_by(candidate.c.deleted, candidate.c.id)
        .limit(1)
        .scalar_subquery()
    )


# What a variant shows of itself, each field its own value else its product's
# (:func:`variant_then_product`): wishlist items and ``GET /api/v1/variants/{id}`` alike.
DESCRIPTION_FIELDS = ("title", "link", "image_link")


def variant_then_product(variant: FromClause, product: FromClause, name: str) -> ColumnElement[Any]:
    """The variant's ``name``, else its product's (per field; NULL when neither has one, or the
    product is not known: an outer-joined ``product`` with NULL columns). A deleted or disabled
    product still lends its values (the item/variant says it is unavailable, not nameless)."""
    return func.coalesce(variant.c[name], product.c[name])


def source_of(variant: FromClause, product: FromClause, name: str) -> ColumnElement[str]:
    """Where :func:`variant_then_product` took ``name`` from: ``'variant'``, ``'product'``, or
    NULL when neither has it."""
    return case(
        (variant.c[name].is_not(None), literal("variant")),
        (product.c[name].is_not(None), literal("product")),
    )


def _known_id(table: Table, tenant: str, entity_id: ColumnElement[str]) -> ScalarSelect[str]:
    """``entity_id`` when ``table`` has a row with that id, else NULL."""
    candidate = _LOOKUP[table]
    return (
        select(candidate.c.id)
        .where(candidate.c.tenant == tenant, candidate.c.id == entity_id)
        .scalar_subquery()
    )


def product_id_of(
    tenant: str, product_id: ColumnElement[str], product_ref: ColumnElement[str]
) -> ColumnElement[str]:
    """The product a variant (``baseProductId``/``baseProductRef``) or an item
    (``productId``/``productRef``) names: the one with that id, else the one with that ref."""
    return func.coalesce(
        _known_id(product_table, tenant, product_id), id_by_ref(product_table, tenant, product_ref)
    )


def _live_price_currency(
    tenant: str, sellable_id: ColumnElement[str], currency: ColumnElement[str] | None
) -> ScalarSelect[str]:
    """``currency`` when the sellable has a live price in it; with ``currency=None``, the
    currency of its most recently written live price."""
    live = _LOOKUP[price_table]
    statement = select(live.c.currency).where(
        live.c.tenant == tenant,
        live.c.variant_id == sellable_id,
        live.c.effective_price.is_not(None),
    )
    if currency is not None:
        return statement.where(live.c.currency == currency).scalar_subquery()
    return statement.order_by(live.c.last_seq.desc(), live.c.currency).limit(1).scalar_subquery()


def _false_when_null(flag: ColumnElement[bool]) -> ColumnElement[bool]:
    return func.coalesce(flag, false())


def resolved_items(tenant: str) -> Subquery:
    """Every wishlist item of ``tenant`` resolved to its wishlist, customer, variant, product,
    current price and stock (columns in the module docstring)."""
    item = wishlist_item_table.alias("item")
    wishlist = wishlist_table.alias("wishlist")
    customer = customer_table.alias("customer")
    variant = variant_table.alias("variant")
    product = product_table.alias("product")
    price = price_table.alias("price")
    stock = stock_table.alias("stock")

    wishlist_id = case(
        (item.c.wishlist_id.is_not(None), item.c.wishlist_id),
        else_=id_by_ref(wishlist_table, tenant, item.c.wishlist_ref),
    )
    customer_id = case(
        (wishlist.c.customer_id.is_not(None), wishlist.c.customer_id),
        else_=id_by_ref(customer_table, tenant, wishlist.c.customer_ref),
    )
    variant_id = case(
        (item.c.variant_id.is_not(None), item.c.variant_id),
        else_=id_by_ref(variant_table, tenant, item.c.variant_ref),
    )
    product_id = func.coalesce(
        product_id_of(tenant, variant.c.base_product_id, variant.c.base_product_ref),
        product_id_of(tenant, item.c.product_id, item.c.product_ref),
    )
    # A variant id names prices and stock even before the variant itself arrives. The apply
    # rules follow the same rule on rows not yet written (apply/rules.py, _sellable_of).
    sellable_id = case(
        (item.c.variant_id.is_not(None), item.c.variant_id),
        (item.c.variant_ref.is_not(None), variant.c.id),
        else_=item.c.product_id,
    )
    price_currency = func.coalesce(
        _live_price_currency(tenant, sellable_id, item.c.baseline_currency),
        _live_price_currency(tenant, sellable_id, None),
    )

    variant_deleted = _false_when_null(variant.c.deleted)
    variant_disabled = _false_when_null(variant.c.disabled)
    product_deleted = _false_when_null(product.c.deleted)
    product_disabled = _false_when_null(product.c.disabled)

    joined = (
        item.outerjoin(wishlist, (wishlist.c.tenant == tenant) & (wishlist.c.id == wishlist_id))
        .outerjoin(customer, (customer.c.tenant == tenant) & (customer.c.id == customer_id))
        .outerjoin(variant, (variant.c.tenant == tenant) & (variant.c.id == variant_id))
        .outerjoin(product, (product.c.tenant == tenant) & (product.c.id == product_id))
        .outerjoin(
            price,
            (price.c.tenant == tenant)
            & (price.c.variant_id == sellable_id)
            & (price.c.currency == price_currency),
        )
        .outerjoin(stock, (stock.c.tenant == tenant) & (stock.c.variant_id == sellable_id))
    )
    return (
        select(
            customer.c.id.label("customer_id"),
            customer.c.ref.label("customer_ref"),
            customer.c.email.label("customer_email"),
            customer.c.first_name.label("customer_first_name"),
            customer.c.last_name.label("customer_last_name"),
            marketing_consent(customer).label("customer_consent"),
            customer.c.deleted.label("customer_deleted"),
            wishlist.c.id.label("wishlist_id"),
            wishlist.c.ref.label("wishlist_ref"),
            wishlist.c.name.label("wishlist_name"),
            wishlist.c.deleted.label("wishlist_deleted"),
            item.c.id.label("item_id"),
            item.c.ref.label("item_ref"),
            item.c.added_at.label("item_created_time"),
            item.c.first_seq.label("item_first_seq"),
            _false_when_null(item.c.purchased).label("purchased"),
            _false_when_null(item.c.disable_notification).label("disable_notification"),
            _false_when_null(item.c.notify_me).label("notify_me"),
            item.c.deleted.label("item_deleted"),
            item.c.wishlist_id.label("item_wishlist_id"),
            item.c.wishlist_ref.label("item_wishlist_ref"),
            item.c.product_id.label("item_product_id"),
            item.c.product_ref.label("item_product_ref"),
            item.c.variant_id.label("item_variant_id"),
            item.c.variant_ref.label("item_variant_ref"),
            variant.c.id.label("variant_id"),
            variant.c.ref.label("variant_ref"),
            product.c.id.label("product_id"),
            product.c.ref.label("product_ref"),
            sellable_id.label("sellable_id"),
            *(
                variant_then_product(variant, product, name).label(name)
                for name in DESCRIPTION_FIELDS
            ),
            price.c.currency.label("currency"),
            price.c.price.label("price"),
            price.c.sale_price.label("sale_price"),
            price.c.effective_price.label("effective_price"),
            item.c.baseline_price.label("baseline_price"),
            item.c.baseline_currency.label("baseline_currency"),
            stock.c.available.label("available_stock"),
            variant_then_product(variant, product, "low_stock_threshold").label(
                "low_stock_threshold"
            ),
            variant_then_product(variant, product, "back_in_stock_threshold").label(
                "back_in_stock_threshold"
            ),
            variant_deleted.label("variant_deleted"),
            variant_disabled.label("variant_disabled"),
            product_deleted.label("product_deleted"),
            product_disabled.label("product_disabled"),
            (variant_deleted | variant_disabled | product_deleted | product_disabled).label(
                "unavailable"
            ),
        )
        .select_from(joined)
        .where(item.c.tenant == tenant)
        .subquery("resolved_item")
    )
