"""HTTP for event subscriptions (the seed's five endpoints, plus activate)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.responses import Response

from event_collector.auth.dependencies import SubscriptionsRead, SubscriptionsWrite
from event_collector.kit.db import utcnow
from event_collector.kit.dependencies import AppSettings, ReadConnection, Secrets, WriteConnection
from event_collector.kit.http import error_responses, json_response
from event_collector.subscriptions import service
from event_collector.subscriptions.schemas import (
    AcceptedOut,
    SubscriptionId,
    SubscriptionIn,
    SubscriptionOut,
    SubscriptionUpdate,
    SubscriptionUpdateById,
)

router = APIRouter(prefix="/api/v1/event-subscription", tags=["event subscriptions"])

IdPath = Annotated[SubscriptionId, Path(description="The subscription's id")]


def _policy(secrets: Secrets, settings: AppSettings) -> service.Policy:
    return service.Policy.of(secrets, settings)


Policy = Annotated[service.Policy, Depends(_policy)]


@router.post(
    "",
    summary="Create a subscription",
    description=(
        "Creates a subscription (`id` is generated when absent; an existing id answers 409). "
        "Secrets are stored encrypted and shown masked. A WEBHOOK destination without a "
        "`secret` gets a generated one, shown in full in this response only: keep it."
    ),
    status_code=201,
    response_model=SubscriptionOut,
    responses=error_responses(400, 401, 403, 409, 415),
)
async def create_subscription(
    body: SubscriptionIn, principal: SubscriptionsWrite, policy: Policy, conn: WriteConnection
) -> Response:
    written = await service.create_subscription(conn, policy, principal.tenant, body, utcnow())
    return json_response(
        service.to_api(written.row, policy, reveal_secret=written.reveal_secret), 201
    )


_UPDATE_DESCRIPTION = (
    "Fields present in the body replace the stored ones; absent fields keep their values. "
    "A destination whose secret is omitted or sent back masked keeps the stored secret, so a "
    "GET body can be sent back as is. Read-only fields (`createdAt` …) are ignored."
)


@router.put(
    "",
    summary="Update a subscription (id in the body)",
    description=_UPDATE_DESCRIPTION,
    response_model=SubscriptionOut,
    responses=error_responses(400, 401, 403, 404, 415),
)
async def update_subscription_by_body(
    body: SubscriptionUpdateById,
    principal: SubscriptionsWrite,
    policy: Policy,
    conn: WriteConnection,
) -> Response:
    return await _update(conn, policy, principal.tenant, None, body)


@router.put(
    "/{subscription_id}",
    summary="Update a subscription",
    description=_UPDATE_DESCRIPTION + " A different `id` in the body answers 400.",
    response_model=SubscriptionOut,
    responses=error_responses(400, 401, 403, 404, 415),
)
async def update_subscription(
    subscription_id: IdPath,
    body: SubscriptionUpdate,
    principal: SubscriptionsWrite,
    policy: Policy,
    conn: WriteConnection,
) -> Response:
    return await _update(conn, policy, principal.tenant, subscription_id, body)


async def _update(
    conn: AsyncConnection,
    policy: service.Policy,
    tenant: str,
    subscription_id: str | None,
    body: SubscriptionUpdate,
) -> Response:
    written = await service.update_subscription(
        conn, policy, tenant, subscription_id, body, utcnow()
    )
    return json_response(service.to_api(written.row, policy, reveal_secret=written.reveal_secret))


@router.get(
    "",
    summary="List subscriptions",
    description="Active subscriptions (as the seed says); `include_inactive=true` for all.",
    response_model=list[SubscriptionOut],
    responses=error_responses(400, 401, 403),
)
async def list_subscriptions(
    principal: SubscriptionsRead,
    policy: Policy,
    conn: ReadConnection,
    include_inactive: Annotated[bool, Query(description="Also list inactive ones")] = False,
) -> Response:
    rows = await service.list_subscriptions(
        conn, principal.tenant, include_inactive=include_inactive
    )
    return json_response([service.to_api(row, policy) for row in rows])


@router.get(
    "/{subscription_id}",
    summary="Get a subscription (active or not)",
    response_model=SubscriptionOut,
    responses=error_responses(400, 401, 403, 404),
)
async def get_subscription(
    subscription_id: IdPath, principal: SubscriptionsRead, policy: Policy, conn: ReadConnection
) -> Response:
    row = await service.get_subscription(conn, principal.tenant, subscription_id)
    return json_response(service.to_api(row, policy))


@router.put(
    "/{subscription_id}/deactivate",
    summary="Deactivate a subscription",
    description=(
        "Stops routing new events to it; idempotent. Answers the seed's envelope "
        '`{"body": {}, "statusCode": "ACCEPTED", "statusCodeValue": 202}`.'
    ),
    status_code=202,
    response_model=AcceptedOut,
    responses=error_responses(400, 401, 403, 404),
)
async def deactivate_subscription(
    subscription_id: IdPath, principal: SubscriptionsWrite, conn: WriteConnection
) -> Response:
    await service.set_active(conn, principal.tenant, subscription_id, False, utcnow())
    return json_response(service.DEACTIVATE_ACCEPTED, 202)


@router.put(
    "/{subscription_id}/activate",
    summary="Activate a subscription",
    description="Resumes routing new events to it (clears the deactivation and failure state).",
    response_model=SubscriptionOut,
    responses=error_responses(400, 401, 403, 404),
)
async def activate_subscription(
    subscription_id: IdPath, principal: SubscriptionsWrite, policy: Policy, conn: WriteConnection
) -> Response:
    row = await service.set_active(conn, principal.tenant, subscription_id, True, utcnow())
    return json_response(service.to_api(row, policy))
