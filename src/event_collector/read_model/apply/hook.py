"""The ingest hook: apply newly stored events to the read model, inside their transaction.

Decodes the payloads into plans, reads up front what the group will touch
(:class:`CachingApplyRepository`), runs the rules of :mod:`.rules` in memory and writes the
changes at the end; a bug while applying is contained to its event (recorded as a problem).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Table

from event_collector.events.model import StoredEvent
from event_collector.kit.db import AnyConnection, is_unavailable
from event_collector.kit.jsondoc import contains_nul
from event_collector.models import variant_table
from event_collector.read_model.apply import rules
from event_collector.read_model.apply.caching_repository import CachingApplyRepository
from event_collector.read_model.apply.payloads import PARSERS, Entity, PayloadProblem, as_text
from event_collector.read_model.apply.repository import ENTITY_TABLES, ApplyRepository
from event_collector.read_model.apply.rules import ApplyContext
from event_collector.read_model.repository import Row

logger = logging.getLogger(__name__)

READ_MODEL_ENTITY_TYPES: frozenset[str] = frozenset(PARSERS)
# Reports about the platform, not entity changes: never applied even when they name an entity.
IGNORED_EVENT_TYPES = frozenset({"FAULT", "SYSTEM", "WARNING"})
WRITE_OPERATIONS = frozenset({"CREATE", "UPDATE", "BULK_CREATE", "BULK_UPDATE", "DELETE"})


def affects_read_model(event: StoredEvent) -> bool:
    return (
        event.entity_type in READ_MODEL_ENTITY_TYPES
        and event.operation in WRITE_OPERATIONS
        and event.event_type not in IGNORED_EVENT_TYPES
    )


async def apply_events(conn: AnyConnection, events: Sequence[StoredEvent]) -> None:
    """The ingest hook: apply newly stored events, in arrival order, in their transaction.

    Payloads are decoded first, then the rows the whole group touches are read in a few queries
    and the events applied in memory (:class:`CachingApplyRepository`), then the changes are
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
    repo = CachingApplyRepository(conn)
    try:
        await _prefetch(repo, plans)
        problems: list[Row] = []
        for plan in plans:
            problems.extend(await _run(repo, plan))
        await repo.add_problems(problems)
    except Exception as exc:
        if repo.wrote or is_unavailable(exc):
            raise  # something already reached the database, or it is gone: the writer decides
        logger.exception("read-model apply failed; retrying event by event")
    else:
        await repo.flush()
        return
    for plan in plans:
        try:
            async with conn.begin_nested():
                single = CachingApplyRepository(conn)
                await _prefetch(single, [plan])
                await single.add_problems(await _run(single, plan))
                await single.flush()
        except Exception as exc:
            if is_unavailable(exc):
                raise  # not this event's fault: no problem to record
            logger.exception("read-model apply failed for one event")
            await ApplyRepository(conn).add_problems(
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
    if contains_nul(payload):
        # Stored and forwarded as sent (the event keeps the base64 text), but the read model
        # cannot hold it: PostgreSQL refuses NUL in text and JSONB, and SQLite must agree.
        return [("problem", "the payload contains a NUL character (\\u0000); not applied")]

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


async def _prefetch(repo: CachingApplyRepository, plans: Sequence[_Plan]) -> None:
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


async def _run(repo: ApplyRepository, plan: _Plan) -> list[Row]:
    ctx = ApplyContext(repo, plan.event)
    problems: list[Row] = []
    for step in plan.steps:
        if step[0] == "problem":
            problems.append(_problem(plan.event, step[1]))
        elif step[0] == "delete":
            problems.extend(await _delete_by_id(ctx, step[1], step[2], step[3]))
        else:
            await rules.apply_entity(ctx, step[1], step[2])
    return problems


async def _delete_by_id(
    ctx: ApplyContext, entity_type: str, entity_id: str, prefix: str
) -> list[Row]:
    keys = await ctx.repo.keys_by_entity_id(entity_type, ctx.tenant, entity_id)
    if not keys:
        return [_problem(ctx.event, f"{prefix}DELETE names {entity_id!r}, which is not known")]
    for key in keys:
        await rules.apply_entity(ctx, entity_type, Entity(key=key))
    return []
