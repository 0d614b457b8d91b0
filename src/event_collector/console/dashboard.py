"""The dashboard: events and deliveries by outcome over the last 24 hours, the queue."""

from __future__ import annotations

from datetime import timedelta

from fastapi import APIRouter
from starlette.responses import Response

from event_collector.console.charts import HOURS, Series, hourly, stacked_bars
from event_collector.console.web import ConsoleRoute, Session
from event_collector.delivery import service as delivery_service
from event_collector.events import service as event_service
from event_collector.kit.db import utcnow

router = APIRouter(prefix="/console", route_class=ConsoleRoute)
_OUTCOMES = (
    ("success", "delivered", "#1a7f37"),
    ("retry", "retried", "#bf8700"),
    ("failed", "dead-lettered", "#cf222e"),
)


@router.get("")
async def dashboard(console: Session) -> Response:
    now = utcnow()
    since = now - timedelta(hours=HOURS)
    events_chart = deliveries_chart = None
    queue: tuple[int, object] | None = None
    async with console.runtime.db.read() as conn:
        if "events:read" in console.principal.scopes:
            received = await event_service.received_since(conn, console.tenant, since)
            events_chart = stacked_bars(
                "Events ingested per hour",
                [Series("events", "#0b5cad", hourly(received, now))],
                now,
            )
        if "subscriptions:read" in console.principal.scopes:
            attempts = await delivery_service.attempts_since(conn, console.tenant, since)
            deliveries_chart = stacked_bars(
                "Delivery attempts per hour by outcome",
                [
                    Series(
                        label,
                        colour,
                        hourly(
                            (a["attempted_at"] for a in attempts if a["outcome"] == outcome), now
                        ),
                    )
                    for outcome, label, colour in _OUTCOMES
                ],
                now,
            )
            queue = await delivery_service.queue(conn, console.tenant, now)
    oldest_age = None
    if queue is not None and queue[1] is not None:
        oldest_age = int((now - queue[1]).total_seconds())  # type: ignore[operator]
    return console.render(
        "dashboard.html",
        events_chart=events_chart,
        deliveries_chart=deliveries_chart,
        queue_depth=queue[0] if queue else None,
        oldest_age=oldest_age,
    )
