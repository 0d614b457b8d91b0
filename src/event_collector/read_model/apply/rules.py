"""The apply rules: merge an entity into its row, derive prices, baselines, stock and episodes.

Run by the ingest hook (:mod:`.hook`) against an :class:`ApplyRepository`; described in
``docs/read-model.md`` (keep the two in step).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Table

from event_collector.events.model import StoredEvent
from event_collector.models import price_table, stock_table, wishlist_item_table
from event_collector.read_model.apply.payloads import Entity, effective_price
from event_collector.read_model.apply.repository import ENTITY_TABLES, ApplyRepository, ItemMatch
from event_collector.read_model.repository import Row

_CREATES = frozenset({"CREATE", "BULK_CREATE"})
_UPDATES = frozenset({"UPDATE", "BULK_UPDATE"})

DEFAULT_LOW_STOCK_THRESHOLD = 5
DEFAULT_BACK_IN_STOCK_THRESHOLD = 1


@dataclass(slots=True)
class ApplyContext:
    """One event being applied, and the repository it is applied through."""

    repo: ApplyRepository
    event: StoredEvent

    @property
    def tenant(self) -> str:
        return self.event.tenant

    @property
    def op(self) -> str:
        return self.event.operation

    @property
    def seq(self) -> int:
        return self.event.seq

    @property
    def at(self) -> datetime:
        return self.event.received_at


async def apply_entity(ctx: ApplyContext, entity_type: str, entity: Entity) -> None:
    table = ENTITY_TABLES[entity_type]
    before, after = await _merge(ctx, table, entity)
    if entity_type == "WISHLIST_ITEM":
        return
    if entity_type == "WISHLIST":
        for child_type, child in entity.children:
            await apply_entity(ctx, child_type, child)
    elif entity_type in ("PRODUCT", "VARIANT_PRODUCT"):
        sellable_id = after["id"]
        for price in entity.prices:
            await apply_entity(ctx, "PRICE", price)
        if (
            entity_type == "VARIANT_PRODUCT"
            and after.get("ref")
            and (before is None or before.get("ref") != after.get("ref"))
        ):
            # Items that named this variant by ref only can now get a baseline.
            current = await ctx.repo.current_price(ctx.tenant, sellable_id)
            if current is not None:
                await _give_missing_baselines(ctx, sellable_id, after["ref"], current)
        if "total_stock" in entity.fields:
            await _recompute_stock(ctx, sellable_id)
        if _changed(before, after, _THRESHOLD_LINKS):
            affected = [sellable_id]
            if entity_type == "PRODUCT":
                affected += await ctx.repo.variant_ids_of(ctx.tenant, after)
            await _rearm_low_stock(ctx, affected)
        for child_type, child in entity.children:
            await apply_entity(ctx, child_type, child)
    elif entity_type == "PRICE":
        await _after_price(ctx, before, after)
    elif entity_type == "INVENTORY_LEVEL":
        await _recompute_stock(ctx, after["variant_id"])


async def _derive(ctx: ApplyContext, table: Table, row: dict[str, Any]) -> None:
    """Derived columns, computed before the row is written (one statement per row)."""
    if table is wishlist_item_table and row["baseline_price"] is None:
        await _fill_baseline(ctx, row)
    elif table is price_table:
        live = not row["deleted"] and row.get("active") is not False
        row["effective_price"] = (
            effective_price(row.get("price"), row.get("sale_price")) if live else None
        )


async def _merge(ctx: ApplyContext, table: Table, entity: Entity) -> tuple[Row | None, Row]:
    """Upsert one entity row by the ordering rules of docs/read-model.md."""
    existing = await ctx.repo.get(table, ctx.tenant, entity.key)
    op = ctx.op
    if existing is None:
        row: dict[str, Any] = {column.name: None for column in table.columns}
        row.update(tenant=ctx.tenant, **entity.key)
        row.update(entity.fields)
        row.update(
            deleted=op == "DELETE" or entity.deleted is True,
            modified_at=entity.modified_at,
            last_operation=op,
            first_seq=ctx.seq,
            last_seq=ctx.seq,
            updated_at=ctx.at,
        )
        await _derive(ctx, table, row)
        await ctx.repo.insert(table, row)
        return None, row

    stale = (
        entity.modified_at is not None
        and existing["modified_at"] is not None
        and entity.modified_at < existing["modified_at"]
    )
    late_create = op in _CREATES and existing["last_operation"] in _UPDATES
    gap_fill_only = stale or late_create or op == "DELETE"
    row = dict(existing)
    for name, value in entity.fields.items():
        if not gap_fill_only or row.get(name) is None:
            row[name] = value
    if op == "DELETE" or entity.deleted is True:
        row["deleted"] = True
    elif entity.deleted is False and op in _UPDATES and not stale:
        row["deleted"] = False
    if entity.modified_at is not None and (
        row["modified_at"] is None or entity.modified_at > row["modified_at"]
    ):
        row["modified_at"] = entity.modified_at
    if not late_create and op != "DELETE":
        # A DELETE writes no fields, so a CREATE arriving after it still counts as late.
        row["last_operation"] = op
    row["last_seq"] = ctx.seq
    row["updated_at"] = ctx.at
    await _derive(ctx, table, row)
    values = {name: value for name, value in row.items() if existing.get(name) != value}
    if values:
        await ctx.repo.update(table, ctx.tenant, entity.key, values)
    return existing, row


_PRICE_FIELDS = ("price", "sale_price", "effective_price")


async def _after_price(ctx: ApplyContext, before: Row | None, after: Row) -> None:
    if _changed(before, after, _PRICE_FIELDS) and not (
        before is None and after["effective_price"] is None and after["price"] is None
    ):
        await ctx.repo.add_price_history(
            {
                "tenant": ctx.tenant,
                "variant_id": after["variant_id"],
                "currency": after["currency"],
                "price": after["price"],
                "sale_price": after["sale_price"],
                "effective_price": after["effective_price"],
                "event_seq": ctx.seq,
                "recorded_at": ctx.at,
            }
        )
    if after["effective_price"] is None or (before and before["effective_price"] is not None):
        # Items only lack a baseline while their variant has no live price: once a price is
        # live, every item added since got it at add time.
        return
    variant_ref = await ctx.repo.variant_ref(ctx.tenant, after["variant_id"])
    await _give_missing_baselines(ctx, after["variant_id"], variant_ref, after)


# --- baseline: the effective price when the item was added (first price known at/after adding)


async def _sellable_of(repo: ApplyRepository, tenant: str, item: Mapping[str, Any]) -> str | None:
    """The id prices and stock of an item are keyed by: its variant, else its product."""
    if item.get("variant_id"):
        return str(item["variant_id"])
    if item.get("variant_ref"):
        variant = await repo.variant_by_ref(tenant, item["variant_ref"])
        return str(variant["id"]) if variant else None
    return str(item["product_id"]) if item.get("product_id") else None


async def _fill_baseline(ctx: ApplyContext, item: dict[str, Any]) -> None:
    """At add time: the baseline of an item about to be written is its sellable's current
    price (none yet: :func:`_give_missing_baselines` gives it the first one known later)."""
    sellable_id = await _sellable_of(ctx.repo, ctx.tenant, item)
    if sellable_id is None:
        return
    current = await ctx.repo.current_price(ctx.tenant, sellable_id)
    if current is None:
        return
    item.update(
        baseline_price=current["effective_price"],
        baseline_currency=current["currency"],
        baseline_seq=ctx.seq,
    )


def _items_of_sellable(sellable_id: str, variant_ref: str | None) -> list[ItemMatch]:
    """The items whose sellable this is (the inverse of :func:`_sellable_of`): they name it
    by variant id, or by variant ref only, or name no variant and it is their product."""
    targets: list[ItemMatch] = [
        {"variant_id": sellable_id},
        {"variant_id": None, "variant_ref": None, "product_id": sellable_id},
    ]
    if variant_ref:
        targets.append({"variant_id": None, "variant_ref": variant_ref})
    return targets


async def _give_missing_baselines(
    ctx: ApplyContext, sellable_id: str, variant_ref: str | None, price: Mapping[str, Any]
) -> None:
    """After add time: the first live price of a sellable (or the current one when a variant
    gets the ref items named it by) becomes the baseline of its items that have none."""
    await ctx.repo.set_missing_baselines(
        ctx.tenant,
        _items_of_sellable(sellable_id, variant_ref),
        price=price["effective_price"],
        currency=price["currency"],
        seq=ctx.seq,
    )


# --- stock


def thresholds(
    variant: Mapping[str, Any] | None, product: Mapping[str, Any] | None
) -> tuple[int, int]:
    """(low-stock, back-in-stock) thresholds: variant, then product, then the defaults."""

    def pick(name: str, default: int) -> int:
        for holder in (variant, product):
            if holder is not None and holder.get(name) is not None:
                return int(holder[name])
        return default

    return (
        pick("low_stock_threshold", DEFAULT_LOW_STOCK_THRESHOLD),
        pick("back_in_stock_threshold", DEFAULT_BACK_IN_STOCK_THRESHOLD),
    )


def _thresholds_of(facts: Mapping[str, Any] | None) -> tuple[int, int]:
    if facts is None:
        return DEFAULT_LOW_STOCK_THRESHOLD, DEFAULT_BACK_IN_STOCK_THRESHOLD
    variant = {"low_stock_threshold": facts["low"], "back_in_stock_threshold": facts["bis"]}
    product = {
        "low_stock_threshold": facts.get("product_low"),
        "back_in_stock_threshold": facts.get("product_bis"),
    }
    return thresholds(variant, product)


async def _recompute_stock(ctx: ApplyContext, sellable_id: str) -> None:
    repo, tenant = ctx.repo, ctx.tenant
    levels = await repo.live_levels(tenant, sellable_id)
    facts = await repo.sellable_facts(tenant, sellable_id)
    available: int | None
    if levels:
        available = sum(
            max(
                0,
                (level["stock_on_hand"] or 0)
                - (level["reserved"] or 0)
                - (level["excluded_quantity"] or 0),
            )
            for level in levels
        )
        source: str | None = "levels"
    else:
        available = facts["total_stock"] if facts else None
        source = "total" if available is not None else None

    stock = await repo.get_stock(tenant, sellable_id)
    previous = stock["available"] if stock else None
    if stock is not None and previous == available and stock["source"] == source:
        return
    row: dict[str, Any] = (
        dict(stock)
        if stock
        else {
            "tenant": tenant,
            "variant_id": sellable_id,
            "out_of_stock": None,
            "above_low": None,
            "restock_cycle": 0,
            "low_stock_cycle": 0,
        }
    )
    row.update(available=available, source=source, last_seq=ctx.seq, updated_at=ctx.at)
    if available is not None and available != previous:
        low, back_in_stock = _thresholds_of(facts)
        await _episodes(ctx, row, previous, available, low, back_in_stock)
    if available != previous:
        await repo.add_stock_history(
            {
                "tenant": tenant,
                "variant_id": sellable_id,
                "available_before": previous,
                "available": available,
                "event_seq": ctx.seq,
                "recorded_at": ctx.at,
            }
        )
    await repo.save_stock(row, exists=stock is not None)


_THRESHOLD_LINKS = ("low_stock_threshold", "ref", "base_product_id", "base_product_ref")


async def _rearm_low_stock(ctx: ApplyContext, sellable_ids: Sequence[str]) -> None:
    """A low-stock threshold that changes (or becomes known) re-arms or disarms the low-stock
    state against the current quantity, without an episode: only stock movements fire."""
    for sellable_id in sellable_ids:
        stock = await ctx.repo.get_stock(ctx.tenant, sellable_id)
        if stock is None or stock["available"] is None:
            continue
        low, _bis = _thresholds_of(await ctx.repo.sellable_facts(ctx.tenant, sellable_id))
        above = stock["available"] > low
        if above != stock["above_low"]:
            await ctx.repo.update(
                stock_table, ctx.tenant, {"variant_id": sellable_id}, {"above_low": above}
            )


async def _episodes(
    ctx: ApplyContext, row: dict[str, Any], previous: int | None, available: int, low: int, bis: int
) -> None:
    """Advance the out-of-stock/low-stock state machine; record each episode once."""

    async def episode(kind: str, number: int, threshold: int) -> None:
        await ctx.repo.add_stock_episode(
            {
                "tenant": ctx.tenant,
                "variant_id": row["variant_id"],
                "kind": kind,
                "episode": number,
                "threshold": threshold,
                "available_before": previous,
                "available": available,
                "event_seq": ctx.seq,
                "started_at": ctx.at,
            }
        )

    if row["out_of_stock"] and available >= bis:
        row["restock_cycle"] += 1
        row["out_of_stock"] = False
        await episode("back_in_stock", row["restock_cycle"], bis)
    elif available <= 0:
        row["out_of_stock"] = True
    elif row["out_of_stock"] is None:
        row["out_of_stock"] = False

    if available > low:
        row["above_low"] = True
    else:
        if row["above_low"] and available > 0:
            row["low_stock_cycle"] += 1
            await episode("low_stock", row["low_stock_cycle"], low)
        row["above_low"] = False


def _changed(
    before: Mapping[str, Any] | None, after: Mapping[str, Any], names: Iterable[str]
) -> bool:
    if before is None:
        return True
    return any(before.get(name) != after.get(name) for name in names)
