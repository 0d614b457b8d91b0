from __future__ import annotations

import asyncio
import weakref

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text
from starlette.responses import Response

from event_collector.kit import migrate
from event_collector.kit.db import Database
from event_collector.kit.dependencies import Db
from event_collector.kit.errors import DatabaseUnavailable
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
    probe = _probes.get(db)
    if probe is None or probe.done():
        probe = asyncio.ensure_future(_schema_revision(db))
        probe.add_done_callback(_retrieve)
        _probes[db] = probe
    # Not cancelled at the deadline: cancelling a statement mid-way would cost the connection;
    # the probe ends within the database timeouts and the next readiness check shares it.
    done, _ = await asyncio.wait({probe}, timeout=READY_WITHIN_SECONDS)
    if not done:
        return _unavailable(f"the database did not answer within {READY_WITHIN_SECONDS:g} s")
    if probe.exception() is not None:
        return _unavailable("database unreachable")
    current = probe.result()
    head = migrate.head_revision()
    if current != head:
        return _unavailable(
            f"schema at {current}, code expects {head}: run `event-collector migrate`"
        )
    return json_response({"status": "ready", "schema": current})


READY_WITHIN_SECONDS = 1.5
"""A readiness probe answers within this (orchestrators' probes commonly time out at 2 s)."""

_probes: weakref.WeakKeyDictionary[Database, asyncio.Future[str | None]] = (
    weakref.WeakKeyDictionary()
)


async def _schema_revision(db: Database) -> str | None:
    async with db.read() as conn:
        await conn.execute(text("SELECT 1"))
    return await migrate.current_revision(db)


def _retrieve(probe: asyncio.Future[str | None]) -> None:
    if not probe.cancelled():
        probe.exception()  # read even when no request waits for it any more


def _unavailable(detail: str) -> Response:
    return json_response(
        {"status": "unavailable", "detail": detail},
        503,
        {"Retry-After": str(DatabaseUnavailable.RETRY_AFTER_SECONDS)},
    )


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
async def metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
