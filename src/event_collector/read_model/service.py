"""The read-model rules: apply collected events, derive prices and stock, answer the read API.

Applied inside the ingest transaction by :func:`apply_events` (an ingest hook), and replayed by
:func:`rebuild`. The rules (merging, ordering, derived state) are described in
``docs/read-model.md``; keep the two in step.
"""

from __future__ import annotations

import base64
import binascii
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import Table

from event_collector.events.model import StoredEvent
from event_collector.events.repository import EventRepository
from event_collector.kit.db import AnyConnection, Database
from event_collector.kit.errors import BadRequest, NotFound
from event_collector.kit.timefmt import isoformat_z
from event_collector.models import price_table, stock_table, variant_table, wishlist_item_table
from event_collector.read_model.payloads import (
    PARSERS,
    Entity,
    PayloadProblem,
    as_text,
    effective_price,
)
from event_collector.read_model.repository import (
    ENTITY_TABLES,
    CachingReadModelRepository,
    ReadModelRepository,
    Row,
    changed,
)

logger = logging.getLogger(__name__)

READ_MODEL_ENTITY_TYPES: frozenset[str] = frozenset(PARSERS)
# Reports about the platform, not entity changes: never applied even when they name an entity.
IGNORED_EVENT_TYPES = frozenset({"FAULT", "SYSTEM", "WARNING"})
WRITE_OPERATIONS = frozenset({"CREATE", "UPDATE", "BULK_CREATE", "BULK_UPDATE", "DELETE"})
_CREATES = frozenset({"CREATE", "BULK_CREATE"})
_UPDATES = frozenset({"UPDATE", "BULK_UPDATE"})

DEFAULT_LOW_STOCK_THRESHOLD = 5
DEFAULT_BACK_IN_STOCK_THRESHOLD = 1
HISTORY_LIMIT = 100


def affects_read_model(event: StoredEvent) -> bool:
    return (
        event.entity_type in READ_MODEL_ENTITY_TYPES
        and event.operation in WRITE_OPERATIONS
        and event.event_type not in IGNORED_EVENT_TYPES
    )


# --- applying events ---------------------------------------------------------------------------


@dataclass(slots=True)
class _Apply:
    repo: ReadModelRepository
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


async def apply_events(conn: AnyConnection, events: Sequence[StoredEvent]) -> None:
    """The ingest hook: apply newly stored events, in arrival order, in their transaction.

    Payloads are decoded first, then the rows the whole group touches are read in a few queries
    and the events applied in memory (:class:`CachingReadModelRepository`), then the changes are
    written with one statement per table. A bad payload never raises (the problem is recorded).
    An unexpected error while applying in memory (a bug) writes nothing, so the events are then
    applied one by one, each in a savepoint, and the failing one is recorded as a problem:
    ingestion never fails because of the read model. (A database error while writing fails the
    group like any ingest error; the writer then retries its requests one by one.)
    """
    relevant = [event for event in events if affects_read_model(event)]
    if not relevant:
        return
    relevant.sort(key=lambda event: event.seq)
    plans = [_plan(event) for event in relevant]
    repo = CachingReadModelRepository(conn)
    try:
        await _prefetch(repo, plans)
        problems: list[Row] = []
        for plan in plans:
            problems.extend(await _run(repo, plan))
        await repo.add_problems(problems)
    except Exception:
        if repo.wrote:
            raise  # something already reached the database: let the writer retry
        logger.exception("read-model apply failed; retrying event by event")
    else:
        await repo.flush()
        return
    for plan in plans:
        try:
            async with conn.begin_nested():
                single = CachingReadModelRepository(conn)
                await _prefetch(single, [plan])
                await single.add_problems(await _run(single, plan))
                await single.flush()
        except Exception as exc:
            logger.exception("read-model apply failed for one event")
            await ReadModelRepository(conn).add_problems(
                [_problem(plan.event, f"internal error while applying: {type(exc).__name__}")]
            )


def _problem(event: StoredEvent, problem: str) -> Row:
    return {
        "tenant": event.tenant,
        "event_seq": event.seq,
        "event_id": event.id,
        "entity_type": event.entity_type,
        "operation": event.operation,
        "problem": problem[:2000],
        "recorded_at": event.received_at,
    }


@dataclass(slots=True)
class _Plan:
    """An event decoded: what to apply, in order. Steps are ("entity", type, Entity),
    ("delete", type, entity id, problem prefix) or ("problem", text)."""

    event: StoredEvent
    steps: list[tuple[Any, ...]]


def _plan(event: StoredEvent) -> _Plan:
    try:
        return _Plan(event, _decode(event))
    except Exception as exc:  # a decoding bug must not fail ingestion either
        logger.exception("read-model decoding failed")
        return _Plan(event, [("problem", f"internal error while decoding: {type(exc).__name__}")])


