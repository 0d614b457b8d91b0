"""HTTP for events. The two ingest routes read raw bytes and validate with pydantic directly:
they are the hot path, so they skip FastAPI's body handling and dependency resolution."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from starlette.responses import Response

from event_collector.auth.dependencies import EventsRead, authenticate_events_write
from event_collector.context import get_context
from event_collector.events import service as event_service
from event_collector.events.schemas import (
    ENTITY_TYPES,
    BatchResult,
    EventIn,
    EventOut,
    EventPage,
    EventType,
    Operation,
)
from event_collector.events.writer import Outcome
from event_collector.kit.errors import BadRequest
from event_collector.kit.http import error_responses, json_response, read_json_body
from event_collector.kit.timefmt import parse_timestamp

router = APIRouter(prefix="/api/v1/events", tags=["events"])


def _body_doc(schema_ref: dict[str, Any]) -> dict[str, Any]:
    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": schema_ref}}},
    }


def _limits(request: Request) -> event_service.IngestLimits:
    settings = get_context(request).settings
    return event_service.IngestLimits(
        max_decoded_payload_bytes=settings.max_decoded_payload_bytes,
        max_batch_events=settings.max_batch_events,
    )


@router.post(
    "",
    summary="Create an event",
    description=(
        "Stores the event and routes it to the tenant's subscriptions in one transaction. "
        "Re-posting the same id with identical content answers 200 with the stored event and "
        "creates nothing; the same id with different content answers 409."
    ),
    status_code=201,
    responses={
        201: {"model": EventOut, "description": "Created"},
        200: {"model": EventOut, "description": "Identical re-post: the stored event"},
        **error_responses(400, 401, 403, 409, 413, 415),
    },
    openapi_extra=_body_doc({"$ref": "#/components/schemas/EventIn"}),
)
async def create_event(request: Request) -> Response:
    principal = await authenticate_events_write(request)
    context = get_context(request)
    body = await read_json_body(request, context.settings.max_body_bytes)
    result = await event_service.ingest_event(
        context.writer, principal.tenant, body, _limits(request)
    )
    status = 201 if result.outcome is Outcome.CREATED else 200
    return json_response(result.event.to_api(), status)


@router.post(
    "/batch",
    summary="Create up to 500 events in one request",
    description=(
        'Accepts a JSON array of events (or `{"events": [...]}`). Valid items are stored even '
        "when others are not; each item's result is `created`, `duplicate`, `conflict` or "
        "`invalid`, in request order. The batch is limited by `EC_MAX_BATCH_EVENTS`."
    ),
    response_model=BatchResult,
    responses=error_responses(400, 401, 403, 413, 415),
    openapi_extra=_body_doc(
        {
            "oneOf": [
                {"type": "array", "items": {"$ref": "#/components/schemas/EventIn"}},
                {
                    "type": "object",
                    "properties": {
                        "events": {
                            "type": "array",
                            "items": {"$ref": "#/components/schemas/EventIn"},
                        }
                    },
                    "required": ["events"],
                },
            ]
        }
    ),
)
async def create_events_batch(request: Request) -> Response:
    principal = await authenticate_events_write(request)
    context = get_context(request)
    body = await read_json_body(request, context.settings.max_batch_body_bytes)
    result = await event_service.ingest_batch(
        context.writer, principal.tenant, body, _limits(request)
    )
    return json_response(result)


@router.get(
    "/{event_id}",
    summary="Get an event by id",
    response_model=EventOut,
    responses=error_responses(400, 401, 403, 404),
)
async def get_event(event_id: str, principal: EventsRead, request: Request) -> Response:
    async with get_context(request).db.read() as conn:
        event = await event_service.get_event(conn, principal.tenant, event_id)
    return json_response(event.to_api())


def _timestamp(name: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_timestamp(value)
    except ValueError:
        raise BadRequest(
            f"{name} must be an ISO-8601 timestamp, e.g. 2024-05-01T00:00:00Z"
        ) from None


@router.get(
    "",
    summary="List events in arrival order",
    response_model=EventPage,
    responses=error_responses(400, 401, 403),
)
async def list_events(
    principal: EventsRead,
    request: Request,
    entity_type: Annotated[
        str | None, Query(description=f"One of {', '.join(sorted(ENTITY_TYPES))}")
    ] = None,
    entity_id: Annotated[str | None, Query(max_length=255)] = None,
    event_type: Annotated[EventType | None, Query()] = None,
    operation: Annotated[Operation | None, Query()] = None,
    since: Annotated[str | None, Query(description="received at or after (ISO-8601)")] = None,
    until: Annotated[str | None, Query(description="received before (ISO-8601)")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    if entity_type is not None:
        entity_type = entity_type.upper()
        if entity_type not in ENTITY_TYPES:
            raise BadRequest(f"entity_type must be one of {', '.join(sorted(ENTITY_TYPES))}")
    filters = event_service.EventFilters(
        entity_type=entity_type,
        entity_id=entity_id,
        event_type=event_type.value if event_type else None,
        operation=operation.value if operation else None,
        since=_timestamp("since", since),
        until=_timestamp("until", until),
    )
    async with get_context(request).db.read() as conn:
        page = await event_service.list_events(
            conn, principal.tenant, filters, cursor=cursor, limit=limit
        )
    return json_response(page)


# Referenced by the ingest routes' hand-written request body documentation.
OPENAPI_MODELS = (EventIn,)
