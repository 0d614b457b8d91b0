"""HTTP for deliveries: test a subscription's destination, list its deliveries, replay them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field
from starlette.responses import Response

from event_collector.auth.dependencies import SubscriptionsRead, SubscriptionsWrite
from event_collector.delivery import service
from event_collector.delivery.dispatcher import Dispatcher
from event_collector.kit.db import utcnow
from event_collector.kit.dependencies import AppSettings, Db, ReadConnection, Secrets
from event_collector.kit.http import error_responses, json_response
from event_collector.kit.timefmt import UtcDateTime
from event_collector.kit.validation import TIMESTAMP_SCHEMA

router = APIRouter(prefix="/api/v1/event-subscription", tags=["deliveries"])
# The tenant's deliveries across its subscriptions (the console's dead-letter view).
tenant_router = APIRouter(prefix="/api/v1/deliveries", tags=["deliveries"])


def _dispatcher(request: Request) -> Dispatcher | None:
    dispatcher: Dispatcher | None = request.app.state.runtime.dispatcher
    return dispatcher


# The dispatcher running in this process, if any (to send with, to wake).
LocalDispatcher = Annotated[Dispatcher | None, Depends(_dispatcher)]
Status = Annotated[Literal["pending", "delivered", "failed"] | None, Query()]
Limit = Annotated[int, Query(ge=1, le=200)]
Cursor = Annotated[str | None, Query(max_length=400)]


class TestResult(BaseModel):
    success: bool
    statusCode: int | None = Field(default=None, description="HTTP status (webhooks, AWS)")
    error: str | None = Field(default=None, description="Why it failed (absent on success)")
    latencyMs: int


class AttemptOut(BaseModel):
    attempt: int
    attemptedAt: str
    outcome: Literal["success", "retry", "failed"]
    statusCode: int | None
    error: str | None
    latencyMs: int


class DeliveryOut(BaseModel):
    id: str
    subscriptionId: str
    eventId: str | None
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    nextAttemptAt: str | None
    createdAt: str
    deliveredAt: str | None
    lastError: str | None
    lastStatusCode: int | None
    attemptLog: list[AttemptOut]


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
    nextCursor: str | None = Field(description="Pass as `cursor` for the next page; null at end")


def _timestamp_text(value: Any) -> Any:
    # An ISO-8601 string only: lax pydantic would read a number as Unix seconds.
    if not isinstance(value, str):
        raise ValueError("must be an ISO-8601 timestamp (2024-05-01T00:00:00Z)")
    return value


class ReplayIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    since: Annotated[UtcDateTime, BeforeValidator(_timestamp_text)] = Field(
        description="Deliveries created at or after this time (ISO-8601)",
        json_schema_extra=TIMESTAMP_SCHEMA,
    )
    status: Literal["failed", "all"] = Field(
        default="failed",
        description="`failed`: dead letters only; `all`: failed and delivered ones",
    )


class ReplayIdsIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    deliveryIds: list[Annotated[str, Field(min_length=1, max_length=36)]] = Field(
        min_length=1, max_length=500, description="The deliveries to queue again"
    )
    status: Literal["failed", "all"] = Field(
        default="failed",
        description="`failed`: only those that are dead letters; `all`: delivered ones too",
    )


class ReplayOut(BaseModel):
    replayed: int = Field(description="How many deliveries were queued again")


@router.post(
    "/{subscription_id}/test",
    summary="Send a test message to the subscription's destination now",
    description=(
        'Sends a synthetic event (marked `"test": true`) straight to the destination, whether '
        "or not the subscription is active, and reports the outcome truthfully; nothing is "
        "stored and no delivery is created. Always 200 for a known subscription."
    ),
    response_model=TestResult,
    response_model_exclude_none=True,
    responses=error_responses(400, 401, 403, 404),
)
async def test_subscription(
    principal: SubscriptionsWrite,
    subscription_id: str,
    db: Db,
    secrets: Secrets,
    settings: AppSettings,
    dispatcher: LocalDispatcher,
) -> Response:
    result = await service.send_test_message(
        db,
        secrets,
        settings,
        dispatcher.senders if dispatcher is not None else None,
        principal.tenant,
        subscription_id,
    )
    body: dict[str, Any] = {"success": result.ok, "latencyMs": result.latency_ms}
    if result.status_code is not None:
        body["statusCode"] = result.status_code
    if not result.ok:
        body["error"] = result.error
    return json_response(body)


@router.get(
    "/{subscription_id}/deliveries",
    summary="List the subscription's deliveries with their attempt log",
    description="Newest first, cursor-paginated; filter by `status`.",
    response_model=DeliveryPage,
    responses=error_responses(400, 401, 403, 404),
)
async def list_deliveries(
    principal: SubscriptionsRead,
    subscription_id: str,
    conn: ReadConnection,
    status: Status = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Response:
    page = await service.list_deliveries(
        conn, principal.tenant, subscription_id, status=status, cursor=cursor, limit=limit
    )
    return json_response(page)


@router.post(
    "/{subscription_id}/replay",
    summary="Deliver failed (or all) deliveries since a time again",
    description=(
        "Queues the matching deliveries again: status `pending`, due now, with a fresh attempt "
        "budget (their attempt log is kept). Pending deliveries are left alone. Answers 202: "
        "sending happens in the background (an inactive subscription's deliveries wait until "
        "it is activated)."
    ),
    status_code=202,
    response_model=ReplayOut,
    responses=error_responses(400, 401, 403, 404),
)
async def replay(
    principal: SubscriptionsWrite,
    subscription_id: str,
    body: ReplayIn,
    db: Db,
    dispatcher: LocalDispatcher,
) -> Response:
    request = service.ReplayRequest(since=body.since, status=body.status)
    return await _replay(db, dispatcher, principal.tenant, subscription_id, request)


@tenant_router.get(
    "",
    summary="List the tenant's deliveries (all subscriptions) with their attempt log",
    description="Newest first, cursor-paginated; filter by `status`, `subscription_id`, "
    "`event_id` (the deliveries of one event).",
    response_model=DeliveryPage,
    responses=error_responses(400, 401, 403, 404),
)
async def list_tenant_deliveries(
    principal: SubscriptionsRead,
    conn: ReadConnection,
    status: Status = None,
    subscription_id: Annotated[str | None, Query(max_length=255)] = None,
    event_id: Annotated[str | None, Query(max_length=255)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Response:
    page = await service.list_deliveries(
        conn,
        principal.tenant,
        subscription_id,
        status=status,
        cursor=cursor,
        limit=limit,
        event_id=event_id,
    )
    return json_response(page)


@tenant_router.post(
    "/replay",
    summary="Deliver the named deliveries again",
    description=(
        "Queues the named deliveries (of any of the tenant's subscriptions) again as "
        "`/event-subscription/{id}/replay` does; unknown ids and pending ones are left alone. "
        "Answers 202 with how many were queued."
    ),
    status_code=202,
    response_model=ReplayOut,
    responses=error_responses(400, 401, 403),
)
async def replay_deliveries(
    principal: SubscriptionsWrite, body: ReplayIdsIn, db: Db, dispatcher: LocalDispatcher
) -> Response:
    request = service.ReplayRequest(since=None, status=body.status, ids=body.deliveryIds)
    return await _replay(db, dispatcher, principal.tenant, None, request)


async def _replay(
    db: Db,
    dispatcher: Dispatcher | None,
    tenant: str,
    subscription_id: str | None,
    request: service.ReplayRequest,
) -> Response:
    # Not a WriteConnection: the dispatcher is woken once the transaction has committed.
    async with db.write() as conn:
        count = await service.replay(conn, tenant, subscription_id, request, utcnow())
    if count and dispatcher is not None:
        dispatcher.wake()
    return json_response({"replayed": count}, 202)
