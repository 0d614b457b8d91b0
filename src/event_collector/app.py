"""The application factory: runs the runtime (runtime.py) in the lifespan, wires the routers."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI
from fastapi.openapi.utils import get_openapi

from event_collector.auth import endpoints as auth_endpoints
from event_collector.auth.dependencies import guard_principal
from event_collector.console import endpoints as console_endpoints
from event_collector.delivery import endpoints as delivery_endpoints
from event_collector.events import endpoints as event_endpoints
from event_collector.jobs import endpoints as job_endpoints
from event_collector.kit.http import ErrorBody, install_error_handlers
from event_collector.kit.logging import access_log
from event_collector.kit.middleware import RequestContextMiddleware, RequestGuard
from event_collector.kit.nul import refuse_nul_in_url
from event_collector.kit.ratelimit import rate_limiter
from event_collector.kit.raw_routes import EventCollectorApp
from event_collector.kit.settings import Settings, load_settings
from event_collector.notifications import endpoints as notification_endpoints
from event_collector.ops import endpoints as ops_endpoints
from event_collector.ops.docs import install_docs
from event_collector.read_model import endpoints as read_model_endpoints
from event_collector.runtime import Runtime
from event_collector.subscriptions import endpoints as subscription_endpoints

DESCRIPTION = """
Collects commerce entity events over REST, stores them durably, and forwards them at least once
to each tenant's subscriptions.

Every `/api/v1` request needs `Authorization: Bearer <token>` (from `POST /oauth/token`) and
`X-TWC-Tenant: <tenant>`. Errors have the body
`{"error": "<ErrorClass>", "detail": "<sentence>", "errors": [...]}` (`errors` for validation).
"""


def create_app(settings: Settings | None = None) -> EventCollectorApp:
    settings = settings or load_settings()
    access_log.enabled = settings.access_log

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime.build(
            settings,
            api=True,
            dispatcher=settings.dispatcher_enabled,
            scheduler=settings.scheduler_enabled,
        )
        app.state.runtime = runtime
        try:
            await runtime.start()
            # What start-up built (modules, models, the engine, compiled schemas, AWS service
            # models) lives as long as the process: take it out of the cyclic garbage
            # collector's scans. Ingest allocates many short-lived objects per event, and every
            # full collection walked those hundreds of thousands of permanent ones too: ~80 ms
            # pauses about once a second under single-event load (the p99), over a quarter of a
            # batch's CPU per event.
            gc.collect()
            gc.freeze()
            yield
        finally:
            await runtime.stop()

    app = EventCollectorApp(
        title="Event Collector",
        version="0.1.0",
        description=DESCRIPTION,
        lifespan=lifespan,
        redirect_slashes=False,
        docs_url=None,  # served with local assets by ops.docs
        redoc_url=None,
        dependencies=[Depends(refuse_nul_in_url)],  # before authentication and parameters
    )
    app.request_guard = RequestGuard(
        guard_principal,
        max_body_bytes=settings.max_body_bytes,
        api_limiter=rate_limiter(
            settings.rate_limit_api_per_second, settings.rate_limit_api_burst, "on the API"
        ),
        ingest_limiter=rate_limiter(
            settings.rate_limit_ingest_per_second, settings.rate_limit_ingest_burst, "to ingest"
        ),
    )
    app.add_middleware(RequestContextMiddleware, guard=app.request_guard)
    install_error_handlers(app)
    app.include_router(ops_endpoints.router)
    install_docs(app)
    app.include_router(auth_endpoints.router)
    app.include_router(event_endpoints.router)
    app.include_router(subscription_endpoints.router)
    app.include_router(delivery_endpoints.router)
    app.include_router(delivery_endpoints.tenant_router)
    app.include_router(read_model_endpoints.router)
    app.include_router(job_endpoints.router)
    app.include_router(notification_endpoints.router)
    console_endpoints.install(app)
    for route in event_endpoints.RAW_ROUTES:
        app.add_raw_route(route)
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    return app


def _openapi(app: EventCollectorApp) -> dict[str, Any]:
    """The generated schema, plus what hand-parsed routes and header auth cannot declare."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title, version=app.version, description=app.description, routes=app.routes
    )
    for route in app.raw_routes.values():
        schema["paths"].setdefault(route.path, {})[route.method.lower()] = route.openapi
    components = schema.setdefault("components", {})
    schemas = components.setdefault("schemas", {})
    for model in (*event_endpoints.OPENAPI_MODELS, ErrorBody):
        model_schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(model_schema.pop("$defs", {}))
        schemas[model.__name__] = model_schema
    components["securitySchemes"] = {
        "bearerAuth": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
    }
    tenant_header = {
        "name": "X-TWC-Tenant",
        "in": "header",
        "required": True,
        "schema": {"type": "string"},
        "description": "The tenant the token was issued for",
    }
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            # Validation errors are answered 400 (kit.http), never FastAPI's 422.
            if responses.pop("422", None) is not None and "400" not in responses:
                responses["400"] = {
                    "description": "Invalid request",
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}
                    },
                }
            if not path.startswith("/api/"):
                continue
            operation["security"] = [{"bearerAuth": []}]
            parameters = operation.setdefault("parameters", [])
            if not any(p.get("name") == "X-TWC-Tenant" for p in parameters):
                parameters.append(tenant_header)
    app.openapi_schema = schema
    return schema
