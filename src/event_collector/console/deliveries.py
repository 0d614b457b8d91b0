"""Deliveries: dead letters and pending retries, the attempt log, replay one / selected / since."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from starlette.responses import Response

from event_collector.console.web import Console, ConsoleRoute, Form, Session, redirect
from event_collector.delivery import service
from event_collector.kit.db import utcnow
from event_collector.kit.errors import BadRequest
from event_collector.subscriptions import service as subscription_service

router = APIRouter(prefix="/console/deliveries", route_class=ConsoleRoute)
PAGE_SIZE = 50


@router.get("")
async def list_page(
    console: Session,
    status: Annotated[Literal["failed", "pending", "delivered", ""], Query()] = "failed",
    subscription_id: Annotated[str, Query(max_length=255)] = "",
    cursor: Annotated[str, Query(max_length=400)] = "",
) -> Response:
    console.require("subscriptions:read")
    async with console.runtime.db.read() as conn:
        page = await service.list_deliveries(
            conn,
            console.tenant,
            subscription_id or None,
            status=status or None,
            cursor=cursor or None,
            limit=PAGE_SIZE,
        )
        subscriptions = await subscription_service.list_subscriptions(
            conn, console.tenant, include_inactive=True
        )
    return console.render(
        "deliveries.html",
        page=page,
        status=status,
        subscription_id=subscription_id,
        subscription_ids=[row["id"] for row in subscriptions],
    )


async def _replay(
    console: Console, subscription_id: str | None, request: service.ReplayRequest
) -> int:
    async with console.runtime.db.write() as conn:
        count = await service.replay(conn, console.tenant, subscription_id, request, utcnow())
    dispatcher = console.runtime.dispatcher
    if count and dispatcher is not None:
        dispatcher.wake()
    return count


@router.post("/replay")
async def replay_selected(console: Session) -> Response:
    """Replay the ticked deliveries, or the one whose row button was pressed."""
    console.require("subscriptions:write")
    form = await Form.of(console)
    ids = [form.get("one")] if form.optional("one") else form.all("ids")
    if not ids:
        raise BadRequest("tick at least one delivery to replay")
    count = await _replay(console, None, service.ReplayRequest(since=None, status="all", ids=ids))
    return redirect("/console/deliveries", f"{count} delivery(ies) queued again.", status="pending")


@router.post("/replay-since")
async def replay_since(console: Session) -> Response:
    console.require("subscriptions:write")
    form = await Form.of(console)
    subscription_id = form.get("subscription_id")
    try:
        since = datetime.fromisoformat(form.get("since"))
    except ValueError:
        raise BadRequest("since: enter a date and time (UTC)") from None
    status = "all" if form.get("status") == "all" else "failed"
    request = service.ReplayRequest(
        since=since if since.tzinfo else since.replace(tzinfo=UTC), status=status
    )
    count = await _replay(console, subscription_id, request)
    return redirect(
        "/console/deliveries",
        f"{count} delivery(ies) of {subscription_id} queued again.",
        status="pending",
        subscription_id=subscription_id,
    )
