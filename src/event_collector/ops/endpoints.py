from __future__ import annotations

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.responses import Response

from event_collector.kit import migrate
from event_collector.kit.dependencies import Db
from event_collector.kit.http import json_response

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> Response:
    return json_response({"status": "ok"})


@router.get(
    "/readyz",
    summary="Readiness: the database answers and its schema is current",
    responses={503: {"description": "Not ready; `detail` says why"}},
)
async def readyz(db: Db) -> Response:
    try:
        async with db.read() as conn:
            await conn.execute(text("SELECT 1"))
        current = await migrate.current_revision(db)
    except Exception as exc:
        return json_response(
            {"status": "unavailable", "detail": f"database unreachable: {type(exc).__name__}"},
            503,
        )
    head = migrate.head_revision()
    if current != head:
        return json_response(
            {
                "status": "unavailable",
                "detail": f"schema at {current}, code expects {head}: "
                "run `event-collector migrate`",
            },
            503,
        )
    return json_response({"status": "ready", "schema": current})


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
