"""The operator console at /console: its routers, static assets and the mount in the app.

Server-rendered pages (Jinja, ``templates/``) that read through the same service functions as
the API and post forms to handlers that call the API's service functions (``operations.py``).
Plain HTML forms: every page works without JavaScript; nothing is fetched from elsewhere.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from starlette.staticfiles import StaticFiles

from event_collector.console import (
    customers,
    dashboard,
    deliveries,
    events,
    jobs,
    notifications,
    session,
    subscriptions,
)

ROUTERS = (
    session.router,
    dashboard.router,
    subscriptions.router,
    deliveries.router,
    events.router,
    jobs.router,
    notifications.router,
    customers.router,
)


def install(app: FastAPI) -> None:
    for router in ROUTERS:
        app.include_router(router, include_in_schema=False)
    app.mount(
        "/console/static",
        StaticFiles(directory=Path(__file__).parent / "static"),
        name="console-static",
    )
