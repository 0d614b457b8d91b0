"""The rules of collecting events: validate, store idempotently, read back."""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError
from pydantic_core import from_json
from sqlalchemy.ext.asyncio import AsyncConnection

from event_collector.events.feed import FEED_START, decode_feed_cursor, encode_feed_cursor
from event_collector.events.model import EventKinds, NewEvent, StoredEvent
from event_collector.events.repository import EventRepository
from event_collector.events.schemas import EventIn
from event_collector.events.writer import EventWriter, IngestResult, Outcome
from event_collector.kit.cursors import decode_seq_cursor, encode_seq_cursor
from event_collector.kit.db import utcnow
from event_collector.kit.errors import BadRequest, Conflict, NotFound, PayloadTooLarge
from event_collector.kit.http import pydantic_errors, raise_for_validation
from event_collector.kit.metrics import events_ingested


@dataclass(frozen=True, slots=True)
class IngestLimits:
    max_decoded_payload_bytes: int
    max_batch_events: int


def parse_event(body: bytes, limits: IngestLimits) -> EventIn:
    try:
        return EventIn.model_validate_json(
            body, context={"max_decoded_payload_bytes": limits.max_decoded_payload_bytes}
        )
    except ValidationError as exc:
        for error in exc.errors():
            if error["type"] == "json_invalid":
                raise _not_json(error["msg"]) from None
        raise_for_validation(exc)
        raise  # unreachable: raise_for_validation always raises


@functools.lru_cache(maxsize=1024)
def _ingested_counter(entity_type: str | None, operation: str, outcome: Outcome) -> Any:
    return events_ingested.labels(entity_type or "NONE", operation, outcome.value)


def _count(results: list[IngestResult]) -> None:
    # Counted per label set, not per event: a labelled increment costs microseconds (a lock and
    # a label lookup), a noticeable share of a stored event's cost in a batch of 500.
    if len(results) == 1:
        (result,) = results
        _ingested_counter(result.event.entity_type, result.event.operation, result.outcome).inc()
        return
    counts = Counter(
        (result.event.entity_type, result.event.operation, result.outcome) for result in results
    )
    for labels, count in counts.items():
        _ingested_counter(*labels).inc(count)


async def ingest_event(
    writer: EventWriter, tenant: str, body: bytes, limits: IngestLimits
) -> IngestResult:
    """Store one event; a conflicting re-use of its id raises :class:`Conflict`."""
    event = NewEvent.from_input(tenant, parse_event(body, limits), utcnow())
    results = await writer.submit([event])
    _count(results)
    (result,) = results
    if result.outcome is Outcome.CONFLICT:
        raise Conflict(f"an event with id {event.id!r} already exists with different content")
    return result


async def ingest_batch(
    writer: EventWriter, tenant: str, body: bytes, limits: IngestLimits
) -> dict[str, Any]:
    """Store every valid event of a batch; report each item's fate in order."""
    context = {"max_decoded_payload_bytes": limits.max_decoded_payload_bytes}
    # Usually every item is valid: pydantic-core then parses and validates the whole body in one
    # pass, without building a dict per item first. Otherwise the items are validated one by
    # one from the parsed JSON, so that each invalid one is reported on its own.
    items: list[EventIn] | list[Any] | None = _validate_whole(body, context)
    if items is None:
        items = _json_items(body)
    if len(items) > limits.max_batch_events:
        raise PayloadTooLarge(
            f"a batch holds at most {limits.max_batch_events} events; this one has {len(items)}"
        )
    if not items:
        raise BadRequest("the batch is empty")

    received_at = utcnow()
    rows: list[dict[str, Any]] = []
    valid: list[tuple[int, NewEvent]] = []
    for index, item in enumerate(items):
        if isinstance(item, EventIn):
            parsed = item
        else:
            try:
                parsed = EventIn.model_validate(item, context=context)
            except ValidationError as exc:
                rows.append(_invalid_item(index, item, exc))
                continue
        event = NewEvent.from_input(tenant, parsed, received_at)
        valid.append((index, event))
        rows.append({"index": index, "id": event.id, "status": None})

    if valid:
        results = await writer.submit([event for _, event in valid])
        _count(results)
        for (index, event), result in zip(valid, results, strict=True):
            row = rows[index]
            row["status"] = result.outcome.value
            if result.outcome is Outcome.CONFLICT:
                row["error"] = (
                    f"an event with id {event.id!r} already exists with different content"
                )

    summary = {status: 0 for status in ("created", "duplicate", "conflict", "invalid")}
    for row in rows:
        summary[row["status"]] += 1
    return {"results": rows, **summary}


class _BatchEnvelope(BaseModel):
    model_config = ConfigDict(extra="ignore")

    events: list[EventIn]


