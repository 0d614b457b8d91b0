"""HTTP for notifications: the send ledger / outbox, and the tenant's email settings."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from starlette.responses import Response

from event_collector.auth.dependencies import Authenticator
from event_collector.auth.service import Principal
from event_collector.kit.db import utcnow
from event_collector.kit.dependencies import AppSettings, ReadConnection, Secrets, WriteConnection
from event_collector.kit.http import error_responses, json_response
from event_collector.notifications import email_settings, service
from event_collector.notifications.schemas import (
    EmailSettingsIn,
    EmailSettingsOut,
    NotificationPage,
)

router = APIRouter(prefix="/api/v1", tags=["notifications"])

JobsRead = Annotated[Principal, Depends(Authenticator("jobs:read"))]
JobsWrite = Annotated[Principal, Depends(Authenticator("jobs:write"))]
Filter = Annotated[str | None, Query(min_length=1, max_length=255)]


@router.get(
    "/notifications",
    summary="The send ledger / outbox",
    description="Every notification the tenant's jobs stored or sent, oldest first: recipient, "
    "channel, status (skipped ones with their reason), items, provider message id, error, and "
    "the rendered subject/text/html for outbox and SMTP.",
    response_model=NotificationPage,
    responses=error_responses(400, 401, 403),
)
async def list_notifications(
    principal: JobsRead,
    conn: ReadConnection,
    job_id: Filter = None,
    run_id: Filter = None,
    customer_id: Filter = None,
    status: Annotated[str | None, Query(pattern="^(pending|sending|sent|failed|skipped)$")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    filters = {"job_id": job_id, "run_id": run_id, "customer_id": customer_id, "status": status}
    page = await service.list_notifications(
        conn, principal.tenant, filters=filters, cursor=cursor, limit=limit
    )
    return json_response(page)


@router.get(
    "/email-settings",
    summary="The tenant's email provider, sender and SendGrid key (masked)",
    response_model=EmailSettingsOut,
    responses=error_responses(400, 401, 403),
)
async def get_email_settings(
    principal: JobsRead, conn: ReadConnection, settings: AppSettings, secrets: Secrets
) -> Response:
    body = await email_settings.get_email_settings(conn, settings, secrets, principal.tenant)
    return json_response(body)


@router.put(
    "/email-settings",
    summary="Set the tenant's email provider, sender, reply-to and SendGrid key",
    description="Fields present replace the stored ones; null returns a field to the server "
    "default. The SendGrid key is stored encrypted and shown masked; sending the masked value "
    "back keeps the stored key.",
    response_model=EmailSettingsOut,
    responses=error_responses(400, 401, 403, 415),
)
async def put_email_settings(
    body: EmailSettingsIn,
    principal: JobsWrite,
    conn: WriteConnection,
    settings: AppSettings,
    secrets: Secrets,
) -> Response:
    saved = await email_settings.put_email_settings(
        conn, settings, secrets, principal.tenant, body.model_dump(exclude_unset=True), utcnow()
    )
    return json_response(saved)
