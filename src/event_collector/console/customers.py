"""Customers: look one up by id or ref; their wishlists with price, baseline and stock."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from starlette.responses import Response

from event_collector.console.web import ConsoleRoute, Session
from event_collector.read_model import service

router = APIRouter(prefix="/console/customers", route_class=ConsoleRoute)


@router.get("")
async def lookup(console: Session, q: Annotated[str, Query(max_length=255)] = "") -> Response:
    console.require("events:read")
    found: dict[str, Any] | None = None
    if q.strip():
        async with console.runtime.db.read() as conn:
            found = await service.get_customer_wishlists(conn, console.tenant, q.strip())
    return console.render("customers.html", q=q, found=found)