def _decode(event: StoredEvent) -> list[tuple[Any, ...]]:
    entity_type = event.entity_type
    assert entity_type is not None
    fallback_id = event.payload_entity_id or event.entity_id
    payload = event.payload
    if payload is None:
        if event.operation == "DELETE" and fallback_id:
            return [("delete", entity_type, fallback_id, "")]
        if event.payload_b64:
            return [("problem", "the payload is not valid JSON")]
        return [("problem", "the event has no payload")]

    bulk = isinstance(payload, list)
    elements = payload if bulk else [payload]
    if bulk and not elements:
        return [("problem", "the payload is an empty array")]
    steps: list[tuple[Any, ...]] = []
    parse = PARSERS[entity_type]
    for index, element in enumerate(elements):
        prefix = f"[{index}] " if bulk else ""
        try:
            entity = parse(element, None if bulk else fallback_id)
        except PayloadProblem as exc:
            named = as_text(element.get("id")) if isinstance(element, dict) else None
            named = named or (None if bulk else fallback_id)
            if event.operation == "DELETE" and named:
                # A DELETE may name a price or stock level by its own id only.
                steps.append(("delete", entity_type, named, prefix))
            else:
                steps.append(("problem", f"{prefix}{exc}"))
            continue
        steps.extend(("problem", f"{prefix}{warning}") for warning in entity.warnings)
        steps.append(("entity", entity_type, entity))
    return steps


async def _prefetch(repo: CachingReadModelRepository, plans: Sequence[_Plan]) -> None:
    """Read up front, in a few queries per tenant, what applying these events will touch."""
    ids: dict[str, dict[Table, set[str]]] = {}
    priced: dict[str, set[str]] = {}
    stocked: dict[str, set[str]] = {}

    def walk(tenant: str, entity_type: str, entity: Entity) -> None:
        if entity_type == "PRICE":
            priced.setdefault(tenant, set()).add(entity.key["variant_id"])
            # Its variant's ref finds the items that name the variant by ref only.
            variants = ids.setdefault(tenant, {}).setdefault(variant_table, set())
            variants.add(entity.key["variant_id"])
            return
        if entity_type == "INVENTORY_LEVEL":
            stocked.setdefault(tenant, set()).add(entity.key["variant_id"])
            return
        table = ENTITY_TABLES[entity_type]
        ids.setdefault(tenant, {}).setdefault(table, set()).add(entity.key["id"])
        if entity_type == "WISHLIST_ITEM":
            sellable = entity.fields.get("variant_id") or entity.fields.get("product_id")
            if sellable:
                priced.setdefault(tenant, set()).add(sellable)
        elif entity_type in ("PRODUCT", "VARIANT_PRODUCT") and (
            "total_stock" in entity.fields or "low_stock_threshold" in entity.fields
        ):
            stocked.setdefault(tenant, set()).add(entity.key["id"])
        for price in entity.prices:
            walk(tenant, "PRICE", price)
        for child_type, child in entity.children:
            walk(tenant, child_type, child)

    for plan in plans:
        for step in plan.steps:
            if step[0] == "entity":
                walk(plan.event.tenant, step[1], step[2])
    for tenant in sorted(set(ids) | set(priced) | set(stocked)):
        await repo.prefetch(
            tenant, ids.get(tenant, {}), priced.get(tenant, set()), stocked.get(tenant, set())
        )


async def _run(repo: ReadModelRepository, plan: _Plan) -> list[Row]:
    ctx = _Apply(repo, plan.event)
    problems: list[Row] = []
    for step in plan.steps:
        if step[0] == "problem":
            problems.append(_problem(plan.event, step[1]))
        elif step[0] == "delete":
            problems.extend(await _delete_by_id(ctx, step[1], step[2], step[3]))
        else:
            await _apply_entity(ctx, step[1], step[2])
    return problems


async def _delete_by_id(ctx: _Apply, entity_type: str, entity_id: str, prefix: str) -> list[Row]:
    keys = await ctx.repo.keys_by_entity_id(entity_type, ctx.tenant, entity_id)
    if not keys:
        return [_problem(ctx.event, f"{prefix}DELETE names {entity_id!r}, which is not known")]
    for key in keys:
        await _apply_entity(ctx, entity_type, Entity(key=key))
    return []


async def _apply_entity(ctx: _Apply, entity_type: str, entity: Entity) -> None:
    table = ENTITY_TABLES[entity_type]
    before, after = await _merge(ctx, table, entity)
    if entity_type == "WISHLIST_ITEM":
        return
    if entity_type == "WISHLIST":
        for child_type, child in entity.children:
            await _apply_entity(ctx, child_type, child)
    elif entity_type in ("PRODUCT", "VARIANT_PRODUCT"):
        sellable_id = after["id"]
        for price in entity.prices:
            await _apply_entity(ctx, "PRICE", price)
        if (
            entity_type == "VARIANT_PRODUCT"
            and after.get("ref")
            and (before is None or before.get("ref") != after.get("ref"))
        ):
            # Items that named this variant by ref only can now get a baseline.
            current = await ctx.repo.current_price(ctx.tenant, sellable_id)
            if current is not None:
                await ctx.repo.set_missing_baselines(
                    ctx.tenant,
                    sellable_id=sellable_id,
                    variant_ref=after["ref"],
                    price=current["effective_price"],
                    currency=current["currency"],
                    seq=ctx.seq,
                )
        if "total_stock" in entity.fields:
            await _recompute_stock(ctx, sellable_id)
        if changed(before, after, _THRESHOLD_LINKS):
            affected = [sellable_id]
            if entity_type == "PRODUCT":
                affected += await ctx.repo.variant_ids_of(ctx.tenant, after)
            await _rearm_low_stock(ctx, affected)
        for child_type, child in entity.children:
            await _apply_entity(ctx, child_type, child)
    elif entity_type == "PRICE":
        await _after_price(ctx, before, after)
    elif entity_type == "INVENTORY_LEVEL":
        await _recompute_stock(ctx, after["variant_id"])


