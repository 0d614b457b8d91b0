"""HTTP for events. The two ingest routes are raw routes (kit.raw_routes): they read raw bytes
and validate with pydantic directly, skipping FastAPI's stack, because they are the hot path."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.responses import Response

from event_collector.auth.dependencies import (
    TENANT_HEADER,
    EventsRead,
    authenticate_events_write,
)
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
from event_collector.events.writer import EventWriter, Outcome
from event_collector.kit.dependencies import ReadConnection
from event_collector.kit.errors import BadRequest
from event_collector.kit.http import error_responses, json_response
from event_collector.kit.raw_routes import RawRequest, RawResponse, RawRoute
from event_collector.kit.settings import Settings
from event_collector.kit.timefmt import TimestampOutOfRange, parse_timestamp
from event_collector.kit.validation import TIMESTAMP_SCHEMA, any_case_pattern

router = APIRouter(prefix="/api/v1/events", tags=["events"])
_TENANT_HEADER = TENANT_HEADER.encode()


def _limits(settings: Settings) -> event_service.IngestLimits:
    return event_service.IngestLimits(
        max_decoded_payload_bytes=settings.max_decoded_payload_bytes,
        max_batch_events=settings.max_batch_events,
    )


async def _authenticated_body(request: RawRequest, limit: int) -> tuple[str, bytes]:
    """The tenant of a request allowed to write events, and its raw JSON body."""
    principal = await authenticate_events_write.authenticate(
        request.state.runtime.tokens,
        request.header(b"authorization"),
        request.header(_TENANT_HEADER),
    )
    return principal.tenant, await request.json_body(limit)


async def create_event(request: RawRequest) -> RawResponse:
    settings: Settings = request.state.runtime.settings
    writer: EventWriter = request.state.runtime.writer
    tenant, body = await _authenticated_body(request, settings.max_body_bytes)
    result = await event_service.ingest_event(writer, tenant, body, _limits(settings))
    status = 201 if result.outcome is Outcome.CREATED else 200
    return RawResponse.json(result.event.to_api(), status)


async def create_events_batch(request: RawRequest) -> RawResponse:
    settings: Settings = request.state.runtime.settings
    writer: EventWriter = request.state.runtime.writer
    tenant, body = await _authenticated_body(request, settings.max_batch_body_bytes)
    result = await event_service.ingest_batch(writer, tenant, body, _limits(settings))
    return RawResponse.json(result)


def _ref(model: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{model}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {
        str(code): _json(_ref("ErrorBody"), entry["description"])
        for code, entry in error_responses(*codes).items()
    }


# Any JSON value: the batch judges items one by one (see the operation's description).
_BATCH_ITEM = {
    "anyOf": [_ref("EventIn"), {}],
    "description": "An EventIn; anything else is reported `invalid`.",
}

RAW_ROUTES = (
    RawRoute(
        "POST",
        "/api/v1/events",
        create_event,
        {
            "tags": ["events"],
            "summary": "Create an event",
            "operationId": "create_event",
            "description": (
                "Stores the event (and whatever must commit with it: delivery rows, read-model "
                "changes) in one transaction before answering. Re-posting the same id with "
                "identical content answers 200 with the stored event and creates nothing; the "
                "same id with different content answers 409."
            ),
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("EventIn")}},
            },
            "responses": {
                "201": _json(_ref("EventOut"), "Created"),
                "200": _json(_ref("EventOut"), "Identical re-post: the stored event"),
                **_errors(400, 401, 403, 409, 413, 415),
            },
        },
    ),
    RawRoute(
        "POST",
        "/api/v1/events/batch",
        create_events_batch,
        {
            "tags": ["events"],
            "summary": "Create up to 500 events in one request",
            "operationId": "create_events_batch",
            "description": (
                'Accepts a JSON array of events (or `{"events": [...]}`). Valid items are '
                "stored even when others are not; each item's result is `created`, "
                "`duplicate`, `conflict` or `invalid`, in request order. At most "
                "`EC_MAX_BATCH_EVENTS` (500) events. Each item is validated on its own as an "
                "`EventIn`: an item that is not one (even a non-object) does not fail the "
                "request, it is reported `invalid` with its problems."
            ),
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {
                        "schema": {
                            "oneOf": [
                                {"type": "array", "items": _BATCH_ITEM, "minItems": 1},
                                {
                                    "type": "object",
                                    "properties": {
                                        "events": {
                                            "type": "array",
                                            "items": _BATCH_ITEM,
                                            "minItems": 1,
                                        }
                                    },
                                    "required": ["events"],
                                },
                            ]
                        }
                    }
                },
            },
            "responses": {
                "200": _json(_ref("BatchResult"), "One result per item, in request order"),
                **_errors(400, 401, 403, 413, 415),
            },
        },
    ),
)


@router.get(
    "/{event_id}",
    summary="Get an event by id",
    response_model=EventOut,
    responses=error_responses(400, 401, 403, 404),
)
async def get_event(event_id: str, principal: EventsRead, conn: ReadConnection) -> Response:
    event = await event_service.get_event(conn, principal.tenant, event_id)
    return json_response(event.to_api())


def _timestamp(name: str, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_timestamp(value)
    except TimestampOutOfRange as exc:
        raise BadRequest(f"{name} {exc}") from None
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
    conn: ReadConnection,
    entity_type: Annotated[
        str | None,
        Query(
            description=f"One of {', '.join(sorted(ENTITY_TYPES))} (any letter case)",
            json_schema_extra={"pattern": any_case_pattern(ENTITY_TYPES)},
        ),
    ] = None,
    entity_id: Annotated[str | None, Query(max_length=255)] = None,
    event_type: Annotated[EventType | None, Query()] = None,
    operation: Annotated[Operation | None, Query()] = None,
    since: Annotated[
        str | None,
        Query(
            description="received at or after (ISO-8601)",
            json_schema_extra=TIMESTAMP_SCHEMA,
        ),
    ] = None,
    until: Annotated[
        str | None,
        Query(description="received before (ISO-8601)", json_schema_extra=TIMESTAMP_SCHEMA),
    ] = None,
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
    page = await event_service.list_events(
        conn, principal.tenant, filters, cursor=cursor, limit=limit
    )
    return json_response(page)


# Referenced by the raw routes' hand-written OpenAPI operations.
OPENAPI_MODELS = (EventIn, EventOut, BatchResult)
