"""HTTP for the read model: what the collector learned from the events (operators' view)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query
from starlette.responses import Response

from event_collector.auth.dependencies import EventsRead
from event_collector.kit.dependencies import ReadConnection
from event_collector.kit.http import error_responses, json_response
from event_collector.read_model import service
from event_collector.read_model.schemas import (
    CustomerOut,
    CustomerWishlists,
    ProblemPage,
    VariantOut,
)

router = APIRouter(prefix="/api/v1", tags=["read model"])

IdOrRef = Annotated[str, Path(min_length=1, max_length=255, description="An id or a ref")]


@router.get(
    "/customers/{customer_id}",
    summary="A customer and their marketing consent",
    response_model=CustomerOut,
    responses=error_responses(400, 401, 403, 404),
)
async def get_customer(
    customer_id: IdOrRef, principal: EventsRead, conn: ReadConnection
) -> Response:
    customer = await service.get_customer(conn, principal.tenant, customer_id)
    return json_response(customer)


@router.get(
    "/customers/{customer_id}/wishlists",
    summary="A customer's wishlists with their items, current prices and stock",
    response_model=CustomerWishlists,
    responses=error_responses(400, 401, 403, 404),
)
async def get_customer_wishlists(
    customer_id: IdOrRef, principal: EventsRead, conn: ReadConnection
) -> Response:
    body = await service.get_customer_wishlists(conn, principal.tenant, customer_id)
    return json_response(body)


@router.get(
    "/variants/{variant_id}",
    summary="A variant's current price and stock, price history and stock episodes",
    description="Also answers for a product id/ref (products sold without variants) and for an "
    "id that prices or stock name before the variant itself arrived (`kind: unknown`).",
    response_model=VariantOut,
    responses=error_responses(400, 401, 403, 404),
)
async def get_variant(variant_id: IdOrRef, principal: EventsRead, conn: ReadConnection) -> Response:
    body = await service.get_variant(conn, principal.tenant, variant_id)
    return json_response(body)


@router.get(
    "/read-model/problems",
    summary="Events the read model could not use (bad or incomplete payloads)",
    description="Such events are stored and forwarded like any other; this lists why the read "
    "model ignored them (or part of them), oldest first.",
    response_model=ProblemPage,
    responses=error_responses(400, 401, 403),
)
async def list_problems(
    principal: EventsRead,
    conn: ReadConnection,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    page = await service.list_problems(conn, principal.tenant, cursor=cursor, limit=limit)
    return json_response(page)
