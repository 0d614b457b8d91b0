"""The commerce read model learned from collected events (see docs/read-model.md).

Every table is tenant-scoped. Entities keep both their ids and their refs; references between
entities are stored as given (id and/or ref) and resolved when read, so the model converges
whatever order the events arrive in. ``*_seq`` columns point at ``event.seq`` (the event that
last wrote the row); timestamps that come from events are the events' ``received_at``, so a
rebuild reproduces them exactly.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Index,
    Integer,
    Numeric,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from event_collector.kit.db import BigIntPK, UTCDateTime, metadata

Money = Numeric(20, 6)


def _bookkeeping() -> list[Column[object]]:
    """Columns every merged entity row carries (see the ordering rules in docs/read-model.md)."""
    return [
        Column("deleted", Boolean(), nullable=False, default=False),
        # The entity's own modification time from the payload, when it has one: an event with an
        # older one than the row's does not overwrite fields (stale update).
        Column("modified_at", UTCDateTime(), nullable=True),
        # CREATE | UPDATE | BULK_CREATE | BULK_UPDATE | DELETE: the last operation that wrote.
        Column("last_operation", String(16), nullable=False),
        Column("first_seq", BigIntPK, nullable=False),
        Column("last_seq", BigIntPK, nullable=False),
        Column("updated_at", UTCDateTime(), nullable=False),
    ]


customer_table = Table(
    "rm_customer",
    metadata,
    Column("tenant", String(128), nullable=False),
    Column("id", String(255), nullable=False),
    Column("ref", String(255), nullable=True),
    Column("email", String(320), nullable=True),
    Column("first_name", String(255), nullable=True),
    Column("last_name", String(255), nullable=True),
    # optin_preferences.email.opt_in_active (wins when present)
    Column("opt_in_active", Boolean(), nullable=True),
    Column("accepts_marketing", Boolean(), nullable=True),
    Column("consent_updated_at", UTCDateTime(), nullable=True),
    Column("active", Boolean(), nullable=True),
    *_bookkeeping(),
    PrimaryKeyConstraint("tenant", "id", name="pk_rm_customer"),
    Index("ix_rm_customer_tenant_ref", "tenant", "ref"),
)

wishlist_table = Table(
    "rm_wishlist",
    metadata,
    Column("tenant", String(128), nullable=False),
    Column("id", String(255), nullable=False),
    Column("ref", String(255), nullable=True),
    Column("name", String(255), nullable=True),
    Column("customer_id", String(255), nullable=True),
    Column("customer_ref", String(255), nullable=True),
    Column("created_time", UTCDateTime(), nullable=True),
    *_bookkeeping(),
    PrimaryKeyConstraint("tenant", "id", name="pk_rm_wishlist"),
    Index("ix_rm_wishlist_tenant_ref", "tenant", "ref"),
    Index("ix_rm_wishlist_tenant_customer_id", "tenant", "customer_id"),
    Index("ix_rm_wishlist_tenant_customer_ref", "tenant", "customer_ref"),
)

wishlist_item_table = Table(
    "rm_wishlist_item",
    metadata,
    Column("tenant", String(128), nullable=False),
    Column("id", String(255), nullable=False),
    Column("ref", String(255), nullable=True),
    Column("wishlist_id", String(255), nullable=True),
    Column("wishlist_ref", String(255), nullable=True),
    Column("product_id", String(255), nullable=True),
    Column("product_ref", String(255), nullable=True),
    Column("variant_id", String(255), nullable=True),
    Column("variant_ref", String(255), nullable=True),
    Column("purchased", Boolean(), nullable=True),
    Column("disable_notification", Boolean(), nullable=True),
    Column("notify_me", Boolean(), nullable=True),
    # createdTime of the item, else the arrival time of the first event that named it.
    Column("added_at", UTCDateTime(), nullable=True),
    # The effective price when the item was added (first price known at/after adding).
    Column("baseline_price", Money, nullable=True),
    Column("baseline_currency", String(8), nullable=True),
    Column("baseline_seq", BigIntPK, nullable=True),
    *_bookkeeping(),
    PrimaryKeyConstraint("tenant", "id", name="pk_rm_wishlist_item"),
    Index("ix_rm_wishlist_item_tenant_wishlist_id", "tenant", "wishlist_id"),
    Index("ix_rm_wishlist_item_tenant_wishlist_ref", "tenant", "wishlist_ref"),
    Index("ix_rm_wishlist_item_tenant_variant_id", "tenant", "variant_id"),
    Index("ix_rm_wishlist_item_tenant_variant_ref", "tenant", "variant_ref"),
    Index("ix_rm_wishlist_item_tenant_product_id", "tenant", "product_id"),
)


def _sellable_columns() -> list[Column[object]]:
    return [
        Column("tenant", String(128), nullable=False),
        Column("id", String(255), nullable=False),
        # For a variant: its own ref (the variant's `productRef`).
        Column("ref", String(255), nullable=True),
        Column("title", Text(), nullable=True),
        Column("link", Text(), nullable=True),
        Column("image_link", Text(), nullable=True),
        Column("low_stock_threshold", Integer(), nullable=True),
        Column("back_in_stock_threshold", Integer(), nullable=True),
        Column("disabled", Boolean(), nullable=True),
        # stock.totalStock: the available quantity when no inventory levels are known.
        Column("total_stock", Integer(), nullable=True),
        # The embedded price object as last seen (the price itself lives in rm_price).
        Column("price_currency", String(8), nullable=True),
        Column("price", Money, nullable=True),
        Column("sale_price", Money, nullable=True),
    ]


product_table = Table(
    "rm_product",
    metadata,
    *_sellable_columns(),
    *_bookkeeping(),
    PrimaryKeyConstraint("tenant", "id", name="pk_rm_product"),
    Index("ix_rm_product_tenant_ref", "tenant", "ref"),
)

variant_table = Table(
    "rm_variant",
    metadata,
    *_sellable_columns(),
    Column("base_product_id", String(255), nullable=True),
    Column("base_product_ref", String(255), nullable=True),
    *_bookkeeping(),
    PrimaryKeyConstraint("tenant", "id", name="pk_rm_variant"),
    Index("ix_rm_variant_tenant_ref", "tenant", "ref"),
    Index("ix_rm_variant_tenant_base_product_id", "tenant", "base_product_id"),
)

price_table = Table(
    "rm_price",
    metadata,
    Column("tenant", String(128), nullable=False),
    # productVariantId (a variant id, or a product id for products sold without variants)
    Column("variant_id", String(255), nullable=False),
    Column("currency", String(8), nullable=False),
    # The price entity's own id / priceRef, so that a DELETE naming only the id finds it.
    Column("price_id", String(255), nullable=True),
    Column("price", Money, nullable=True),
    Column("sale_price", Money, nullable=True),
    Column("active", Boolean(), nullable=True),
    # salePrice when set and lower, else price; null when inactive or deleted.
    Column("effective_price", Money, nullable=True),
    *_bookkeeping(),
    PrimaryKeyConstraint("tenant", "variant_id", "currency", name="pk_rm_price"),
    Index("ix_rm_price_tenant_price_id", "tenant", "price_id"),
)

price_history_table = Table(
    "rm_price_history",
    metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("tenant", String(128), nullable=False),
    Column("variant_id", String(255), nullable=False),
    Column("currency", String(8), nullable=False),
    Column("price", Money, nullable=True),
    Column("sale_price", Money, nullable=True),
    Column("effective_price", Money, nullable=True),
    Column("event_seq", BigIntPK, nullable=False),
    Column("recorded_at", UTCDateTime(), nullable=False),
    Index("ix_rm_price_history_tenant_variant_id", "tenant", "variant_id", "id"),
)

stock_level_table = Table(
    "rm_stock_level",
    metadata,
    Column("tenant", String(128), nullable=False),
    Column("variant_id", String(255), nullable=False),
    # locationId, else locationRef, else "" (a level without a location)
    Column("location", String(255), nullable=False),
    Column("level_id", String(255), nullable=True),
    Column("location_id", String(255), nullable=True),
    Column("location_ref", String(255), nullable=True),
    Column("stock_on_hand", Integer(), nullable=True),
    Column("reserved", Integer(), nullable=True),
    Column("excluded_quantity", Integer(), nullable=True),
    *_bookkeeping(),
    PrimaryKeyConstraint("tenant", "variant_id", "location", name="pk_rm_stock_level"),
    Index("ix_rm_stock_level_tenant_level_id", "tenant", "level_id"),
)

stock_table = Table(
    "rm_stock",
    metadata,
    Column("tenant", String(128), nullable=False),
    Column("variant_id", String(255), nullable=False),
    # Σ max(0, stockOnHand - reserved - excludedQuantity) over live levels, else totalStock.
    Column("available", Integer(), nullable=True),
    Column("source", String(8), nullable=True),  # levels | total
    # Episode state: out of stock (≤ 0) waiting for a restock; above the low-stock threshold.
    Column("out_of_stock", Boolean(), nullable=True),
    Column("above_low", Boolean(), nullable=True),
    # Number of back-in-stock / low-stock episodes so far (the current episode's number).
    Column("restock_cycle", Integer(), nullable=False, default=0),
    Column("low_stock_cycle", Integer(), nullable=False, default=0),
    Column("last_seq", BigIntPK, nullable=False),
    Column("updated_at", UTCDateTime(), nullable=False),
    PrimaryKeyConstraint("tenant", "variant_id", name="pk_rm_stock"),
)

stock_history_table = Table(
    "rm_stock_history",
    metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("tenant", String(128), nullable=False),
    Column("variant_id", String(255), nullable=False),
    Column("available_before", Integer(), nullable=True),
    Column("available", Integer(), nullable=True),
    Column("event_seq", BigIntPK, nullable=False),
    Column("recorded_at", UTCDateTime(), nullable=False),
    Index("ix_rm_stock_history_tenant_variant_id", "tenant", "variant_id", "id"),
)

stock_episode_table = Table(
    "rm_stock_episode",
    metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("tenant", String(128), nullable=False),
    Column("variant_id", String(255), nullable=False),
    Column("kind", String(16), nullable=False),  # back_in_stock | low_stock
    Column("episode", Integer(), nullable=False),
    Column("threshold", Integer(), nullable=False),
    Column("available_before", Integer(), nullable=True),
    Column("available", Integer(), nullable=False),
    Column("event_seq", BigIntPK, nullable=False),
    Column("started_at", UTCDateTime(), nullable=False),
    UniqueConstraint("tenant", "variant_id", "kind", "episode", name="uq_rm_stock_episode_key"),
)

read_model_problem_table = Table(
    "read_model_problem",
    metadata,
    Column("id", BigIntPK, primary_key=True, autoincrement=True),
    Column("tenant", String(128), nullable=False),
    Column("event_seq", BigIntPK, nullable=False),
    Column("event_id", String(255), nullable=False),
    Column("entity_type", String(32), nullable=True),
    Column("operation", String(16), nullable=False),
    Column("problem", Text(), nullable=False),
    Column("recorded_at", UTCDateTime(), nullable=False),
    Index("ix_read_model_problem_tenant_id", "tenant", "id"),
    Index("ix_read_model_problem_tenant_event_seq", "tenant", "event_seq"),
)

READ_MODEL_TABLES = (
    customer_table,
    wishlist_table,
    wishlist_item_table,
    product_table,
    variant_table,
    price_table,
    price_history_table,
    stock_level_table,
    stock_table,
    stock_history_table,
    stock_episode_table,
    read_model_problem_table,
)