_BATCH_ARRAY = TypeAdapter(list[EventIn])


def _validate_whole(body: bytes, context: dict[str, Any]) -> list[EventIn] | None:
    """Every item of a batch body, when the body is well-formed and every item valid."""
    try:
        if body.lstrip()[:1] == b"{":
            return _BatchEnvelope.model_validate_json(body, context=context).events
        return _BATCH_ARRAY.validate_json(body, context=context)
    except ValidationError:
        return None


def _not_json(message: str) -> BadRequest:
    # pydantic-core's parser stops at 200 levels of nesting (json.loads, at the interpreter's
    # recursion limit, raised RecursionError: a 500 for a body of 1,000 brackets).
    if "recursion limit" in message:
        return BadRequest(
            "the request body is nested too deeply (JSON is limited to 200 levels of nesting)"
        )
    return BadRequest("the request body is not valid JSON")


def _json_items(body: bytes) -> list[Any]:
    try:
        # The same parser as the validation above: the same nesting limit, and lone UTF-16
        # surrogates ("\ud800", which no database can store) refused as invalid JSON.
        document = from_json(body)
    except ValueError as exc:
        raise _not_json(str(exc)) from None
    items = document.get("events") if isinstance(document, dict) else document
    if not isinstance(items, list):
        raise BadRequest('send a JSON array of events (or {"events": [...]})')
    return items


def _invalid_item(index: int, item: Any, exc: ValidationError) -> dict[str, Any]:
    problems = pydantic_errors(exc)
    first = problems[0]
    where = ".".join(str(part) for part in first["loc"])
    return {
        "index": index,
        "id": item.get("id")
        if isinstance(item, dict) and isinstance(item.get("id"), str)
        else None,
        "status": "invalid",
        "error": f"{where}: {first['msg']}" if where else first["msg"],
        "errors": [{"loc": p["loc"], "msg": p["msg"]} for p in problems],
    }


async def get_event(conn: AsyncConnection, tenant: str, event_id: str) -> StoredEvent:
    event = await EventRepository.from_connection(conn).get(tenant, event_id)
    if event is None:
        raise NotFound(f"no event with id {event_id!r}")
    return event


@dataclass(frozen=True, slots=True)
class EventFilters:
    entity_type: str | None = None
    entity_id: str | None = None
    event_type: str | None = None
    operation: str | None = None
    since: datetime | None = None
    until: datetime | None = None


def encode_cursor(seq: int) -> str:
    return encode_seq_cursor("s", seq)


def decode_cursor(cursor: str) -> int:
    return decode_seq_cursor(cursor, "s")


async def list_events(
    conn: AsyncConnection,
    tenant: str,
    filters: EventFilters,
    *,
    cursor: str | None,
    limit: int,
) -> dict[str, Any]:
    after = decode_feed_cursor(cursor) if cursor else None
    rows = await EventRepository.from_connection(conn).list_page(
        tenant,
        after=after,
        limit=limit + 1,
        entity_type=filters.entity_type,
        entity_id=filters.entity_id,
        event_type=filters.event_type,
        operation=filters.operation,
        since=filters.since,
        until=filters.until,
    )
    page, more = rows[:limit], len(rows) > limit
    # A cursor on every page, the last included: a client tailing the live edge polls with it
    # (where nothing is new, it is the request's own position).
    position = page[-1][1] if page else (after or FEED_START)
    return {
        "items": [event.to_api() for event, _ in page],
        "next_cursor": encode_feed_cursor(position),
        "has_more": more,
    }


async def received_since(conn: AsyncConnection, tenant: str, since: datetime) -> list[datetime]:
    """When each of the tenant's events since a time arrived."""
    return await EventRepository.from_connection(conn).received_since(tenant, since)


async def count_purgeable(
    conn: AsyncConnection, received_before: datetime, *, keep: EventKinds
) -> int:
    """How many events retention may delete now (see :func:`lock_purgeable`)."""
    return await EventRepository.from_connection(conn).count_purgeable(received_before, keep)


async def lock_purgeable(
    conn: AsyncConnection, received_before: datetime, *, keep: EventKinds, limit: int
) -> list[int]:
    """Retention's next batch: up to ``limit`` events received before the cutoff that are not of
    the kinds another domain still needs (``keep``), locked for :func:`purge`."""
    return await EventRepository.from_connection(conn).lock_purgeable(received_before, keep, limit)


async def purge(conn: AsyncConnection, seqs: Sequence[int]) -> dict[str, int]:
    """Delete the events of a batch :func:`lock_purgeable` returned: the rows deleted, by table."""
    return await EventRepository.from_connection(conn).delete(seqs)