async def _derive(ctx: _Apply, table: Table, row: dict[str, Any]) -> None:
    """Derived columns, computed before the row is written (one statement per row)."""
    if table is wishlist_item_table and row["baseline_price"] is None:
        await _fill_baseline(ctx, row)
    elif table is price_table:
        live = not row["deleted"] and row.get("active") is not False
        row["effective_price"] = (
            effective_price(row.get("price"), row.get("sale_price")) if live else None
        )


async def _merge(ctx: _Apply, table: Table, entity: Entity) -> tuple[Row | None, Row]:
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


async def _after_price(ctx: _Apply, before: Row | None, after: Row) -> None:
    if changed(before, after, _PRICE_FIELDS) and not (
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
    await ctx.repo.set_missing_baselines(
        ctx.tenant,
        sellable_id=after["variant_id"],
        variant_ref=await ctx.repo.variant_ref(ctx.tenant, after["variant_id"]),
        price=after["effective_price"],
        currency=after["currency"],
        seq=ctx.seq,
    )


async def _resolve_sellable(
    repo: ReadModelRepository, tenant: str, item: Mapping[str, Any]
) -> str | None:
    """The id prices and stock of an item are keyed by: its variant, else its product."""
    if item.get("variant_id"):
        return str(item["variant_id"])
    if item.get("variant_ref"):
        variant = await repo.variant_by_ref(tenant, item["variant_ref"])
        return str(variant["id"]) if variant else None
    return str(item["product_id"]) if item.get("product_id") else None


async def _fill_baseline(ctx: _Apply, item: dict[str, Any]) -> None:
    """Set the baseline of an item about to be written from its variant's current price."""
    sellable_id = await _resolve_sellable(ctx.repo, ctx.tenant, item)
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


async def _recompute_stock(ctx: _Apply, sellable_id: str) -> None:
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


async def _rearm_low_stock(ctx: _Apply, sellable_ids: Sequence[str]) -> None:
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
    ctx: _Apply, row: dict[str, Any], previous: int | None, available: int, low: int, bis: int
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


# --- rebuild -----------------------------------------------------------------------------------

Progress = Callable[[int, int], None]


async def rebuild(
    db: Database,
    tenant: str | None,
    *,
    progress: Progress | None = None,
    page_size: int = 1000,
) -> int:
    """Clear the tenant's (or every) read-model rows and replay stored events in arrival order.

    Runs in one write transaction, so readers see the old model until the new one is complete
    and ingestion of the tenant waits meanwhile (on SQLite all ingestion waits).
    Returns the number of events replayed.
    """
    async with db.write() as conn:
        repo = ReadModelRepository(conn)
        total = await repo.count_events(tenant)
        await repo.clear(tenant)
        events_repo = EventRepository.from_connection(conn)
        after, done = 0, 0
        if progress:
            progress(0, total)
        while True:
            events: Sequence[StoredEvent] = await events_repo.iter_all(
                tenant, after_seq=after, limit=page_size
            )
            if not events:
                break
            await apply_events(conn, events)
            after = events[-1].seq
            done += len(events)
            if progress:
                progress(done, max(total, done))
        return done


# --- the read API ------------------------------------------------------------------------------


def money(value: Decimal | None) -> str | None:
    """Amounts travel as decimal strings ("19.99"), never floats."""
    if value is None:
        return None
    text = format(Decimal(value).normalize(), "f")
    return text


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
        "price": money(price["price"]),
        "sale_price": money(price["sale_price"]),
        "effective_price": money(price["effective_price"]),
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
        "baseline_price": money(item["baseline_price"]),
        "baseline_currency": item["baseline_currency"],
        "currency": item["currency"],
        "price": money(item["price"]),
        "sale_price": money(item["sale_price"]),
        "effective_price": money(item["effective_price"]),
        "available_stock": item["available_stock"],
        "low_stock_threshold": DEFAULT_LOW_STOCK_THRESHOLD if low is None else low,
        "back_in_stock_threshold": (
            DEFAULT_BACK_IN_STOCK_THRESHOLD if back_in_stock is None else back_in_stock
        ),
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
                "price": money(h["price"]),
                "sale_price": money(h["sale_price"]),
                "effective_price": money(h["effective_price"]),
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
    return base64.urlsafe_b64encode(f"p{value}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not raw.startswith("p"):
            raise ValueError
        return int(raw[1:])
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadRequest("cursor is not valid; pass the next_cursor of a previous page") from None


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
