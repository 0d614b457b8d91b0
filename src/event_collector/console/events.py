"""Events: filter by entity type / entity id / operation / time; one event with its payload
decoded and its deliveries."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Query
from starlette.responses import Response

from event_collector.console.web import ConsoleRoute, Session
from event_collector.delivery import service as delivery_service
from event_collector.events import service
from event_collector.events.schemas import ENTITY_TYPES, Operation
from event_collector.kit.errors import BadRequest

router = APIRouter(prefix="/console/events", route_class=ConsoleRoute)
Text = Annotated[str, Query(max_length=255)]
PAGE_SIZE = 50


def _instant(name: str, value: str) -> datetime | None:
    """A datetime-local field (read as UTC) or an ISO-8601 time."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"{name}: enter a date and time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@router.get("")
async def list_page(
    console: Session,
    entity_type: Text = "",
    entity_id: Text = "",
    operation: Text = "",
    since: Text = "",
    until: Text = "",
    cursor: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    console.require("events:read")
    if entity_type and entity_type.upper() not in ENTITY_TYPES:
        raise BadRequest(f"entity_type must be one of {', '.join(sorted(ENTITY_TYPES))}")
    if operation and operation.upper() not in Operation.__members__:
        raise BadRequest(f"operation must be one of {', '.join(Operation.__members__)}")
    filters = service.EventFilters(
        entity_type=entity_type.upper() or None,
        entity_id=entity_id or None,
        operation=operation.upper() or None,
        since=_instant("since", since),
        until=_instant("until", until),
    )
    async with console.runtime.db.read() as conn:
        page = await service.list_events(
            conn, console.tenant, filters, cursor=cursor or None, limit=PAGE_SIZE
        )
    query = {k: v for k, v in console.request.query_params.items() if k != "cursor"}
    return console.render(
        "events.html",
        page=page,
        next_query=urlencode(query | {"cursor": page["next_cursor"]}),
        entity_types=sorted(ENTITY_TYPES),
        operations=list(Operation.__members__),
        filters={
            "entity_type": entity_type.upper(),
            "entity_id": entity_id,
            "operation": operation.upper(),
            "since": since,
            "until": until,
        },
    )


@router.get("/{event_id}")
async def detail(console: Session, event_id: str) -> Response:
    console.require("events:read")
    async with console.runtime.db.read() as conn:
        event = await service.get_event(conn, console.tenant, event_id)
        deliveries = (
            await delivery_service.list_deliveries(
                conn, console.tenant, None, status=None, cursor=None, limit=100, event_id=event.id
            )
            if "subscriptions:read" in console.principal.scopes
            else None
        )
    payload = event.payload
    return console.render(
        "event.html",
        event=event.to_api(),
        payload=json.dumps(payload, indent=2, ensure_ascii=False) if payload is not None else None,
        deliveries=deliveries,
    )
