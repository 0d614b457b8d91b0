"""Notifications: the outbox / send ledger with each email's rendered preview."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query
from starlette.responses import Response

from event_collector.console.web import ConsoleRoute, Session
from event_collector.notifications import service

router = APIRouter(prefix="/console/notifications", route_class=ConsoleRoute)
Text = Annotated[str, Query(max_length=255)]


@router.get("")
async def list_page(
    console: Session,
    job_id: Text = "",
    customer_id: Text = "",
    status: Annotated[Literal["", "pending", "sending", "sent", "failed", "skipped"], Query()] = "",
    cursor: Annotated[str, Query(max_length=200)] = "",
) -> Response:
    console.require("jobs:read")
    filters = {
        "job_id": job_id or None,
        "customer_id": customer_id or None,
        "status": status or None,
    }
    async with console.runtime.db.read() as conn:
        page = await service.list_notifications(
            conn, console.tenant, filters=filters, cursor=cursor or None, limit=50
        )
    return console.render("notifications.html", page=page, filters=filters)
