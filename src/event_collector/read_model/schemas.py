"""Shapes of the read-model API (documentation of the JSON the endpoints return).

Amounts are decimal strings ("19.99"), times ISO-8601 UTC with ``Z``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Consent(BaseModel):
    email_opt_in_active: bool | None = Field(
        description="optin_preferences.email.opt_in_active, when the customer payload had it"
    )
    accepts_marketing: bool | None
    marketing_consent: bool = Field(
        description="opt_in_active when present, else accepts_marketing; absent = false"
    )
    updated_at: str | None


class CustomerOut(BaseModel):
    id: str
    ref: str | None
    email: str | None
    first_name: str | None
    last_name: str | None
    active: bool | None
    deleted: bool
    consent: Consent
    updated_at: str | None


class WishlistItemOut(BaseModel):
    id: str
    ref: str | None
    wishlist_id: str | None
    wishlist_ref: str | None
    product_id: str | None
    product_ref: str | None
    variant_id: str | None
    variant_ref: str | None
    resolved_variant_id: str | None = Field(description="The known variant the item points at")
    resolved_product_id: str | None
    purchased: bool
    disable_notification: bool
    notify_me: bool
    deleted: bool
    added_at: str | None
    title: str | None
    link: str | None
    image_link: str | None
    product_deleted: bool = Field(description="The variant or its product is deleted/disabled")
    baseline_price: str | None = Field(description="Effective price when the item was added")
    baseline_currency: str | None
    currency: str | None
    price: str | None
    sale_price: str | None
    effective_price: str | None = Field(description="salePrice when set and lower, else price")
    available_stock: int | None
    low_stock_threshold: int
    back_in_stock_threshold: int


class WishlistOut(BaseModel):
    id: str
    ref: str | None
    name: str | None
    customer_id: str | None
    customer_ref: str | None
    deleted: bool
    created_time: str | None
    items: list[WishlistItemOut]


class CustomerWishlists(BaseModel):
    customer: CustomerOut
    wishlists: list[WishlistOut]


class PriceOut(BaseModel):
    currency: str
    price: str | None
    sale_price: str | None
    effective_price: str | None = Field(description="null when inactive or deleted")
    active: bool | None
    deleted: bool
    updated_at: str | None


class PriceChange(BaseModel):
    currency: str
    price: str | None
    sale_price: str | None
    effective_price: str | None
    event_seq: int
    recorded_at: str | None


class StockLevelOut(BaseModel):
    location_id: str | None
    location_ref: str | None
    stock_on_hand: int | None
    reserved: int | None
    excluded_quantity: int | None
    deleted: bool


class StockOut(BaseModel):
    available: int | None = Field(
        description="Σ max(0, stockOnHand - reserved - excludedQuantity), else totalStock"
    )
    source: str | None = Field(description="levels | total")
    out_of_stock: bool | None
    restock_cycle: int = Field(description="Number of out-of-stock → in-stock episodes")
    low_stock_cycle: int = Field(description="Number of above → below low-stock crossings")
    total_stock: int | None
    levels: list[StockLevelOut]


class StockChange(BaseModel):
    available_before: int | None
    available: int | None
    event_seq: int
    recorded_at: str | None


class StockEpisode(BaseModel):
    kind: str = Field(description="back_in_stock | low_stock")
    episode: int
    threshold: int
    available_before: int | None
    available: int
    event_seq: int
    started_at: str | None


class ProductSummary(BaseModel):
    id: str
    ref: str | None
    title: str | None
    deleted: bool
    disabled: bool


Source = Literal["variant", "product"]


class FieldSources(BaseModel):
    """Where each shown field came from: ``variant`` (its own), ``product`` (a variant without
    one shows its product's), or null (neither has it)."""

    title: Source | None
    link: Source | None
    image_link: Source | None


class VariantOut(BaseModel):
    id: str
    kind: str = Field(description="variant | product | unknown (prices/stock seen, entity not)")
    ref: str | None
    title: str | None
    link: str | None
    image_link: str | None
    field_sources: FieldSources = Field(
        description="Where title, link and image_link came from: variant | product | null"
    )
    base_product_id: str | None
    base_product_ref: str | None
    product: ProductSummary | None
    deleted: bool | None
    disabled: bool | None
    low_stock_threshold: int
    back_in_stock_threshold: int
    prices: list[PriceOut]
    price_history: list[PriceChange] = Field(description="The latest 100 changes, oldest first")
    stock: StockOut
    stock_history: list[StockChange] = Field(description="The latest 100 changes, oldest first")
    stock_episodes: list[StockEpisode]


class ProblemOut(BaseModel):
    event_id: str
    entity_type: str | None
    operation: str
    problem: str
    recorded_at: str | None


class ProblemPage(BaseModel):
    items: list[ProblemOut]
    next_cursor: str | None
